//! One visitor connection: HTTP/1.1 (keep-alive, upgrades) or HTTP/2, with the edge's limits,
//! closed gracefully when the edge shuts down. On the TLS listener the handshake comes first
//! (`tls/accept.rs`), under the handshake timeout.

use crate::config::DEFAULT_MAX_HEADERS;
use crate::visitor::Visitors;
use crate::visitor::dispatch::{self, Listener};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Serves HTTP (or HTTPS, on the TLS listener) on `socket` until the visitor leaves or the
/// edge shuts down.
pub async fn connection(
    visitors: Arc<Visitors>,
    socket: TcpStream,
    peer: SocketAddr,
    listener: Listener,
) {
    if listener == Listener::Visitor && visitors.tls.is_none() {
        return crate::visitor::h1::serve(visitors, socket, peer, listener).await;
    }
    if listener != Listener::Tls {
        return serve(visitors, socket, peer, listener).await;
    }
    let Some(tls) = visitors.tls.clone() else {
        return;
    };
    let timeout = visitors.config.handshake_timeout;
    match tokio::time::timeout(timeout, crate::tls::accept::handshake(&tls, socket)).await {
        // HTTP/2 (negotiated by ALPN) goes to hyper; HTTP/1.1 to the proxy core.
        Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(b"h2") => {
            serve(visitors, stream, peer, listener).await
        }
        Ok(Ok(stream)) => crate::visitor::h1::serve(visitors, stream, peer, listener).await,
        Ok(Err(e)) => tracing::debug!(visitor = %peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(visitor = %peer, ?timeout, "TLS handshake timed out"),
    }
}

/// The general path: hyper's HTTP/1.1 and HTTP/2 server, requests handled by `dispatch.rs`.
pub async fn serve<S>(visitors: Arc<Visitors>, socket: S, peer: SocketAddr, listener: Listener)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let mut http1 = builder.http1();
    http1
        .keep_alive(true)
        .preserve_header_case(true)
        .max_buf_size(visitors.config.max_header_bytes.max(8192))
        .header_read_timeout(visitors.config.handshake_timeout)
        .timer(TokioTimer::new());
    // Left unset at hyper's own default, the header table lives on the stack; set, hyper
    // allocates and fills one per request (2.4k instructions, 4 % of the edge's per request).
    if visitors.config.max_headers != DEFAULT_MAX_HEADERS {
        http1.max_headers(visitors.config.max_headers);
    }
    builder
        .http2()
        .max_concurrent_streams(256)
        .max_header_list_size(u32::try_from(visitors.config.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .timer(TokioTimer::new());
    let service_visitors = visitors.clone();
    let service =
        service_fn(move |req| dispatch::handle(service_visitors.clone(), req, peer, listener));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(socket), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = visitors.life.draining.cancelled() => {
            // Finish the request in flight, accept no other on this connection.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(visitor = %peer, error = %e, "visitor connection ended with an error");
    }
}
