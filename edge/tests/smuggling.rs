//! Request smuggling, tried through both HTTP engines against a local service that parses
//! leniently (a bare LF ends a line anywhere, as many servers do): each attack, then ordinary
//! requests on the same and on new connections (which reuse the pooled upstream), and the
//! local service must never see a request the visitor did not send as one — nothing whose
//! target is `/smuggled` — whatever the edge answered.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_edge::EdgeConfig;
use warren_testkit::cluster::{TestAgent, TestEdge};
use warren_testkit::recording::{Leniency, RecordingOrigin};

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n";

/// Attacks: each is a request meant to carry `SMUGGLED` past the edge.
fn attacks() -> Vec<(&'static str, String)> {
    let s = SMUGGLED;
    let te = "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n";
    vec![
        (
            "bare LF in a trailer",
            format!("{te}Trailer: X\r\n\r\n0\r\nX: a\n{s}\r\n\r\n"),
        ),
        (
            "bare LF ending the trailers",
            format!("{te}\r\n0\r\nX: a\n\n{s}"),
        ),
        (
            "bare CR in a trailer",
            format!("{te}\r\n0\r\nX: a\r{s}\r\n\r\n"),
        ),
        (
            "obs-fold in a trailer",
            format!("{te}Trailer: X\r\n\r\n0\r\nX: a\r\n {s}\r\n\r\n"),
        ),
        (
            "NUL in a trailer",
            format!("{te}\r\n0\r\nX: a\0b\r\n\r\n{s}"),
        ),
        (
            "Content-Length and chunked",
            format!(
                "POST / HTTP/1.1\r\nHost: {{host}}\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{s}"
            ),
        ),
        (
            "two Content-Lengths",
            format!(
                "POST / HTTP/1.1\r\nHost: {{host}}\r\nContent-Length: 0\r\nContent-Length: 60\r\n\r\n{s}"
            ),
        ),
        (
            "bare LF after a chunk size",
            format!("{te}\r\n5\nhello\r\n0\r\n\r\n{s}"),
        ),
        (
            "bare LF after chunk data",
            format!("{te}\r\n5\r\nhello\n0\r\n\r\n{s}"),
        ),
        (
            "chunk size with a sign",
            format!("{te}\r\n+5\r\nhello\r\n0\r\n\r\n{s}"),
        ),
        (
            "chunk size in 0x form",
            format!("{te}\r\n0x5\r\nhello\r\n0\r\n\r\n{s}"),
        ),
        (
            "chunk size overflowing 64 bits",
            format!("{te}\r\n10000000000000005\r\nhello\r\n0\r\n\r\n{s}"),
        ),
        (
            "bare CR in a chunk extension",
            format!("{te}\r\n5;a\rb\r\nhello\r\n0\r\n\r\n{s}"),
        ),
        (
            "chunked not last",
            format!(
                "POST / HTTP/1.1\r\nHost: {{host}}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{s}"
            ),
        ),
        (
            "chunked as a substring",
            format!(
                "POST / HTTP/1.1\r\nHost: {{host}}\r\nTransfer-Encoding: xchunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n{s}"
            ),
        ),
        (
            "two Transfer-Encodings",
            format!(
                "POST / HTTP/1.1\r\nHost: {{host}}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{s}"
            ),
        ),
        (
            "obs-fold in a header",
            format!(
                "POST / HTTP/1.1\r\nHost: {{host}}\r\nX-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n{s}"
            ),
        ),
        (
            "bare LF in a header",
            format!(
                "POST / HTTP/1.1\r\nHost: {{host}}\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n{s}"
            ),
        ),
        (
            "a body shorter than its length",
            format!("POST / HTTP/1.1\r\nHost: {{host}}\r\nContent-Length: 200\r\n\r\nshort{s}"),
        ),
    ]
}

async fn exchange(edge: &TestEdge, raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut conn = TcpStream::connect(edge.addr).await?;
    conn.write_all(raw).await?;
    let mut response = Vec::new();
    // The edge answers and closes; an attack the edge waits on (a body still to come) ends
    // with the read timeout, which is fine: nothing may have been smuggled meanwhile.
    let _ = tokio::time::timeout(Duration::from_secs(3), conn.read_to_end(&mut response)).await;
    Ok(response)
}

async fn no_request_is_smuggled(engine: &str) -> anyhow::Result<()> {
    let config = EdgeConfig {
        http1_engine: engine.to_string(),
        handshake_timeout: Duration::from_secs(2),
        ..TestEdge::config()
    };
    let edge = TestEdge::start_with(config).await?;
    let origin = RecordingOrigin::start(Leniency::Lenient).await?;
    let agent = TestAgent::start(&edge, origin.port(), Some("smuggle")).await?;
    let host = &agent.hostname;
    let follow_up = format!("GET /after HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    for (name, attack) in attacks() {
        let attack = attack.replace("{host}", host);
        let mut raw = attack.into_bytes();
        raw.extend_from_slice(follow_up.as_bytes());
        let response = exchange(&edge, &raw).await?;
        // Ordinary requests on new connections take the pooled upstream the attack used.
        for _ in 0..3 {
            let response = exchange(&edge, follow_up.as_bytes()).await?;
            anyhow::ensure!(
                response.starts_with(b"HTTP/1.1 200"),
                "{engine}: after {name:?} an ordinary request failed: {:?}",
                String::from_utf8_lossy(&response)
            );
        }
        let smuggled: Vec<_> = origin
            .requests()
            .into_iter()
            .filter(|r| r.target.contains("smuggled"))
            .collect();
        anyhow::ensure!(
            smuggled.is_empty(),
            "{engine}: {name:?} smuggled a request (the edge answered {:?}): {smuggled:?}",
            String::from_utf8_lossy(&response)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_core_lets_nothing_through() -> anyhow::Result<()> {
    no_request_is_smuggled("core").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_general_path_lets_nothing_through() -> anyhow::Result<()> {
    no_request_is_smuggled("hyper").await
}

/// Trailers the edge refuses are refused with 400 by both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_trailers_are_refused_with_400_by_both_engines() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    for engine in ["core", "hyper"] {
        let config = EdgeConfig {
            http1_engine: engine.to_string(),
            ..TestEdge::config()
        };
        let edge = TestEdge::start_with(config).await?;
        let origin = RecordingOrigin::start(Leniency::Strict).await?;
        let agent = TestAgent::start(&edge, origin.port(), Some("trailers")).await?;
        let te = format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n",
            agent.hostname
        );
        for (name, trailer) in [
            ("bare LF", "X: a\nY: b\r\n\r\n"),
            ("bare CR", "X: a\rY: b\r\n\r\n"),
            ("obs-fold", "X: a\r\n folded\r\n\r\n"),
            ("NUL", "X: a\0b\r\n\r\n"),
        ] {
            let response = exchange(&edge, format!("{te}{trailer}").as_bytes()).await?;
            anyhow::ensure!(
                response.starts_with(b"HTTP/1.1 400"),
                "{engine}: a trailer with {name} got {:?}",
                String::from_utf8_lossy(&response)
            );
        }
    }
    Ok(())
}
