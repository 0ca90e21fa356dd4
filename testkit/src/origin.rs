//! The origin: the local service an agent exposes in end-to-end and load tests.
//!
//! A real hyper HTTP/1.1 server on `127.0.0.1:0` (keep-alive, upgrades, header case preserved)
//! whose endpoints cover what a tunnel must carry: small and multi-GiB bodies with and without
//! `Content-Length`, streaming uploads, server-sent events, WebSocket, slow and stalled responses.
//!
//! | endpoint | response |
//! |---|---|
//! | `GET /hello` | 200 `hello from origin` |
//! | `ANY /echo` | the request body streamed back, chunked; `x-echo-method`, `x-echo-uri` |
//! | `GET /headers` | JSON `{method, uri, version, headers: [[name, value], ...], case_preserved}` |
//! | `GET /bytes/{n}[?chunked=1]` | `n` bytes of [`crate::pattern`] in 64 KiB frames |
//! | `POST\|PUT /upload` | JSON `{bytes, sha256}` of the request body |
//! | `GET /sse?count=N&interval_ms=M` | `text/event-stream`, one frame per event |
//! | `GET /ws` | WebSocket echo |
//! | `GET /slow?ms=N` | 200 `slow done` after `N` ms |
//! | `GET /status/{code}` | that status, body `status {code}` |
//! | `GET /stall?bytes=N` | `N` pattern bytes, then a body that never ends |
//! | anything else | 404 |
//!
//! Layout: this file binds, accepts and routes; `origin/endpoints.rs` holds the handlers,
//! `origin/websocket.rs` the `/ws` upgrade and `origin/wire_head.rs` the recovery of header-name
//! case for `/headers`.

mod endpoints;
mod websocket;
mod wire_head;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument as _;

use crate::client::BoxBody;
use wire_head::{HeadLog, RecordingIo};

/// A running origin. Dropping it stops the accept loop, every connection and every WebSocket.
#[derive(Debug)]
pub struct Origin {
    /// Where the origin listens (loopback, ephemeral port).
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    _stop: DropGuard,
}

impl Origin {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start() -> anyhow::Result<Origin> {
        Origin::start_with(None).await
    }

    /// Like [`Origin::start`], with at most `unsent` bytes not yet sent queued in the kernel per
    /// connection (`TCP_NOTSENT_LOWAT`). On loopback a socket's send buffer starts at megabytes
    /// (one segment is 64 KiB); thousands of stalled downloads from an origin on the *same*
    /// machine as the edge then fill the machine's TCP memory, which in a deployment is the
    /// developer's machine, not the edge's. Tests of the edge's bounds use this.
    pub async fn start_bounded(unsent: u32) -> anyhow::Result<Origin> {
        Origin::start_with(Some(unsent)).await
    }

    async fn start_with(unsent: Option<u32>) -> anyhow::Result<Origin> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("bind origin listener")?;
        let addr = listener.local_addr().context("origin listener address")?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let span = tracing::debug_span!("origin", %addr);
        tokio::spawn(
            accept_loop(listener, Arc::clone(&accepted), stop.clone(), unsent).instrument(span),
        );
        Ok(Origin {
            addr,
            accepted,
            _stop: stop.drop_guard(),
        })
    }

    /// The port the origin listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Number of TCP connections accepted so far (to test connection reuse).
    pub fn connections_accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn accept_loop(
    listener: TcpListener,
    accepted: Arc<AtomicUsize>,
    stop: CancellationToken,
    unsent: Option<u32>,
) {
    loop {
        let accept = tokio::select! {
            () = stop.cancelled() => return,
            accept = listener.accept() => accept,
        };
        let (stream, peer) = match accept {
            Ok(connection) => connection,
            Err(error) => {
                // Typically out of file descriptors under load: back off rather than spin.
                tracing::warn!(%error, "origin accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Some(unsent) = unsent
            && let Err(error) = socket2::SockRef::from(&stream).set_tcp_notsent_lowat(unsent)
        {
            tracing::warn!(%error, "origin: set TCP_NOTSENT_LOWAT");
        }
        let id = accepted.fetch_add(1, Ordering::SeqCst) + 1;
        let span = tracing::debug_span!("origin_connection", id, %peer);
        tokio::spawn(serve_connection(stream, stop.clone()).instrument(span));
    }
}

async fn serve_connection(stream: TcpStream, stop: CancellationToken) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "set TCP_NODELAY");
    }
    let log = Arc::new(HeadLog::default());
    let io = TokioIo::new(RecordingIo::new(stream, Arc::clone(&log)));
    let service_stop = stop.clone();
    let service = service_fn(move |req| {
        let log = Arc::clone(&log);
        let stop = service_stop.clone();
        async move { Ok::<_, Infallible>(route(req, &log, &stop).await) }
    });
    let connection = http1::Builder::new()
        .preserve_header_case(true)
        .keep_alive(true)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::select! {
        () = stop.cancelled() => {}
        result = connection => if let Err(error) = result {
            tracing::debug!(%error, "origin connection ended with an error");
        },
    }
}

async fn route(
    req: Request<Incoming>,
    log: &HeadLog,
    stop: &CancellationToken,
) -> Response<BoxBody> {
    let (parts, body) = req.into_parts();
    // Taken for every request, not only `/headers`, so the log stays in step with the connection.
    let wire = log.take(&parts);
    let req = Request::from_parts(parts, body);
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/hello") => endpoints::hello(),
        (_, "/echo") => endpoints::echo(req),
        (&Method::GET, "/headers") => endpoints::headers(&req, wire),
        (&Method::POST | &Method::PUT, "/upload") => endpoints::upload(req).await,
        (&Method::GET, "/sse") => endpoints::sse(&req),
        (&Method::GET, "/ws") => websocket::upgrade(req, stop),
        (&Method::GET, "/slow") => endpoints::slow(&req).await,
        (&Method::GET, "/stall") => endpoints::stall(&req),
        (&Method::GET, path) => {
            if let Some(len) = path.strip_prefix("/bytes/") {
                endpoints::bytes(&req, len)
            } else if let Some(code) = path.strip_prefix("/status/") {
                endpoints::status(code)
            } else {
                not_found(path)
            }
        }
        _ => not_found(&path),
    }
}

fn not_found(path: &str) -> Response<BoxBody> {
    endpoints::text(
        StatusCode::NOT_FOUND,
        &format!("no origin endpoint at {path}"),
    )
}
