//! Memory given back after a peak: thousands of visitor streams through one tunnel raise the
//! edge's resident memory, all of them close, and within 60 s the edge is back within 2x of
//! where it started (docs/performance.md, "Memory after a peak").
//!
//! The edge runs as the real binary, in a process of its own, so `/proc/PID/status` counts
//! its memory alone; the agent runs here, speaking the session protocol directly and holding
//! each stream open after its response head, as a long poll or an event stream would.
//! Needs the binary: `cargo build -p warren-edge` (the test says so if it is missing).
//! `WARREN_MEMORY_TEST_EDGE=PATH` runs another build instead (to compare allocators); the
//! edge inherits the environment (`MALLOC_*`, `GLIBC_TUNABLES`, `_RJEM_MALLOC_CONF`).

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use warren_proto::control::{Credential, Hello, TunnelProtocol, TunnelRequest};
use warren_proto::mux::{Heartbeat, Role};
use warren_proto::{Mux, Settings, TunnelId};
use warren_testkit::multi::StandaloneEdge;

/// Streams open at the peak: ~20 KiB of edge memory each (docs/performance.md), so the peak
/// is ~200 MiB over a baseline of ~10-50 MiB.
/// `WARREN_MEMORY_TEST_STREAMS=100000` runs the full peak (about 2 GiB, minutes to open).
const STREAMS: usize = 10_000;

fn streams() -> usize {
    std::env::var("WARREN_MEMORY_TEST_STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(STREAMS)
}

/// Streams per visitor HTTP/2 connection (the edge is started allowing that many).
const PER_CONNECTION: usize = 500;
const TOKEN: &str = "wrn_memory_test_token";
/// How long the edge has to give the memory back.
const GIVE_BACK: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_given_back_after_a_peak_of_streams() -> anyhow::Result<()> {
    let per_connection = PER_CONNECTION.to_string();
    // The edge's per-session stream cap (10,000 by default) raised for larger peaks.
    let max_streams = (streams() + 1000).to_string();
    let binary = std::env::var_os("WARREN_MEMORY_TEST_EDGE").map(Into::into);
    let edge = StandaloneEdge::start(
        binary,
        TOKEN,
        &[
            "--http2-max-streams",
            &per_connection,
            "--max-streams-per-session",
            &max_streams,
            "--workers",
            "2",
        ],
    )
    .await?;
    let answered = Arc::new(AtomicUsize::new(0));
    let _agent = agent(edge.addr, answered.clone()).await?;
    // A few requests first, so what is allocated once (runtime, route, pools) is in the
    // baseline; then let the edge settle.
    drop(open_streams(edge.addr, 20).await?);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = edge.rss_kib()?;

    let started = Instant::now();
    let streams = streams();
    let held = open_streams(edge.addr, streams).await?;
    let opened = started.elapsed();
    let peak = edge.rss_kib()?;
    assert!(answered.load(Ordering::Relaxed) >= streams);
    eprintln!(
        "edge RSS: {before} KiB before, {peak} KiB with {streams} streams (opened in {opened:?})"
    );
    assert!(
        peak > 3 * before,
        "the load did not raise the edge's memory enough to test anything: {before} → {peak} KiB"
    );

    // Every stream closes: the visitors go away.
    drop(held);
    let closed = Instant::now();
    let mut now = peak;
    while closed.elapsed() < GIVE_BACK {
        tokio::time::sleep(Duration::from_millis(500)).await;
        now = edge.rss_kib()?;
        if now <= 2 * before {
            break;
        }
    }
    eprintln!(
        "edge RSS: {now} KiB {:.1} s after the streams closed",
        closed.elapsed().as_secs_f64()
    );
    assert!(
        now <= 2 * before,
        "the edge kept {now} KiB for {GIVE_BACK:?} after the peak ({before} KiB before, {peak} KiB at the peak)"
    );
    Ok(())
}

/// An agent holding the tunnel `mem`: every stream gets a response head and one chunk, then
/// stays open until the visitor goes away. Retries until the edge listens.
async fn agent(
    edge: SocketAddr,
    answered: Arc<AtomicUsize>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let tcp = loop {
        match TcpStream::connect(edge).await {
            Ok(tcp) => break tcp,
            Err(e) if Instant::now() > deadline => bail!("the edge never listened: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let request = format!("ws://{edge}/_warren/tunnel").into_client_request()?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        request,
        tcp,
        Some(warren_session::ws_config()),
    )
    .await
    .context("WebSocket handshake with the edge")?;
    let mut ws = warren_session::WebSocket::from_client_handshake(ws);
    let settings = Settings {
        max_streams: u32::try_from(streams() + 1000)?,
        ..Settings::default()
    };
    let hello = Hello {
        agent_version: "warren-memory-test".into(),
        credential: Credential::Token(TOKEN.into()),
        tunnels: vec![TunnelRequest {
            id: TunnelId(0),
            protocol: TunnelProtocol::Http,
            subdomain: Some("mem".into()),
            local_addr: "in-process".into(),
            host_header: None,
        }],
        settings,
        request_log: false,
        request_log_batches: false,
        request_log_compact: false,
        join: None,
        dynamic_tunnels: false,
    };
    let welcome =
        warren_session::handshake::agent_hello(&mut ws, &hello, Duration::from_secs(20)).await?;
    let heartbeat = Heartbeat {
        interval: Duration::from_millis(welcome.heartbeat_interval_ms),
        timeout: Duration::from_millis(welcome.heartbeat_timeout_ms),
    };
    let mux = Mux::new(
        Role::Agent,
        settings,
        welcome.settings,
        heartbeat,
        tokio::time::Instant::now().into_std(),
    );
    let (session, mut incoming, events) = warren_session::spawn(ws, mux, tracing::Span::none());
    Ok(tokio::spawn(async move {
        let _keep = (session, events);
        while let Some(stream) = incoming.accept().await {
            tokio::spawn(hold(stream, answered.clone()));
        }
    }))
}

/// Answers one stream and holds it until the edge closes it.
async fn hold(mut stream: warren_session::Stream, answered: Arc<AtomicUsize>) {
    let mut buf = [0u8; 2048];
    let mut seen = 0;
    while !buf[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf[seen..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen += n,
        }
        if seen == buf.len() {
            return;
        }
    }
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                 Transfer-Encoding: chunked\r\n\r\n7\r\nready\n\n\r\n";
    if stream.write_all(head).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    answered.fetch_add(1, Ordering::Relaxed);
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Opens `n` streams to the tunnel over HTTP/2 and returns them once every response head has
/// arrived (dropping the result closes them all).
async fn open_streams(edge: SocketAddr, n: usize) -> anyhow::Result<Vec<Box<dyn Send>>> {
    let mut held: Vec<Box<dyn Send>> = Vec::with_capacity(n + n / PER_CONNECTION + 1);
    let mut opened = 0;
    while opened < n {
        let tcp = TcpStream::connect(edge).await?;
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .context("HTTP/2 handshake with the edge")?;
        held.push(Box::new(AbortOnDrop(tokio::spawn(conn))));
        let batch = PER_CONNECTION.min(n - opened);
        let requests: Vec<_> = (0..batch)
            .map(|_| {
                let mut sender = sender.clone();
                tokio::spawn(async move {
                    let req = http::Request::get("http://mem.localhost/hold")
                        .body(Empty::<Bytes>::new())?;
                    sender.ready().await?;
                    let resp = sender.send_request(req).await?;
                    if resp.status() != 200 {
                        bail!("HTTP {}", resp.status());
                    }
                    anyhow::Ok(resp)
                })
            })
            .collect();
        for request in requests {
            held.push(Box::new(request.await?.context("a held request")?));
        }
        opened += batch;
    }
    Ok(held)
}

/// Ends a visitor connection's task when the connection is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
