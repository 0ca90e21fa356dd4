//! HTTP/1.1 and WebSocket helpers for tests that talk to an edge or an origin.
//!
//! Tunnels are routed by `Host`, so every helper lets the caller name the host independently of
//! the socket address it connects to. hyper's client connection does not add a `Host` header by
//! itself: requests passed to [`request`] or to a [`connect`]ed sender must carry one.

use std::io;
use std::net::SocketAddr;

use anyhow::Context as _;
use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use crate::pattern::hex;

/// The body type for requests built by tests and responses built by the origin.
pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, io::Error>;

/// A client WebSocket over plain TCP, as returned by [`websocket`].
pub type ClientWebSocket = WebSocketStream<TcpStream>;

/// An empty body.
pub fn empty() -> BoxBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body of one frame holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> BoxBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Opens an HTTP/1.1 connection to `addr` and spawns its connection task (upgrades enabled).
///
/// The sender can be reused for several requests in sequence (keep-alive); the connection closes
/// once the sender and every response body are dropped.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<BoxBody>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true).context("set TCP_NODELAY")?;
    let local = stream.local_addr().context("local address")?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP/1.1 client handshake")?;
    let span = tracing::debug_span!("test_client_connection", local_port = local.port(), %addr);
    tokio::spawn(
        async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "client connection ended with an error");
            }
        }
        .instrument(span),
    );
    Ok(sender)
}

/// Sends `req` on a fresh connection to `addr` and returns the response head with a streaming
/// body. `req` must carry a `Host` header.
pub async fn request(
    addr: SocketAddr,
    req: Request<BoxBody>,
) -> anyhow::Result<Response<Incoming>> {
    let mut sender = connect(addr).await?;
    sender.ready().await.context("connection not ready")?;
    sender.send_request(req).await.context("send request")
}

/// `GET path` with `Host: host` on a fresh connection; collects the whole body, so use it only
/// for small responses.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
    let req = Request::get(path)
        .header(HOST, host)
        .body(empty())
        .context("build GET request")?;
    let (parts, body) = request(addr, req).await?.into_parts();
    let bytes = body
        .collect()
        .await
        .context("read response body")?
        .to_bytes();
    Ok((parts.status, parts.headers, bytes))
}

/// Reads `body` to its end without holding it, returning its length and hex SHA-256.
pub async fn body_sha256(mut body: Incoming) -> anyhow::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("read body frame")?;
        if let Some(data) = frame.data_ref() {
            hasher.update(data);
            len += data.len() as u64;
        }
    }
    Ok((len, hex(&hasher.finalize())))
}

/// Opens a WebSocket to `ws://{host}{path}` over a TCP connection to `addr`.
pub async fn websocket(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> anyhow::Result<ClientWebSocket> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true).context("set TCP_NODELAY")?;
    let url = format!("ws://{host}{path}");
    let (socket, _response) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .with_context(|| format!("WebSocket handshake for {url}"))?;
    Ok(socket)
}

/// Writes `request` verbatim to a fresh connection and returns everything the server sends until
/// it closes the connection.
///
/// For what hyper's client cannot express: mixed-case header names, malformed requests. The
/// request should carry `Connection: close`, or this waits for the server's idle timeout.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream
        .write_all(request)
        .await
        .context("write raw request")?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .context("read raw response")?;
    Ok(response)
}
