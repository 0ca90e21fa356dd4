//! Every way a visitor request can fail, seen from the visitor: the status, the `warren-error`
//! header naming the failure, a JSON or HTML body, and an `x-request-id` to quote — and the edge
//! carrying on afterwards.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::header::{ACCEPT, HOST};
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout};
use warren_edge::EdgeConfig;
use warren_testkit::client;
use warren_testkit::cluster::{DEADLINE, TestAgent, TestEdge};
use warren_testkit::http::{Collected, RawConnection, ScriptedOrigin, Tunnel, parse_all};

const ERROR_HEADER: &str = "warren-error";

/// `GET path` with `Host: host` (and `Accept` if given) on a fresh connection.
async fn get(
    addr: std::net::SocketAddr,
    host: &str,
    path: &str,
    accept: Option<&str>,
) -> anyhow::Result<Collected> {
    let mut request = Request::get(path).header(HOST, host);
    if let Some(accept) = accept {
        request = request.header(ACCEPT, accept);
    }
    let response = client::request(addr, request.body(client::empty())?).await?;
    Collected::read(response).await
}

/// Checks an error the edge made itself: status, error name, JSON body, request id.
fn assert_edge_error(
    response: &Collected,
    status: u16,
    code: &str,
) -> anyhow::Result<serde_json::Value> {
    assert_eq!(response.status.as_u16(), status, "{response:?}");
    assert_eq!(response.header(ERROR_HEADER), code, "{response:?}");
    assert_eq!(response.header("content-type"), "application/json");
    let id = response.header("x-request-id");
    assert!(!id.is_empty(), "no x-request-id on {code}");
    let json = response.json()?;
    assert_eq!(json["error"], code);
    assert_eq!(json["status"], status);
    assert_eq!(json["request_id"], id);
    assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(json["hint"].as_str().is_some_and(|h| !h.is_empty()));
    Ok(json)
}

/// A port on loopback where nothing listens.
async fn unused_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.port())
}

#[tokio::test]
async fn unknown_tunnel_is_404_json_or_html() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let edge = TestEdge::start().await?;
    let json = get(edge.addr, "nobody.localhost", "/some/path", None).await?;
    let body = assert_edge_error(&json, 404, "tunnel-not-found")?;
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("nobody.localhost")
    );
    assert_eq!(json.header("cache-control"), "no-store");

    // Browsers get a page; the host they typed is escaped in it.
    let html = get(
        edge.addr,
        "nobody.localhost",
        "/",
        Some("text/html,application/xhtml+xml,*/*;q=0.8"),
    )
    .await?;
    assert_eq!(html.status, StatusCode::NOT_FOUND);
    assert_eq!(html.header(ERROR_HEADER), "tunnel-not-found");
    assert_eq!(html.header("content-type"), "text/html; charset=utf-8");
    assert!(!html.header("x-request-id").is_empty());
    let page = std::str::from_utf8(&html.body)?;
    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert!(page.contains("404"));
    assert!(page.contains(html.header("x-request-id")));

    // Host matching ignores case, port and a trailing dot, and still finds nothing.
    let port = edge.addr.port();
    for host in [
        format!("NoBody.LocalHost:{port}"),
        "nobody.localhost.".to_string(),
    ] {
        let response = get(edge.addr, &host, "/", None).await?;
        assert_edge_error(&response, 404, "tunnel-not-found")?;
    }

    // HEAD gets the status and headers without the body.
    let mut conn = RawConnection::connect(edge.addr).await?;
    conn.send(b"HEAD / HTTP/1.1\r\nHost: nobody.localhost\r\n\r\n")
        .await?;
    let head = conn.response(true).await?;
    assert_eq!(head.status, 404);
    assert_eq!(head.header(ERROR_HEADER), Some("tunnel-not-found"));
    conn.send(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    assert_eq!(conn.response(false).await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn hosts_outside_the_edge_domain_are_unknown() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let edge = TestEdge::start().await?;
    for host in [
        "example.com",
        "a.b.localhost",
        "evil-localhost",
        "localhost.evil.com",
    ] {
        let response = get(edge.addr, host, "/", None).await?;
        assert_edge_error(&response, 404, "unknown-host")?;
    }
    Ok(())
}

#[tokio::test]
async fn request_without_host_is_a_bad_request() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let edge = TestEdge::start().await?;
    let raw = client::raw_exchange(edge.addr, b"GET / HTTP/1.0\r\n\r\n").await?;
    let responses = parse_all(&raw, &[false])?;
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 400);
    assert_eq!(responses[0].header(ERROR_HEADER), Some("missing-host"));
    assert!(responses[0].header("x-request-id").is_some());
    Ok(())
}

#[tokio::test]
async fn refused_local_connection_is_502() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let edge = TestEdge::start().await?;
    let port = unused_port().await?;
    let agent = TestAgent::start(&edge, port, Some("refused")).await?;
    for _ in 0..3 {
        let response = get(edge.addr, &agent.hostname, "/hello", None).await?;
        let json = assert_edge_error(&response, 502, "local-service-refused")?;
        assert!(json["hint"].as_str().unwrap_or("").contains("local"));
    }
    // Once something listens there, the same tunnel works.
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .context("rebind the port")?;
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nup")
                .await;
        }
    });
    let response = get(edge.addr, &agent.hostname, "/hello", None).await?;
    assert_eq!(
        (response.status, response.body),
        (StatusCode::OK, Bytes::from("up"))
    );
    Ok(())
}

#[tokio::test]
async fn local_service_timeout_is_504() -> anyhow::Result<()> {
    let config = EdgeConfig {
        upstream_timeout: Duration::from_secs(1),
        ..TestEdge::config()
    };
    let tunnel = Tunnel::start_with(config, "sleepy").await?;
    let started = Instant::now();
    let response = timeout(DEADLINE, tunnel.get("/slow?ms=5000")).await??;
    let elapsed = started.elapsed();
    assert_edge_error(&response, 504, "local-service-timeout")?;
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "answered after {elapsed:?}"
    );
    // A response that starts in time is not cut off, however long its body takes.
    let response = tunnel.get("/sse?count=3&interval_ms=600").await?;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body.len(), 3 * "id: 0\ndata: event 0\n\n".len());
    // And the tunnel still answers.
    assert_eq!(tunnel.get("/hello").await?.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn stream_limit_gives_503_then_recovers() -> anyhow::Result<()> {
    let config = EdgeConfig {
        max_streams_per_session: 1,
        ..TestEdge::config()
    };
    let tunnel = Tunnel::start_with(config, "narrow").await?;
    // One request holds the only stream: its body never ends.
    let request = tunnel
        .request("GET", "/stall?bytes=10")
        .body(client::empty())?;
    let held = client::request(tunnel.addr(), request).await?;
    assert_eq!(held.status(), StatusCode::OK);
    let mut held = held.into_body();
    let first = timeout(DEADLINE, held.frame())
        .await?
        .context("no data")??;
    assert!(first.data_ref().is_some_and(|d| !d.is_empty()));

    let response = tunnel.get("/hello").await?;
    assert_edge_error(&response, 503, "tunnel-overloaded")?;

    // Once the held request goes away its stream is freed and requests pass again.
    drop(held);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let response = tunnel.get("/hello").await?;
        if response.status == StatusCode::OK {
            break;
        }
        assert_edge_error(&response, 503, "tunnel-overloaded")?;
        assert!(Instant::now() < deadline, "the stream was never released");
        tokio::task::yield_now().await;
    }
    Ok(())
}

#[tokio::test]
async fn oversized_request_heads_are_rejected_and_the_edge_carries_on() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("limits").await?;
    let host = &tunnel.host;
    let max_header_bytes = TestEdge::config().max_header_bytes;

    let huge_value = "x".repeat(max_header_bytes + 1024);
    let too_large = format!("GET /hello HTTP/1.1\r\nHost: {host}\r\nX-Huge: {huge_value}\r\n\r\n");
    let too_many = {
        let mut raw = format!("GET /hello HTTP/1.1\r\nHost: {host}\r\n");
        for i in 0..TestEdge::config().max_headers + 10 {
            raw.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        raw + "\r\n"
    };
    let long_target = format!(
        "GET /hello?{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
        "q".repeat(max_header_bytes + 1024)
    );
    for (what, raw) in [
        ("large header", too_large),
        ("many headers", too_many),
        ("long target", long_target),
    ] {
        let mut conn = RawConnection::connect(tunnel.addr()).await?;
        conn.send(raw.as_bytes()).await?;
        let response = conn.response(false).await?;
        assert!(
            (400..500).contains(&response.status),
            "{what}: {response:?}"
        );
        assert!(
            conn.closed_within(DEADLINE).await,
            "{what}: the connection stays open after a rejected head"
        );
    }
    assert_eq!(
        tunnel.origin.connections_accepted(),
        0,
        "a rejected head reached the origin"
    );
    assert_eq!(tunnel.get("/hello").await?.body, "hello from origin");
    Ok(())
}

#[tokio::test]
async fn apex_serves_health_checks() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let edge = TestEdge::start().await?;
    let by_ip = edge.addr.to_string();
    for host in ["localhost", by_ip.as_str(), "LOCALHOST"] {
        let health = get(edge.addr, host, "/healthz", None).await?;
        assert_eq!(health.status, StatusCode::OK, "{host}");
        assert!(health.headers.get(ERROR_HEADER).is_none());
        let ready = get(edge.addr, host, "/readyz", None).await?;
        assert_eq!(ready.status, StatusCode::OK, "{host}");
    }
    let missing = get(edge.addr, "localhost", "/nothing-here", None).await?;
    assert_edge_error(&missing, 404, "not-found")?;
    // The tunnel endpoint answers anything but a WebSocket upgrade with an explanation.
    let tunnel = get(edge.addr, "localhost", "/_warren/tunnel", None).await?;
    assert_edge_error(&tunnel, 400, "bad-request")?;
    Ok(())
}

#[tokio::test]
async fn edge_errors_carry_the_request_id() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let edge = TestEdge::start().await?;
    // Fresh ids differ from one request to the next.
    let a = get(edge.addr, "nobody.localhost", "/", None).await?;
    let b = get(edge.addr, "nobody.localhost", "/", None).await?;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));

    // A visitor's own id is used, in the header and the body.
    for host in ["nobody.localhost", "example.com"] {
        let request = Request::get("/")
            .header(HOST, host)
            .header("x-request-id", "visitor-chosen-id")
            .body(client::empty())?;
        let response = Collected::read(client::request(edge.addr, request).await?).await?;
        assert_eq!(response.header("x-request-id"), "visitor-chosen-id");
        assert_eq!(response.json()?["request_id"], "visitor-chosen-id");
    }
    // An absurd one is replaced.
    let long_id = "i".repeat(500);
    let request = Request::get("/")
        .header(HOST, "nobody.localhost")
        .header("x-request-id", long_id.as_str())
        .body(client::empty())?;
    let response = Collected::read(client::request(edge.addr, request).await?).await?;
    let id = response.header("x-request-id");
    assert!(!id.is_empty() && id != long_id);
    Ok(())
}

#[tokio::test]
async fn local_service_closing_without_an_answer_is_502() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    // Accepts, reads the request, hangs up.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut socket = socket;
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
            });
        }
    });
    let edge = TestEdge::start().await?;
    let agent = TestAgent::start(&edge, port, Some("hangup")).await?;
    let response = timeout(DEADLINE, get(edge.addr, &agent.hostname, "/", None)).await??;
    assert_edge_error(&response, 502, "local-service-error")?;
    Ok(())
}

#[tokio::test]
async fn invalid_response_from_local_service_is_502() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let origin = ScriptedOrigin::start(|_| b"this is not HTTP\r\n\r\n".to_vec()).await?;
    let edge = TestEdge::start().await?;
    let agent = TestAgent::start(&edge, origin.port(), Some("garbage")).await?;
    let response = timeout(DEADLINE, get(edge.addr, &agent.hostname, "/", None)).await??;
    assert_edge_error(&response, 502, "local-service-error")?;
    Ok(())
}

#[tokio::test]
async fn malformed_request_body_is_the_visitors_fault() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("badbody").await?;
    // A chunk size that is not hex: the body breaks after the head went to the origin.
    let raw = format!(
        "POST /upload HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        tunnel.host
    );
    let mut conn = RawConnection::connect(tunnel.addr()).await?;
    conn.send(raw.as_bytes()).await?;
    let response = conn.response(false).await?;
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(response.header(ERROR_HEADER), Some("bad-request"));
    assert!(response.header("x-request-id").is_some());
    assert_eq!(tunnel.get("/hello").await?.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn stopped_agent_leaves_tunnel_not_found() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("gone").await?;
    assert_eq!(tunnel.get("/hello").await?.status, StatusCode::OK);
    let Tunnel {
        agent,
        edge,
        origin,
        host,
    } = tunnel;
    agent.stop().await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let response = get(edge.addr, &host, "/hello", None).await?;
        if response.header(ERROR_HEADER) == "tunnel-not-found" {
            assert_edge_error(&response, 404, "tunnel-not-found")?;
            break;
        }
        // Until the edge notices, a request either still passes or fails as the edge's error.
        assert!(
            response.status == StatusCode::OK || !response.header(ERROR_HEADER).is_empty(),
            "{response:?}"
        );
        assert!(Instant::now() < deadline, "the tunnel outlived its agent");
        tokio::task::yield_now().await;
    }
    drop(origin);
    Ok(())
}

#[tokio::test]
async fn ambiguous_or_proxy_requests_are_refused() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("strict").await?;
    let host = &tunnel.host;
    // Two Host fields: which tunnel is meant? RFC 9112 §3.2 requires 400.
    let two_hosts = format!(
        "GET /hello HTTP/1.1\r\nHost: {host}\r\nHost: other.localhost\r\nConnection: close\r\n\r\n"
    );
    // The edge is a gateway, not a forward proxy: CONNECT has nothing to reach, be it a
    // foreign host (whose authority also makes it an unknown host) or a tunnel.
    let connect =
        format!("CONNECT example.com:443 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let connect_tunnel =
        format!("CONNECT {host}:80 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    for (what, raw, status, code) in [
        ("two Host fields", two_hosts, 400, "bad-request"),
        ("CONNECT elsewhere", connect, 404, "unknown-host"),
        ("CONNECT to the tunnel", connect_tunnel, 400, "bad-request"),
    ] {
        let responses = parse_all(
            &client::raw_exchange(tunnel.addr(), raw.as_bytes()).await?,
            &[false],
        )?;
        assert_eq!(responses.len(), 1, "{what}");
        let response = &responses[0];
        assert_eq!(response.status, status, "{what}: {response:?}");
        assert_eq!(response.header(ERROR_HEADER), Some(code), "{what}");
        assert!(response.header("x-request-id").is_some(), "{what}");
    }
    assert_eq!(
        tunnel.origin.connections_accepted(),
        0,
        "a refused request reached the origin"
    );
    Ok(())
}
