//! Failover and drain across the edges of one region, with real edge processes (`warren-edge`
//! children, so `kill -9` and SIGTERM are real), a real Redis, a TCP balancer in front of the
//! region (the agent's `--edge`), and an in-process agent.
//!
//! Visitors send a steady GET load straight to edge B, which relays to whichever edge holds the
//! session and holds requests while the agent moves. Every request is counted: none may fail.
//! GET only: a request with a body that was already on its way to a dead edge cannot be
//! replayed (nothing a visitor sent is ever duplicated), so only bodiless requests are retried.
//!
//! Needs the binary: `cargo build -p warren-edge` (the tests say so if it is missing).

use http::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use warren_cli::agent::{AgentEvent, AgentOptions, LocalTarget, TunnelSpec};
use warren_testkit::balancer::Balancer;
use warren_testkit::client;
use warren_testkit::cluster::{TEST_TOKEN, TestAgent};
use warren_testkit::multi::{EdgeProcess, EdgeProcessSpec};
use warren_testkit::origin::Origin;
use warren_testkit::redis::RedisServer;

const HOST: &str = "demo.eu.localhost";
/// The requirement: the agent is back on another edge within this after a crash.
const MAX_GAP: Duration = Duration::from_secs(3);
const GRACE: Duration = Duration::from_secs(15);

struct Region {
    _redis: RedisServer,
    a: EdgeProcess,
    b: EdgeProcess,
    balancer: Balancer,
    _origin: Origin,
    agent: TestAgent,
}

/// Edges eu-a (127.0.0.2) and eu-b (127.0.0.3) behind the balancer, A first; the agent
/// connects through the balancer and lands on A.
async fn region() -> anyhow::Result<Region> {
    warren_testkit::cluster::init_logging();
    let redis = RedisServer::start()?;
    let url = redis.url();
    let balancer = Balancer::start(Vec::new()).await?;
    let grace = format!("{}s", GRACE.as_secs());
    let extra = ["--shutdown-grace", grace.as_str(), "--hold-timeout", "10s"];
    // B, which takes the visitors and relays them, runs on one worker thread (`--workers`), so
    // the smallest runtime carries the same load without losing a request.
    let one_worker = [&extra[..], &["--workers", "1"]].concat();
    let mut edges = Vec::new();
    for (id, ip, extra) in [
        ("eu-a", "127.0.0.2", &extra[..]),
        ("eu-b", "127.0.0.3", &one_worker[..]),
    ] {
        let edge = EdgeProcess::start(EdgeProcessSpec {
            id,
            ip,
            region: "eu",
            domain: "eu.localhost",
            redis_url: &url,
            public_port: Some(balancer.addr.port()),
            extra,
        })
        .await?;
        balancer.add(edge.addr);
        edges.push(edge);
    }
    let b = edges.pop().ok_or_else(|| anyhow::anyhow!("no edge b"))?;
    let a = edges.pop().ok_or_else(|| anyhow::anyhow!("no edge a"))?;
    let origin = Origin::start().await?;
    let spec = TunnelSpec {
        local: LocalTarget {
            host: "127.0.0.1".into(),
            port: origin.port(),
        },
        subdomain: Some("demo".into()),
        host_header: None,
    };
    let mut options = AgentOptions::new(&balancer.url(), TEST_TOKEN.to_string(), vec![spec])
        .map_err(anyhow::Error::msg)?;
    options.request_log = false;
    let agent = TestAgent::start_with(options).await?;
    assert_eq!(
        agent.public_url,
        format!("http://{HOST}:{}", balancer.addr.port())
    );
    // B relays to A once A is in the directory.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, _) = client::get(b.addr, HOST, "/hello").await?;
        if status == StatusCode::OK {
            break;
        }
        anyhow::ensure!(
            Instant::now() < until,
            "B never served the tunnel: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Region {
        _redis: redis,
        a,
        b,
        balancer,
        _origin: origin,
        agent,
    })
}

/// One visitor request: when it was sent, how long it took, and how it ended.
#[derive(Debug, Clone)]
struct Outcome {
    /// A `POST /upload` (else a `GET`).
    upload: bool,
    sent: Instant,
    took: Duration,
    result: Result<(), String>,
}

/// A visitor's upload: 64 KiB, answered with its length and SHA-256 by the origin.
const UPLOAD: usize = 64 * 1024;

/// One visitor request: odd visitors send `GET /hello`, even ones `POST /upload` with a
/// body, so requests with bodies are held and delivered too.
async fn visit(target: std::net::SocketAddr, upload: bool) -> Result<(), String> {
    if !upload {
        return match client::get(target, HOST, "/hello").await {
            Ok((StatusCode::OK, _, body)) if body == "hello from origin" => Ok(()),
            Ok((status, headers, _)) => Err(format!("{status} {:?}", headers.get("warren-error"))),
            Err(e) => Err(format!("{e:#}")),
        };
    }
    let request = http::Request::post("/upload")
        .header(http::header::HOST, HOST)
        .body(client::full(vec![b'u'; UPLOAD]))
        .map_err(|e| e.to_string())?;
    let response = client::request(target, request)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let status = response.status();
    let error = response.headers().get("warren-error").cloned();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status == StatusCode::OK && answer["bytes"] == UPLOAD {
        Ok(())
    } else {
        Err(format!("upload: {status} {error:?} {answer}"))
    }
}

/// `tasks` visitors sending requests to `target` every `every` (see [`visit`]), until `stop`.
struct Load {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(target: std::net::SocketAddr, tasks: usize, every: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..tasks)
            .map(|n| {
                let stop = stop.clone();
                let outcomes = outcomes.clone();
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        let answer = tokio::time::timeout(
                            Duration::from_secs(20),
                            visit(target, n % 2 == 0),
                        )
                        .await;
                        let result = answer.unwrap_or_else(|_| Err("no answer within 20 s".into()));
                        outcomes.lock().await.push(Outcome {
                            upload: n % 2 == 0,
                            sent,
                            took: sent.elapsed(),
                            result,
                        });
                        tokio::time::sleep(every.saturating_sub(sent.elapsed())).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            outcomes,
            tasks,
        }
    }

    async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        self.outcomes.lock().await.clone()
    }
}

/// Waits for the agent's next `TunnelReady`; its public URL.
async fn next_ready(agent: &mut TestAgent) -> anyhow::Result<String> {
    match agent
        .wait_for(|e| matches!(e, AgentEvent::TunnelReady { .. }))
        .await?
    {
        AgentEvent::TunnelReady { public_url, .. } => Ok(public_url),
        _ => unreachable!("wait_for returns a TunnelReady"),
    }
}

/// Failed outcomes; how many were sent, or still waiting for their answer, during
/// `[from, to]`; the slowest answer.
fn tally(outcomes: &[Outcome], from: Instant, to: Instant) -> (Vec<&Outcome>, usize, Duration) {
    let failed = outcomes.iter().filter(|o| o.result.is_err()).collect();
    let in_gap = outcomes
        .iter()
        .filter(|o| o.sent <= to && o.sent + o.took >= from)
        .count();
    let slowest = outcomes.iter().map(|o| o.took).max().unwrap_or_default();
    (failed, in_gap, slowest)
}

/// An upload sent this soon after the kill may still have gone out on a pooled connection to
/// the dead edge before the relay noticed.
const IN_FLIGHT_MARGIN: Duration = Duration::from_millis(50);

/// Kills edge A under load; `lag` is how long the balancer keeps B out of rotation after
/// the kill (a health check noticing late). Returns the gap until the agent was back.
async fn kill_a_under_load(lag: Duration) -> anyhow::Result<(Duration, usize)> {
    let mut region = region().await?;
    let url = region.agent.public_url.clone();
    if !lag.is_zero() {
        region.balancer.remove(region.b.addr);
    }
    // 4 visitors × up to 25 requests/s each, straight to edge B.
    let load = Load::start(region.b.addr, 4, Duration::from_millis(40));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed = Instant::now();
    region.a.kill()?;
    if !lag.is_zero() {
        tokio::time::sleep(lag).await;
        region.balancer.add(region.b.addr);
    }
    let back_url = next_ready(&mut region.agent).await?;
    let gap = killed.elapsed();
    let back = Instant::now();
    // Keep the load going a moment after the agent is back, so held requests are delivered.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcomes = load.finish().await;

    let (failed, in_gap, slowest) = tally(&outcomes, killed, back);
    // An upload whose body was already going to edge A when it died may have reached the
    // origin: it is answered 502, never replayed. Everything else must be delivered.
    let (in_flight_uploads, unexplained): (Vec<&Outcome>, Vec<&Outcome>) = failed
        .iter()
        .partition(|o| o.upload && o.sent < killed + IN_FLIGHT_MARGIN);
    eprintln!(
        "kill -9 (balancer lag {lag:?}): agent back after {gap:?}; {} requests ({} uploads), \
         {in_gap} sent or in flight during the gap, {} failed (all uploads in flight to the \
         dead edge: {}), slowest {slowest:?}",
        outcomes.len(),
        outcomes.iter().filter(|o| o.upload).count(),
        failed.len(),
        in_flight_uploads.len()
    );
    assert_eq!(back_url, url, "the tunnel came back with another URL");
    assert!(gap < MAX_GAP, "the agent took {gap:?} to come back");
    assert!(
        unexplained.is_empty(),
        "failed visitor requests: {unexplained:?}"
    );
    // The session lives on B now and B serves it itself.
    let (status, _, _) = client::get(region.b.addr, HOST, "/hello").await?;
    assert_eq!(status, StatusCode::OK);
    Ok((gap, in_gap))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_agents_edge_loses_no_visitor_request() -> anyhow::Result<()> {
    kill_a_under_load(Duration::ZERO).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_a_longer_gap_are_held_and_delivered() -> anyhow::Result<()> {
    let lag = Duration::from_millis(700);
    let (gap, in_gap) = kill_a_under_load(lag).await?;
    assert!(
        gap >= lag,
        "the agent was back before the balancer let it in"
    );
    assert!(in_gap > 0, "no request was sent during the gap");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_the_agents_edge_loses_no_visitor_request() -> anyhow::Result<()> {
    let mut region = region().await?;
    let url = region.agent.public_url.clone();
    // Visitors straight to B, and through the balancer (to A until it stops accepting).
    let direct = Load::start(region.b.addr, 3, Duration::from_millis(40));
    let balanced = Load::start(region.balancer.addr, 2, Duration::from_millis(40));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let signalled = Instant::now();
    region.a.terminate()?;
    let back_url = next_ready(&mut region.agent).await?;
    let moved = signalled.elapsed();
    let back = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let direct = direct.finish().await;
    let balanced = balanced.finish().await;
    let exited = region.a.wait_exit(GRACE + Duration::from_secs(5)).await?;
    let exit_took = signalled.elapsed();

    let (failed_direct, gap_direct, slowest_direct) = tally(&direct, signalled, back);
    let (failed_balanced, gap_balanced, slowest_balanced) = tally(&balanced, signalled, back);
    eprintln!(
        "drain: agent on B after {moved:?}; direct: {} requests ({gap_direct} during the move, slowest {slowest_direct:?}), \
         balanced: {} ({gap_balanced}, slowest {slowest_balanced:?}); edge A exited after {exit_took:?}: {exited:?}",
        direct.len(),
        balanced.len()
    );
    assert_eq!(back_url, url, "the tunnel came back with another URL");
    assert!(
        failed_direct.is_empty(),
        "failed requests to B: {failed_direct:?}"
    );
    assert!(
        failed_balanced.is_empty(),
        "failed requests through the balancer: {failed_balanced:?}"
    );
    let status =
        exited.ok_or_else(|| anyhow::anyhow!("edge A still runs {exit_took:?} after SIGTERM"))?;
    assert!(status.success(), "edge A exited with {status}");
    // Only B is left, and it serves the tunnel itself.
    let (status, _, _) = client::get(region.b.addr, HOST, "/hello").await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_exits_at_once() -> anyhow::Result<()> {
    let mut region = region().await?;
    // An upload that never finishes keeps A's drain waiting for the whole grace period.
    let stuck = tokio::net::TcpStream::connect(region.a.addr).await?;
    let mut stuck = stuck;
    tokio::io::AsyncWriteExt::write_all(
        &mut stuck,
        format!("POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 1000000\r\n\r\npartial")
            .as_bytes(),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    region.a.terminate()?;
    assert!(
        region.a.wait_exit(Duration::from_secs(1)).await?.is_none(),
        "one SIGTERM should drain, not exit"
    );
    let second = Instant::now();
    region.a.terminate()?;
    let exited = region.a.wait_exit(Duration::from_secs(5)).await?;
    assert!(exited.is_some(), "a second SIGTERM should exit at once");
    eprintln!("second SIGTERM: exited after {:?}", second.elapsed());
    drop(stuck);
    Ok(())
}
