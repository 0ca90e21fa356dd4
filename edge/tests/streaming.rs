//! Streaming through a real edge, agent and origin: bodies far larger than any buffer, with
//! bounded memory; bytes delivered as they are produced; WebSocket; many requests at once; and
//! one slow visitor never holding up the others on the same tunnel.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _, stream};
use http::StatusCode;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;
use warren_edge::EdgeConfig;
use warren_testkit::client;
use warren_testkit::cluster::{DEADLINE, TestAgent, TestEdge};
use warren_testkit::http::{Collected, Memory, ScriptedOrigin, Tunnel, sha256_hex};
use warren_testkit::pattern::{pattern_body, pattern_body_chunked, pattern_sha256};

const MIB: u64 = 1024 * 1024;

/// Growth of the process's peak memory allowed while 100 MiB pass through edge, agent and
/// origin (all in this process). Every hop holds at most a window or a buffer, a few MiB in
/// all; a hop holding a whole body would add at least 100 MiB.
const MEMORY_BUDGET_KIB: u64 = 64 * 1024;

/// Tests that measure peak memory take turns, so that one's transfer does not count against
/// the other's budget.
static MEMORY_PROBE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `transfer` and returns how much the process's peak resident memory grew meanwhile.
async fn peak_growth_kib<F: Future<Output = anyhow::Result<()>>>(
    transfer: F,
) -> anyhow::Result<u64> {
    let _turn = MEMORY_PROBE.lock().await;
    let reset = Memory::reset_peak();
    let before = Memory::now()?;
    // Without a reset the peak so far may already exceed what is resident, which would hide
    // growth: count from the peak then.
    let baseline = if reset {
        before.rss_kib
    } else {
        before.peak_kib
    };
    transfer.await?;
    let after = Memory::now()?;
    Ok(after.peak_kib.saturating_sub(baseline))
}

#[tokio::test]
async fn upload_of_100_mib_streams_in_bounded_memory() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("bigup").await?;
    let len = 100 * MIB;
    let growth = peak_growth_kib(async {
        let request = tunnel
            .request("POST", "/upload")
            .body(pattern_body(len).boxed())?;
        let response = tunnel.send(request).await?;
        assert_eq!(response.status, StatusCode::OK);
        let json = response.json()?;
        assert_eq!(json["bytes"], len);
        assert_eq!(json["sha256"], pattern_sha256(len));
        Ok(())
    })
    .await?;
    assert!(
        growth < MEMORY_BUDGET_KIB,
        "peak memory grew by {} MiB during a 100 MiB upload",
        growth / 1024
    );
    Ok(())
}

#[tokio::test]
async fn download_of_100_mib_streams_in_bounded_memory() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("bigdown").await?;
    let len = 100 * MIB;
    let growth = peak_growth_kib(async {
        let request = tunnel
            .request("GET", &format!("/bytes/{len}"))
            .body(client::empty())?;
        let response = client::request(tunnel.addr(), request).await?;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[http::header::CONTENT_LENGTH],
            len.to_string().as_str()
        );
        let (count, sha) = client::body_sha256(response.into_body()).await?;
        assert_eq!(count, len);
        assert_eq!(sha, pattern_sha256(len));
        Ok(())
    })
    .await?;
    assert!(
        growth < MEMORY_BUDGET_KIB,
        "peak memory grew by {} MiB during a 100 MiB download",
        growth / 1024
    );
    Ok(())
}

#[tokio::test]
async fn chunked_upload_of_unknown_length() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("chunkup").await?;
    let len = 5 * MIB + 3;
    let request = tunnel
        .request("PUT", "/upload")
        .body(pattern_body_chunked(len).boxed())?;
    let json = tunnel.send(request).await?.json()?;
    assert_eq!(json["bytes"], len);
    assert_eq!(json["sha256"], pattern_sha256(len));

    // Both ways at once: the echo of a chunked upload streams back through the tunnel.
    let request = tunnel
        .request("POST", "/echo")
        .body(pattern_body_chunked(len).boxed())?;
    let response = client::request(tunnel.addr(), request).await?;
    assert_eq!(
        client::body_sha256(response.into_body()).await?,
        (len, pattern_sha256(len))
    );
    Ok(())
}

#[tokio::test]
async fn echo_is_full_duplex_chunk_by_chunk() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("duplex").await?;
    // The upload does not end until every chunk has come back, so nothing on the way may wait
    // for the whole request before sending the response.
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let chunks = stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok(hyper::body::Frame::data(chunk)), rx))
    });
    let request = tunnel
        .request("POST", "/echo")
        .body(BodyExt::boxed(StreamBody::new(chunks)))?;
    let response = timeout(DEADLINE, client::request(tunnel.addr(), request))
        .await
        .context("response head never came while the upload was open")??;
    let mut body = response.into_body();
    for i in 0..5 {
        let sent = Bytes::from(format!("chunk number {i};"));
        tx.send(sent.clone()).await?;
        let mut received = Vec::new();
        while received.len() < sent.len() {
            let frame = timeout(DEADLINE, body.frame())
                .await
                .with_context(|| format!("chunk {i} did not come back"))?
                .context("body ended early")??;
            received.extend_from_slice(frame.data_ref().context("data frame")?);
        }
        assert_eq!(received, sent);
    }
    drop(tx);
    let end = timeout(DEADLINE, body.frame()).await?;
    assert!(end.is_none(), "the echo ends with the upload");
    Ok(())
}

#[tokio::test]
async fn websocket_echo_through_the_tunnel() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("sockets").await?;
    let mut socket = client::websocket(tunnel.addr(), &tunnel.host, "/ws").await?;
    socket
        .send(Message::text("hello through the tunnel"))
        .await?;
    assert_eq!(
        socket_next(&mut socket).await?,
        Message::text("hello through the tunnel")
    );
    let binary = Message::binary(vec![0u8, 1, 2, 254, 255]);
    socket.send(binary.clone()).await?;
    assert_eq!(socket_next(&mut socket).await?, binary);

    // 1 MiB in one message: larger than a tunnel frame, a stream window and a copy buffer.
    let mut big = vec![0u8; MIB as usize];
    warren_testkit::pattern::fill_pattern(7, &mut big);
    socket.send(Message::binary(big.clone())).await?;
    assert_eq!(socket_next(&mut socket).await?, Message::binary(big));

    // Many small messages in flight at once come back in order.
    for i in 0..100 {
        socket.feed(Message::text(format!("message {i}"))).await?;
    }
    socket.flush().await?;
    for i in 0..100 {
        assert_eq!(
            socket_next(&mut socket).await?,
            Message::text(format!("message {i}"))
        );
    }

    socket.send(Message::Ping(Bytes::from_static(b"p"))).await?;
    assert_eq!(
        socket_next(&mut socket).await?,
        Message::Pong(Bytes::from_static(b"p"))
    );

    socket.close(None).await?;
    let reply = socket_next(&mut socket).await?;
    assert!(matches!(reply, Message::Close(_)), "{reply:?}");
    let end = timeout(DEADLINE, socket.next()).await?;
    assert!(
        end.is_none(),
        "the connection ends after the close handshake"
    );

    // The tunnel still serves plain requests afterwards.
    assert_eq!(tunnel.get("/hello").await?.body, "hello from origin");
    Ok(())
}

async fn socket_next(socket: &mut client::ClientWebSocket) -> anyhow::Result<Message> {
    timeout(DEADLINE, socket.next())
        .await
        .context("no WebSocket message within the deadline")?
        .context("the WebSocket ended")?
        .context("WebSocket error")
}

#[tokio::test]
async fn server_sent_events_arrive_as_produced() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("events").await?;
    let request = tunnel
        .request("GET", "/sse?count=5&interval_ms=200")
        .header("accept", "text/event-stream")
        .body(client::empty())?;
    let sent = Instant::now();
    let response = client::request(tunnel.addr(), request).await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[http::header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body();
    let mut text = String::new();
    let mut arrivals = Vec::new();
    while let Some(frame) = timeout(DEADLINE, body.frame()).await? {
        let frame = frame?;
        if let Some(data) = frame.data_ref() {
            text.push_str(std::str::from_utf8(data)?);
        }
        while arrivals.len() < text.matches("\n\n").count() {
            arrivals.push(sent.elapsed());
        }
    }
    let expected: String = (0..5)
        .map(|i| format!("id: {i}\ndata: event {i}\n\n"))
        .collect();
    assert_eq!(text, expected);
    assert_eq!(arrivals.len(), 5);
    // The origin sends event 0 at once and the last 800 ms later. Buffering anywhere on the way
    // would deliver them together at the end. (Margins allow for a loaded machine.)
    assert!(
        arrivals[0] < Duration::from_millis(600),
        "first event after {:?}",
        arrivals[0]
    );
    assert!(
        arrivals[4] - arrivals[0] >= Duration::from_millis(500),
        "events arrived at {arrivals:?}"
    );
    for pair in arrivals.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(50),
            "two events arrived together: {arrivals:?}"
        );
    }
    Ok(())
}

/// Events produced faster than they travel reach the edge many per read; the edge writes
/// them on together (one system call for all that arrived), each still its own chunk.
#[tokio::test]
async fn a_burst_of_events_arrives_whole_and_in_order() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("burst").await?;
    for _ in 0..3 {
        let raw = format!(
            "GET /sse?count=2000&interval_ms=0 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            tunnel.host
        );
        let exchange = client::raw_exchange(tunnel.addr(), raw.as_bytes()).await?;
        let text = String::from_utf8(exchange)?;
        let (head, body) = text
            .split_once("\r\n\r\n")
            .context("no end of the response head")?;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        // Decode the chunked body by hand: every chunk well formed, then the last chunk.
        let mut rest = body;
        let mut events = String::new();
        let mut chunks = 0;
        loop {
            let (size, after) = rest.split_once("\r\n").context("no chunk line")?;
            let size = usize::from_str_radix(size, 16)?;
            if size == 0 {
                assert_eq!(after, "\r\n", "trailing bytes after the last chunk");
                break;
            }
            events.push_str(&after[..size]);
            assert_eq!(&after[size..size + 2], "\r\n");
            rest = &after[size + 2..];
            chunks += 1;
        }
        let expected: String = (0..2000)
            .map(|i| format!("id: {i}\ndata: event {i}\n\n"))
            .collect();
        assert_eq!(events, expected);
        assert!(chunks >= 1);
    }
    Ok(())
}

#[tokio::test]
async fn two_hundred_concurrent_requests_on_one_session() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("crowd").await?;
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..200u64 {
        let addr = tunnel.addr();
        let (method, path, body) = match i % 4 {
            0 => ("GET", format!("/bytes/{}", 10_000 + i * 997), None),
            1 => ("POST", format!("/echo?i={i}"), Some(format!("body {i}"))),
            2 => ("GET", "/slow?ms=300".to_string(), None),
            _ => ("GET", format!("/bytes/{}?chunked=1", 70_000 + i), None),
        };
        let request = tunnel
            .request(method, &path)
            .body(body.clone().map_or_else(client::empty, client::full))?;
        tasks.spawn(async move {
            let response = client::request(addr, request).await?;
            let status = response.status();
            let (len, sha) = client::body_sha256(response.into_body()).await?;
            anyhow::Ok((i, path, body, status, len, sha))
        });
    }
    let mut done = 0;
    while let Some(result) = timeout(DEADLINE, tasks.join_next()).await? {
        let (i, path, body, status, len, sha) = result??;
        assert_eq!(status, StatusCode::OK, "request {i} {path}");
        match (i % 4, body) {
            (1, Some(body)) => {
                assert_eq!(
                    (len, sha.as_str()),
                    (body.len() as u64, sha256_hex(body.as_bytes()).as_str()),
                    "request {i}"
                );
            }
            (2, _) => assert_eq!(len, 9, "request {i}"),
            _ => {
                let n: u64 = path
                    .trim_start_matches("/bytes/")
                    .trim_end_matches("?chunked=1")
                    .parse()?;
                assert_eq!((len, sha), (n, pattern_sha256(n)), "request {i} {path}");
            }
        }
        done += 1;
    }
    assert_eq!(done, 200);
    // Fifty of them wait 300 ms at the origin: served one after another that would take 15 s.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "200 requests took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn a_visitor_that_stops_reading_does_not_slow_others() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("stuck").await?;
    // 64 visitors start 64 MiB downloads, read a little, then stop reading but keep their
    // connections open. Each stalled stream holds one stream window (256 KiB) of the session's
    // 64 MiB window, so they cannot hold up the rest. (Limit of the design, documented in
    // docs/protocol.md: about 250 stalled visitors exhaust the session window.)
    let total = 64 * MIB;
    let mut stalled = Vec::new();
    for _ in 0..64 {
        let request = tunnel
            .request("GET", &format!("/bytes/{total}"))
            .body(client::empty())?;
        let mut body = client::request(tunnel.addr(), request).await?.into_body();
        let mut received = 0;
        while received < 512 * 1024 {
            let frame = timeout(DEADLINE, body.frame())
                .await?
                .context("body ended")??;
            received += frame.data_ref().map_or(0, Bytes::len) as u64;
        }
        stalled.push((body, received));
    }

    // Meanwhile the same tunnel serves other visitors at full speed.
    let started = Instant::now();
    let small = tunnel.get("/hello");
    let len = 4 * MIB;
    let large = async {
        let request = tunnel
            .request("GET", &format!("/bytes/{len}"))
            .body(client::empty())?;
        let response = client::request(tunnel.addr(), request).await?;
        client::body_sha256(response.into_body()).await
    };
    let upload = async {
        let request = tunnel
            .request("POST", "/upload")
            .body(pattern_body(len).boxed())?;
        tunnel.send(request).await?.json()
    };
    let (small, large, upload) = timeout(Duration::from_secs(5), async {
        tokio::join!(small, large, upload)
    })
    .await
    .context("requests beside the stalled downloads took over 5 s")?;
    assert_eq!(small?.body, "hello from origin");
    assert_eq!(large?, (len, pattern_sha256(len)));
    assert_eq!(upload?["sha256"], pattern_sha256(len));
    assert!(started.elapsed() < Duration::from_secs(5));

    // A stalled visitor was only paused: it can still read its download to the end.
    let (body, received) = stalled.remove(0);
    let (rest, _) = timeout(Duration::from_secs(30), client::body_sha256(body)).await??;
    assert_eq!(received + rest, total);
    Ok(())
}

#[tokio::test]
async fn streaming_starts_before_the_origin_finishes() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("stall").await?;
    // A few bytes (smaller than any buffer on the way) and then a body that never ends: the
    // bytes must arrive on their own, not when some buffer fills or the body ends.
    for len in [10u64, 300_000] {
        let request = tunnel
            .request("GET", &format!("/stall?bytes={len}"))
            .body(client::empty())?;
        let started = Instant::now();
        let response = timeout(DEADLINE, client::request(tunnel.addr(), request)).await??;
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let mut received = 0u64;
        while received < len {
            let frame = timeout(Duration::from_secs(3), body.frame())
                .await
                .with_context(|| format!("only {received} of {len} bytes arrived"))?
                .context("body ended")??;
            received += frame.data_ref().map_or(0, Bytes::len) as u64;
        }
        assert_eq!(received, len);
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    Ok(())
}

#[tokio::test]
async fn abandoned_responses_release_their_streams() -> anyhow::Result<()> {
    // Two streams per session: a stream leaked by an abandoned request would soon exhaust them.
    let config = EdgeConfig {
        max_streams_per_session: 2,
        ..TestEdge::config()
    };
    let tunnel = Tunnel::start_with(config, "leaks").await?;
    for round in 0..6 {
        let request = tunnel
            .request("GET", "/stall?bytes=1000")
            .body(client::empty())?;
        let mut sender = client::connect(tunnel.addr()).await?;
        // The stream may still be on its way to release from the previous round.
        let response = poll_until_ok(&mut sender, request, &tunnel).await?;
        let mut body = response.into_body();
        let mut received = 0;
        while received < 1000 {
            let frame = timeout(DEADLINE, body.frame())
                .await
                .with_context(|| format!("round {round}"))?
                .context("body ended")??;
            received += frame.data_ref().map_or(0, Bytes::len);
        }
        // The visitor goes away mid-response.
        drop(body);
        drop(sender);
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let response = tunnel.get("/hello").await?;
        if response.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "streams were never released: {} {:?}",
            response.status,
            response.headers.get("warren-error")
        );
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// Sends `request` (a GET without body) until it is not refused for lack of streams.
async fn poll_until_ok(
    sender: &mut hyper::client::conn::http1::SendRequest<client::BoxBody>,
    request: http::Request<client::BoxBody>,
    tunnel: &Tunnel,
) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
    let (parts, _) = request.into_parts();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let attempt = http::Request::from_parts(parts.clone(), client::empty());
        sender.ready().await?;
        let response = sender.send_request(attempt).await?;
        if response.status() == StatusCode::OK {
            return Ok(response);
        }
        let refused = Collected::read(response).await?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "still refused after {DEADLINE:?}: {} {:?} ({})",
            refused.status,
            refused.headers.get("warren-error"),
            tunnel.host
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn websocket_frames_sent_with_the_handshake_are_not_lost() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("eager").await?;
    // The handshake and a first (masked) text frame in one write, before the 101 arrives.
    let mut raw = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        tunnel.host
    )
    .into_bytes();
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    raw.extend_from_slice(&[0x81, 0x80 | 5]);
    raw.extend_from_slice(&mask);
    raw.extend(b"early".iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));

    let mut socket = tokio::net::TcpStream::connect(tunnel.addr()).await?;
    socket.write_all(&raw).await?;
    let mut received = Vec::new();
    let expected_frame = [&[0x81u8, 5][..], b"early"].concat();
    let read = async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = socket.read(&mut chunk).await?;
            anyhow::ensure!(
                n > 0,
                "closed after {:?}",
                String::from_utf8_lossy(&received)
            );
            received.extend_from_slice(&chunk[..n]);
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n")
                && received.len() >= end + 4 + expected_frame.len()
            {
                return Ok(end + 4);
            }
        }
    };
    let head_len = timeout(DEADLINE, read).await??;
    let head = String::from_utf8_lossy(&received[..head_len]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    assert_eq!(&received[head_len..], &expected_frame[..]);
    Ok(())
}

#[tokio::test]
async fn many_websockets_at_once() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("manyws").await?;
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let addr = tunnel.addr();
        let host = tunnel.host.clone();
        tasks.spawn(async move {
            let mut socket = client::websocket(addr, &host, "/ws").await?;
            for j in 0..10 {
                let text = format!("socket {i} message {j}");
                socket.send(Message::text(text.clone())).await?;
                anyhow::ensure!(socket_next(&mut socket).await? == Message::text(text));
            }
            socket.close(None).await?;
            anyhow::Ok(())
        });
    }
    while let Some(result) = timeout(DEADLINE, tasks.join_next()).await? {
        result??;
    }
    Ok(())
}

#[tokio::test]
async fn killed_agent_cuts_in_flight_responses_visibly() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("killed").await?;
    // A chunked response in flight: if the tunnel goes, the visitor must see the body fail,
    // not end cleanly as if it were complete.
    let request = tunnel
        .request("GET", "/stall?bytes=1000")
        .body(client::empty())?;
    let response = client::request(tunnel.addr(), request).await?;
    let mut body = response.into_body();
    let mut received = 0;
    while received < 1000 {
        let frame = timeout(DEADLINE, body.frame())
            .await?
            .context("body ended")??;
        received += frame.data_ref().map_or(0, Bytes::len);
    }
    let Tunnel {
        agent,
        edge,
        origin,
        host: _,
    } = tunnel;
    agent.kill();
    let end = timeout(DEADLINE, body.frame())
        .await
        .context("the visitor still waits after its tunnel died")?;
    assert!(
        matches!(end, Some(Err(_))),
        "a cut response must not look complete: {end:?}"
    );
    drop((edge, origin));
    Ok(())
}

#[tokio::test]
async fn abandoned_uploads_release_their_streams() -> anyhow::Result<()> {
    let config = EdgeConfig {
        max_streams_per_session: 2,
        ..TestEdge::config()
    };
    let tunnel = Tunnel::start_with(config, "halfup").await?;
    for _ in 0..4 {
        // Announce 10 MiB, send 1 MiB, hang up.
        let mut socket = tokio::net::TcpStream::connect(tunnel.addr()).await?;
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
            tunnel.host,
            10 * MIB
        );
        socket.write_all(head.as_bytes()).await?;
        socket.write_all(&vec![7u8; MIB as usize]).await?;
        drop(socket);
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let response = tunnel.get("/hello").await?;
        if response.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "streams of abandoned uploads were never released: {response:?}"
        );
        tokio::task::yield_now().await;
    }
    // Both streams are usable, not just one.
    let (a, b) = tokio::join!(tunnel.get("/slow?ms=100"), tunnel.get("/slow?ms=100"));
    assert_eq!((a?.status, b?.status), (StatusCode::OK, StatusCode::OK));
    Ok(())
}

#[tokio::test]
async fn a_cut_origin_response_is_cut_for_the_visitor() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    // The origin promises more than it sends, then hangs up: with a length, or chunked.
    let origin = ScriptedOrigin::start(|seen| {
        let head = if seen.target == "/length" {
            "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n"
        } else {
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n400\r\n"
        };
        let mut response = head.as_bytes().to_vec();
        response.extend_from_slice(&[b'x'; 1000]);
        response
    })
    .await?;
    let edge = TestEdge::start().await?;
    let agent = TestAgent::start(&edge, origin.port(), Some("cutoff")).await?;
    for path in ["/length", "/chunked"] {
        let request = http::Request::get(path)
            .header(http::header::HOST, agent.hostname.as_str())
            .body(client::empty())?;
        let response = client::request(edge.addr, request).await?;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let result = timeout(DEADLINE, response.into_body().collect())
            .await
            .with_context(|| format!("{path}: the visitor waits forever"))?;
        assert!(
            result.is_err(),
            "{path}: a cut response must not look complete: {result:?}"
        );
    }
    Ok(())
}
