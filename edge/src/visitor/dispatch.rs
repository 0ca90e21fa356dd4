//! Where a visitor request goes: the edge itself, or a tunnel. Every failure on the way
//! becomes an error page here, in one place.

use crate::error::EdgeError;
use crate::host::{self, Target};
use crate::state::EdgeState;
use crate::visitor::body::EdgeBody;
use crate::visitor::{apex, error_page, forward, hold};
use http::{Request, Response};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Which listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The public listener: tunnels by host, and the edge's own domain.
    Visitor,
    /// A dedicated listener for agents: only the edge's own endpoints, whatever the host.
    Tunnel,
    /// The internal listener other edges relay visitor requests to (`relay/server.rs`).
    Relay,
}

/// Facts about one visitor request that outlive its parts.
pub struct RequestContext {
    pub peer: SocketAddr,
    pub request_id: String,
    pub started: Instant,
}

pub async fn handle(
    state: Arc<EdgeState>,
    req: Request<Incoming>,
    peer: SocketAddr,
    listener: Listener,
) -> Result<Response<EdgeBody>, Infallible> {
    let ctx = RequestContext {
        peer,
        request_id: request_id(&state, &req),
        started: Instant::now(),
    };
    let html = error_page::wants_html(req.headers());
    let result = match listener {
        Listener::Tunnel => apex::handle(&state, req, peer),
        Listener::Visitor => route(&state, req, &ctx).await,
        Listener::Relay => crate::relay::server::handle(&state, req, peer).await,
    };
    Ok(result.unwrap_or_else(|error| {
        tracing::debug!(visitor = %peer, request_id = %ctx.request_id, %error, side = ?error.side(), "request failed");
        error_page::render(&error, html, &ctx.request_id)
    }))
}

async fn route(
    state: &Arc<EdgeState>,
    req: Request<Incoming>,
    ctx: &RequestContext,
) -> Result<Response<EdgeBody>, EdgeError> {
    let host = host::request_host(&req)?;
    match host::classify_among(&host, state.config.domains())? {
        Target::Apex => apex::handle(state, req, ctx.peer),
        Target::Tunnel(hostname) => match state.registry.lookup(&hostname) {
            // A session on this edge serves it: no Redis round trip.
            Some(tunnel) if !tunnel.session.is_going_away() => {
                forward::forward(state, tunnel, req, ctx).await
            }
            // Not here, its session just died and is being cleaned up, or it is draining (its
            // agent is moving to another edge).
            _ => hold::elsewhere(state, hostname, req, ctx).await,
        },
        // A custom domain: served like a tunnel hostname when a session (here or on another
        // edge) holds its route; otherwise the name is simply not one of this Warren's.
        Target::Custom(hostname) => match state.registry.lookup(&hostname) {
            Some(tunnel) if !tunnel.session.is_going_away() => {
                forward::forward(state, tunnel, req, ctx).await
            }
            _ => match hold::elsewhere(state, hostname, req, ctx).await {
                Err(EdgeError::UnknownTunnel { host }) => Err(EdgeError::UnknownHost { host }),
                other => other,
            },
        },
    }
}

/// The visitor's own `X-Request-Id` if it is sane, else a fresh one.
fn request_id(state: &EdgeState, req: &Request<Incoming>) -> String {
    req.headers()
        .get(&crate::visitor::headers::X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| state.next_request_id())
}
