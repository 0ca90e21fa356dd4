//! `GET /ws`: a WebSocket echo, upgraded by hand on hyper's connection so the handshake the
//! visitor sent reaches the same code path as any other request.

use futures_util::{SinkExt as _, StreamExt as _};
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::endpoints::text;
use crate::client::{BoxBody, empty};

/// Answers the handshake with 101 and spawns the echo, which runs once hyper hands over the
/// connection, until the client closes or the origin stops.
pub(super) fn upgrade(mut req: Request<Incoming>, stop: &CancellationToken) -> Response<BoxBody> {
    let headers = req.headers();
    if !has_token(headers, UPGRADE, "websocket") || !has_token(headers, CONNECTION, "upgrade") {
        return text(StatusCode::BAD_REQUEST, "ws: expected a WebSocket upgrade");
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return text(
            StatusCode::BAD_REQUEST,
            "ws: Sec-WebSocket-Version must be 13",
        );
    }
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "ws: missing Sec-WebSocket-Key");
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);

    let stop = stop.clone();
    let span = tracing::debug_span!("origin_websocket");
    tokio::spawn(
        async move {
            tokio::select! {
                () = stop.cancelled() => {}
                result = echo(on_upgrade) => if let Err(error) = result {
                    tracing::debug!(%error, "websocket echo ended with an error");
                },
            }
        }
        .instrument(span),
    );

    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("accept key is base64"),
    );
    response
}

async fn echo(on_upgrade: OnUpgrade) -> anyhow::Result<()> {
    let upgraded = on_upgrade.await?;
    let mut socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    while let Some(message) = socket.next().await {
        // tungstenite answers pings and replies to a close on its own; the stream then ends.
        if let message @ (Message::Text(_) | Message::Binary(_)) = message? {
            socket.send(message).await?;
        }
    }
    Ok(())
}

/// Whether the comma-separated header `name` lists `token` (case-insensitively).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}
