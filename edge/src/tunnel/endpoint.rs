//! `GET /_warren/tunnel` with `Upgrade: websocket`: where agents open sessions.

use crate::body::EdgeBody;
use crate::error::EdgeError;
use crate::limits::Admission;
use crate::tunnel::Agents;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::Instrument;
use warren_session::{WebSocket, WsRole};

/// The path of the tunnel endpoint on the edge's own domain.
pub const TUNNEL_PATH: &str = "/_warren/tunnel";

/// Answers the WebSocket upgrade and runs the session in a task of its own.
/// `admission` is the session's place under the agents' connection cap, held for its life.
pub fn accept(
    agents: &Arc<Agents>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    admission: Arc<Admission>,
) -> Result<Response<EdgeBody>, EdgeError> {
    let key = websocket_key(&req)?;
    if agents.life.draining.is_cancelled() {
        return Err(EdgeError::ShuttingDown);
    }
    if agents.registry.session_count() >= agents.config.max_sessions {
        return Err(EdgeError::Overloaded);
    }
    let accept_key = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    let task_agents = agents.clone();
    let span = tracing::info_span!("session", agent = %peer);
    agents.life.tasks.spawn(
        async move {
            match upgrade.await {
                Ok(upgraded) => {
                    let ws = WebSocket::new(TokioIo::new(upgraded), WsRole::Server);
                    crate::tunnel::attach::run(task_agents, ws, peer).await;
                    drop(admission);
                }
                Err(e) => tracing::debug!(error = %e, "agent upgrade failed"),
            }
        }
        .instrument(span),
    );
    let mut response = Response::new(EdgeBody::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept_key) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    Ok(response)
}

fn websocket_key(req: &Request<Incoming>) -> Result<String, EdgeError> {
    let headers = req.headers();
    let is_websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_websocket || !crate::forwarding::headers::is_upgrade(headers) {
        return Err(EdgeError::BadRequest(
            "the tunnel endpoint speaks WebSocket only: connect with the warren CLI".into(),
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(EdgeError::BadRequest(
            "WebSocket version 13 is required".into(),
        ));
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 64)
        .map(str::to_string)
        .ok_or_else(|| EdgeError::BadRequest("missing Sec-WebSocket-Key".into()))
}
