//! One connection on any of the edge's listeners, from its first byte to its close: the PROXY
//! header (`proxy_protocol.rs`, with `--proxy-protocol`), the per-address cap (`limits.rs`),
//! TLS on the HTTPS listener (`tls/accept.rs`, under the handshake timeout), the write
//! deadline (`deadline.rs`), then one of the two HTTP engines: the proxy core (`h1/`) for
//! HTTP/1.1 visitors, or hyper — HTTP/2, the edge's own endpoints, the agents', relay and
//! admin listeners, connections the core hands over, and connections over a cap, which hyper
//! answers with 503 or 429 (`dispatch.rs`). Every connection is closed gracefully when the edge
//! drains.

use crate::config::DEFAULT_MAX_HEADERS;
use crate::limits::{Admission, Listener};
use crate::visitor::Visitors;
use crate::visitor::deadline::WriteDeadline;
use crate::visitor::dispatch;
use crate::visitor::h1::strict::StrictH1;
use crate::visitor::rewind::Rewind;
use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// What a handler knows about the connection its request came on.
#[derive(Clone)]
pub struct Conn {
    /// The client's address (the PROXY header's, with `--proxy-protocol`).
    pub peer: SocketAddr,
    pub listener: Listener,
    /// The connection's place under the caps; whatever outlives the HTTP exchange (an
    /// upgraded connection) holds a clone.
    pub admission: Arc<Admission>,
}

/// Serves a connection accepted on `listener` until the client leaves or the edge shuts down.
pub async fn connection(
    visitors: Arc<Visitors>,
    admission: Admission,
    mut socket: TcpStream,
    peer: SocketAddr,
    listener: Listener,
) {
    let handshake = visitors.config.handshake_timeout;
    let (peer, read_ahead) = if visitors.config.proxy_protocol && listener_takes_proxy(listener) {
        let read = crate::visitor::proxy_protocol::read(&mut socket, peer);
        match tokio::time::timeout(handshake, read).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::debug!(peer = %peer, error = %e, "connection without a valid PROXY header closed");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %peer, "no PROXY header in time; connection closed");
                return;
            }
        }
    } else {
        (peer, Bytes::new())
    };
    let admission = if listener.is_public() {
        match visitors.limits.count_address(admission, peer.ip()) {
            Some(admission) => admission,
            None => return,
        }
    } else {
        admission
    };
    let conn = Conn {
        peer,
        listener,
        admission: Arc::new(admission),
    };
    let io = Rewind::new(read_ahead, socket);
    let core = visitors.config.http1_engine == "core" && conn.admission.refusal().is_none();
    if listener == Listener::Visitor && visitors.tls.is_none() {
        let io = WriteDeadline::new(io, visitors.config.visitor_write_timeout);
        return match core {
            true => crate::visitor::h1::serve(visitors, io, conn).await,
            false => serve(visitors, io, conn).await,
        };
    }
    if listener != Listener::Tls {
        return serve(visitors, io, conn).await;
    }
    let Some(tls) = visitors.tls.clone() else {
        return;
    };
    match tokio::time::timeout(handshake, crate::tls::accept::handshake(&tls, io)).await {
        Ok(Ok(stream)) => {
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = WriteDeadline::new(stream, visitors.config.visitor_write_timeout);
            // HTTP/2 (negotiated by ALPN) goes to hyper; HTTP/1.1 to the proxy core.
            match core && !h2 {
                true => crate::visitor::h1::serve(visitors, io, conn).await,
                false => serve(visitors, io, conn).await,
            }
        }
        Ok(Err(e)) => tracing::debug!(visitor = %peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(visitor = %peer, timeout = ?handshake, "TLS handshake timed out"),
    }
}

/// Whether a PROXY header comes first on `listener` (`--proxy-protocol`): the listeners an L4
/// balancer fronts. The relay and admin listeners are internal.
fn listener_takes_proxy(listener: Listener) -> bool {
    matches!(
        listener,
        Listener::Visitor | Listener::Tls | Listener::Tunnel
    )
}

/// The general path: hyper's HTTP/1.1 and HTTP/2 server, requests handled by `dispatch.rs`.
pub async fn serve<S>(visitors: Arc<Visitors>, socket: S, conn: Conn)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &visitors.config;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let mut http1 = builder.http1();
    http1
        .keep_alive(true)
        .preserve_header_case(true)
        .max_buf_size(config.max_header_bytes.max(8192))
        .header_read_timeout(config.handshake_timeout)
        .timer(TokioTimer::new());
    // Left unset at hyper's own default, the header table lives on the stack; set, hyper
    // allocates and fills one per request (2.4k instructions, 4 % of the edge's per request).
    if config.max_headers != DEFAULT_MAX_HEADERS {
        http1.max_headers(config.max_headers);
    }
    builder
        .http2()
        .max_concurrent_streams(config.http2_max_streams)
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        // Rapid-reset (CVE-2023-44487) and induced-reset floods: a client whose streams are
        // reset faster than they are served loses the connection.
        .max_pending_accept_reset_streams(Some(64))
        .max_local_error_reset_streams(Some(256))
        .max_send_buf_size(256 * 1024)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .timer(TokioTimer::new());
    let activity = Arc::new(Activity::default());
    let service_visitors = visitors.clone();
    let service_conn = conn.clone();
    let service_activity = activity.clone();
    let service = service_fn(move |req| {
        let guard = service_activity.start();
        let visitors = service_visitors.clone();
        let conn = service_conn.clone();
        async move {
            let response = dispatch::handle(visitors, req, &conn).await;
            response.map(|r| r.map(|body| crate::body::Tracked::new(body, guard)))
        }
    });
    // Visitors' HTTP/1.1 framing is held to the proxy core's rules (`h1/strict.rs`).
    let socket = match conn.listener.is_public() {
        true => StrictH1::new(socket, config.max_header_bytes.max(8192)),
        false => StrictH1::passthrough(socket),
    };
    let served = builder.serve_connection_with_upgrades(TokioIo::new(socket), service);
    tokio::pin!(served);
    let idle = config.idle_timeout;
    let result = tokio::select! {
        result = served.as_mut() => result,
        () = visitors.life.draining.cancelled() => {
            // Finish the request in flight, accept no other on this connection.
            served.as_mut().graceful_shutdown();
            served.await
        }
        () = activity.idle_for(idle) => {
            tracing::debug!(peer = %conn.peer, ?idle, "idle visitor connection closed");
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %conn.peer, error = %e, "connection ended with an error");
    }
}

/// Requests in flight on one hyper connection, for its idle timeout.
#[derive(Default)]
pub struct Activity {
    active: AtomicUsize,
    changed: Notify,
}

/// One request in flight, until its response body is done.
pub struct ActiveRequest(Arc<Activity>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.changed.notify_one();
    }
}

impl Activity {
    fn start(self: &Arc<Self>) -> ActiveRequest {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
        ActiveRequest(self.clone())
    }

    /// Resolves once no request has been in flight for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            if self.active.load(Ordering::Relaxed) > 0 {
                self.changed.notified().await;
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(idle) => {
                    if self.active.load(Ordering::Relaxed) == 0 {
                        return;
                    }
                }
                () = self.changed.notified() => {}
            }
        }
    }
}
