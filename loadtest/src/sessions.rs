//! Many tunnel sessions and many concurrent streams, opened in-process with the session crate
//! (the same code the agent runs), so 10,000 agents cost one process instead of 10,000.
//!
//! - [`open_idle`]: N sessions with one tunnel each, kept alive by their heartbeats.
//! - [`hold_agent`]: one session whose tunnel answers every request with the head of an
//!   event stream and then holds it open: each visitor request stays an open stream.
//! - [`hold_streams`]: N concurrent visitor requests over HTTP/2 (256 streams per connection
//!   at most on the edge), each waiting on the held response.

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use warren_proto::control::{Credential, Hello, TunnelProtocol, TunnelRequest};
use warren_proto::mux::{Heartbeat, Role};
use warren_proto::{Mux, Settings, TunnelId};
use warren_session::{Incoming, Session, SessionEvent};

/// A session kept open; dropping it closes the session.
pub struct Held {
    pub session: Session,
    pub incoming: Incoming,
    _events: tokio::sync::mpsc::Receiver<SessionEvent>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.session.close();
    }
}

/// Opens one agent session to `edge` serving `subdomain`.
pub async fn connect(
    edge: SocketAddr,
    token: &str,
    subdomain: &str,
    max_streams: u32,
) -> anyhow::Result<Held> {
    let tcp = tokio::net::TcpStream::connect(edge).await?;
    let _ = tcp.set_nodelay(true);
    let request = format!("ws://{edge}/_warren/tunnel").into_client_request()?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        request,
        tcp,
        Some(warren_session::ws_config()),
    )
    .await
    .context("websocket handshake with the edge")?;
    let mut ws = warren_session::WebSocket::from_client_handshake(ws);
    let settings = Settings {
        max_streams,
        ..Settings::default()
    };
    let hello = Hello {
        agent_version: "warren-loadtest".into(),
        credential: Credential::Token(token.into()),
        tunnels: vec![TunnelRequest {
            id: TunnelId(0),
            protocol: TunnelProtocol::Http,
            subdomain: Some(subdomain.into()),
            local_addr: "loadtest".into(),
            host_header: None,
        }],
        settings,
        request_log: false,
        request_log_batches: false,
        request_log_compact: false,
        join: None,
        dynamic_tunnels: false,
    };
    let timeout = Duration::from_secs(30);
    let welcome = warren_session::handshake::agent_hello(&mut ws, &hello, timeout)
        .await
        .context("session handshake")?;
    let heartbeat = Heartbeat {
        interval: Duration::from_millis(welcome.heartbeat_interval_ms.max(100)),
        timeout: Duration::from_millis(welcome.heartbeat_timeout_ms.max(300)),
    };
    let mux = Mux::new(
        Role::Agent,
        settings,
        welcome.settings,
        heartbeat,
        tokio::time::Instant::now().into_std(),
    );
    let (session, incoming, events) = warren_session::spawn(ws, mux, tracing_span());
    Ok(Held {
        session,
        incoming,
        _events: events,
    })
}

fn tracing_span() -> tracing::Span {
    tracing::Span::none()
}

/// Opens `n` sessions, 64 handshakes at a time, reporting progress on stderr.
pub async fn open_idle(edge: SocketAddr, token: &str, n: usize) -> anyhow::Result<Vec<Held>> {
    let mut held = Vec::with_capacity(n);
    let mut next = 0;
    while next < n {
        let batch: Vec<_> = (next..(next + 64).min(n))
            .map(|i| {
                let token = token.to_string();
                tokio::spawn(async move { connect(edge, &token, &format!("idle{i}"), 16).await })
            })
            .collect();
        for t in batch {
            held.push(
                t.await
                    .context("session task")?
                    .with_context(|| format!("opening idle session {}", held.len()))?,
            );
        }
        next = held.len();
        if next % 1000 == 0 || next == n {
            eprintln!("    {next}/{n} idle sessions open");
        }
    }
    Ok(held)
}

/// Serves `held`'s streams: read the request head, answer an event-stream head and one event,
/// then hold the stream until the visitor goes away. Returns the count of streams answered.
pub fn hold_agent(mut held: Held) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let answered = Arc::new(AtomicU64::new(0));
    let count = answered.clone();
    let task = tokio::spawn(async move {
        while let Some(mut stream) = held.incoming.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let mut seen = 0;
                loop {
                    let Ok(n) = stream.read(&mut buf[seen..]).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen += n;
                    if buf[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                    if seen == buf.len() {
                        return;
                    }
                }
                let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nready\n\n\r\n";
                if stream.write_all(head).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
                count.fetch_add(1, Ordering::Relaxed);
                // Hold until the edge closes the stream.
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    (answered, task)
}

/// Opens `n` concurrent visitor requests to `host` over HTTP/2 connections to the edge, each
/// held open with its response head received. Returns what to drop to end them.
pub async fn hold_streams(
    edge: SocketAddr,
    host: &str,
    n: usize,
) -> anyhow::Result<Vec<Box<dyn Send>>> {
    // The edge's default `--http2-max-streams`: a connection takes no more concurrent
    // streams, and held ones never finish (250 here hung the scenario once that cap came).
    const PER_CONN: usize = 100;
    let mut keep: Vec<Box<dyn Send>> = Vec::with_capacity(n + n / PER_CONN + 1);
    let mut opened = 0;
    while opened < n {
        let tcp = tokio::net::TcpStream::connect(edge).await?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .context("HTTP/2 handshake with the edge")?;
        keep.push(Box::new(tokio::spawn(conn)));
        let batch = PER_CONN.min(n - opened);
        let tasks: Vec<_> = (0..batch)
            .map(|_| {
                let mut sender = sender.clone();
                let req =
                    http::Request::get(format!("http://{host}/hold")).body(Empty::<Bytes>::new());
                tokio::spawn(async move {
                    let req = req?;
                    sender.ready().await?;
                    let resp = sender.send_request(req).await?;
                    if resp.status() != 200 {
                        bail!("HTTP {}", resp.status());
                    }
                    Ok(resp)
                })
            })
            .collect();
        for t in tasks {
            let resp = t.await?.context("held visitor request")?;
            keep.push(Box::new(resp));
        }
        keep.push(Box::new(sender));
        opened += batch;
        if opened % 10_000 == 0 || opened == n {
            eprintln!("    {opened}/{n} concurrent visitor streams open");
        }
    }
    Ok(keep)
}
