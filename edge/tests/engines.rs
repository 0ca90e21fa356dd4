//! The same request bytes through both of the edge's HTTP engines — the proxy core and the
//! general path through hyper (`--http1-engine hyper`) — reach the local service as the same
//! request: the same method, target, fields (per name, in order, case kept), body and
//! trailers. A corpus of hand-picked requests and property-generated ones (duplicate and
//! odd-case fields, hop-by-hop and client-address fields, trailers, odd hosts, every method).
//!
//! What both may differ in, and so what is compared loosely: the request id the edge makes up
//! (`X-Request-Id` is compared only when the visitor sent one), the framing of a body (a
//! chunked body's chunks may be cut differently), and the order of fields of *different*
//! names (HTTP gives it no meaning; hyper groups a name's repeats).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_edge::EdgeConfig;
use warren_testkit::cluster::{TestAgent, TestEdge};
use warren_testkit::recording::{Leniency, Recorded, RecordingOrigin};

/// An edge with one tunnel to its own recording origin.
struct Engine {
    edge: TestEdge,
    origin: RecordingOrigin,
    _agent: TestAgent,
    host: String,
}

impl Engine {
    async fn start(engine: &str) -> anyhow::Result<Engine> {
        let config = EdgeConfig {
            http1_engine: engine.to_string(),
            ..TestEdge::config()
        };
        let edge = TestEdge::start_with(config).await?;
        let origin = RecordingOrigin::start(Leniency::Strict).await?;
        let agent = TestAgent::start(&edge, origin.port(), Some("same")).await?;
        let host = agent.hostname.clone();
        Ok(Engine {
            edge,
            origin,
            _agent: agent,
            host,
        })
    }

    /// Sends `raw` (with `{host}` replaced) on a fresh connection; returns the response bytes
    /// and what the origin received.
    async fn send(&self, raw: &str) -> anyhow::Result<(Vec<u8>, Vec<Recorded>)> {
        self.origin.clear();
        let raw = raw.replace("{host}", &self.host);
        let mut conn = TcpStream::connect(self.edge.addr).await?;
        conn.write_all(raw.as_bytes()).await?;
        let mut response = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut response));
        read.await??;
        Ok((response, self.origin.requests()))
    }
}

/// A request reduced to what must be equal.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    method: String,
    target: String,
    fields: BTreeMap<String, Vec<String>>,
    body: Vec<u8>,
    trailers: BTreeMap<String, Vec<String>>,
}

fn normalize(request: &Recorded, visitor_sent_id: bool) -> Seen {
    let group = |fields: &[(String, String)], skip_framing: bool| {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in fields {
            let lower = name.to_ascii_lowercase();
            if lower == "x-request-id" && !visitor_sent_id {
                continue;
            }
            if skip_framing && (lower == "content-length" || lower == "transfer-encoding") {
                continue;
            }
            // The case of a name is kept by both; the key is lowercase, the case goes with
            // the value so a difference in case still shows.
            map.entry(lower)
                .or_default()
                .push(format!("{name}: {value}"));
        }
        map
    };
    Seen {
        method: request.method.clone(),
        target: request.target.clone(),
        fields: group(&request.fields, request.framing == "chunked"),
        body: request.body.clone(),
        trailers: group(&request.trailers, false),
    }
}

fn status(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(&response[..response.len().min(12)]).into_owned();
    text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

async fn compare(core: &Engine, hyper: &Engine, raw: &str) -> anyhow::Result<()> {
    let (core_response, core_seen) = core.send(raw).await?;
    let (hyper_response, hyper_seen) = hyper.send(raw).await?;
    let sent_id = raw.to_ascii_lowercase().contains("x-request-id:");
    let core_norm: Vec<Seen> = core_seen.iter().map(|r| normalize(r, sent_id)).collect();
    let hyper_norm: Vec<Seen> = hyper_seen.iter().map(|r| normalize(r, sent_id)).collect();
    anyhow::ensure!(
        core_norm == hyper_norm,
        "the engines sent different requests for {raw:?}:\ncore:  {core_norm:#?}\nhyper: {hyper_norm:#?}"
    );
    anyhow::ensure!(
        status(&core_response) == status(&hyper_response),
        "different statuses for {raw:?}: core {:?}, hyper {:?}",
        String::from_utf8_lossy(&core_response),
        String::from_utf8_lossy(&hyper_response)
    );
    Ok(())
}

const CORPUS: &[&str] = &[
    "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "GET /a/b?c=d&e HTTP/1.1\r\nhost: {host}\r\nX-Odd-CASE: 1\r\nx-odd-case: 2\r\nAccept: */*\r\nConnection: close\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nhello",
    "POST /c HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
    "POST /t HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum, Server-Timing\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\nX-Checksum: 42\r\nServer-Timing: db;dur=1\r\nX-Undeclared: no\r\nContent-Length: 9\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: 10.0.0.1\r\nForwarded: for=10.0.0.1\r\nX-Real-IP: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nConnection: close\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: {host}\r\nTE: trailers\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nwarren-relay-visitor: 1.2.3.4\r\nwarren-relay-hops: 0\r\nConnection: keep-alive, close\r\n\r\n",
    "DELETE /x HTTP/1.1\r\nHost: {host}\r\nX-Request-Id: mine-123\r\nConnection: close\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "PATCH /p HTTP/1.1\r\nHost: {host}:8080\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    "HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "PURGE /cache HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: {host}\r\nCookie: a=1; b=2\r\nAuthorization: Bearer x\r\nConnection: close\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: {host}\r\nX-Empty:\r\nX-Spaces:   padded value   \r\nConnection: close\r\n\r\n",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corpus_reaches_the_origin_the_same_through_both_engines() -> anyhow::Result<()> {
    let core = Engine::start("core").await?;
    let hyper = Engine::start("hyper").await?;
    for raw in CORPUS {
        compare(&core, &hyper, raw).await?;
    }
    Ok(())
}

/// A generated request: a method, a target, fields and a body.
#[derive(Debug, Clone)]
struct Generated {
    method: &'static str,
    target: String,
    fields: Vec<(String, String)>,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Length(Vec<u8>),
    Chunked(Vec<Vec<u8>>, Vec<(String, String)>),
}

impl Generated {
    fn raw(&self) -> String {
        let mut raw = format!(
            "{} {} HTTP/1.1\r\nHost: {{host}}\r\n",
            self.method, self.target
        );
        for (name, value) in &self.fields {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        match &self.body {
            Body::None => raw.push_str("Connection: close\r\n\r\n"),
            Body::Length(bytes) => {
                raw.push_str(&format!(
                    "Content-Length: {}\r\nConnection: close\r\n\r\n",
                    bytes.len()
                ));
                raw.push_str(&String::from_utf8_lossy(bytes));
            }
            Body::Chunked(chunks, trailers) => {
                if !trailers.is_empty() {
                    let names: Vec<&str> = trailers.iter().map(|(n, _)| n.as_str()).collect();
                    raw.push_str(&format!("Trailer: {}\r\n", names.join(", ")));
                }
                raw.push_str("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
                for chunk in chunks.iter().filter(|c| !c.is_empty()) {
                    raw.push_str(&format!("{:x}\r\n", chunk.len()));
                    raw.push_str(&String::from_utf8_lossy(chunk));
                    raw.push_str("\r\n");
                }
                raw.push_str("0\r\n");
                for (name, value) in trailers {
                    raw.push_str(&format!("{name}: {value}\r\n"));
                }
                raw.push_str("\r\n");
            }
        }
        raw
    }
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("X-Custom".to_string()),
        Just("x-custom".to_string()),
        Just("X-CUSTOM".to_string()),
        Just("Accept".to_string()),
        Just("User-Agent".to_string()),
        Just("X-Forwarded-For".to_string()),
        Just("Forwarded".to_string()),
        Just("X-Real-IP".to_string()),
        Just("X-Forwarded-Proto".to_string()),
        Just("Keep-Alive".to_string()),
        Just("TE".to_string()),
        Just("warren-relay-hops".to_string()),
        Just("Cache-Control".to_string()),
        "[A-Za-z][A-Za-z0-9-]{0,12}".prop_map(|s| format!("X-{s}")),
    ]
}

fn generated() -> impl Strategy<Value = Generated> {
    let method = prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("PUT"),
        Just("DELETE"),
        Just("PATCH"),
        Just("OPTIONS"),
        Just("HEAD"),
        Just("PROPFIND"),
    ];
    let target = "/[a-z0-9/._~%-]{0,20}(\\?[a-z0-9=&]{0,10})?";
    let fields = proptest::collection::vec((field_name(), "[ -~&&[^:]]{0,24}"), 0..8);
    let bytes = proptest::collection::vec(b'a'..=b'z', 0..300);
    let trailer = ("X-T[a-z]{1,4}", "[a-z0-9]{0,8}");
    let body = prop_oneof![
        Just(Body::None),
        bytes.clone().prop_map(Body::Length),
        (
            proptest::collection::vec(bytes, 0..4),
            proptest::collection::vec(trailer, 0..3)
        )
            .prop_map(|(chunks, trailers)| Body::Chunked(chunks, trailers)),
    ];
    (method, target, fields, body).prop_map(|(method, target, fields, body)| Generated {
        method,
        target,
        fields: fields
            .into_iter()
            .map(|(n, v): (String, String)| (n, v.trim().to_string()))
            .collect(),
        body,
    })
}

#[test]
fn generated_requests_reach_the_origin_the_same_through_both_engines() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (core, hyper) = runtime.block_on(async {
        (
            Engine::start("core").await.expect("core engine"),
            Engine::start("hyper").await.expect("hyper engine"),
        )
    });
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    let result = runner.run(&generated(), |request| {
        let raw = request.raw();
        runtime
            .block_on(compare(&core, &hyper, &raw))
            .map_err(|e| TestCaseError::fail(e.to_string()))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
