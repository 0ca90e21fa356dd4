//! Any edge serves any hostname: two regions × two edges on loopback addresses, one real
//! Redis, one agent on one edge; visitors reach its tunnel through each of the four.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode, header::HOST};
use http_body_util::BodyExt;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use warren_testkit::client;
use warren_testkit::cluster::TestAgent;
use warren_testkit::multi::{ClusterEdge, EdgeSpec};
use warren_testkit::origin::Origin;
use warren_testkit::pattern::{pattern_body, pattern_sha256};
use warren_testkit::redis::{RedisCluster, RedisServer};

const MIB: u64 = 1024 * 1024;

struct Cluster {
    redis: RedisServer,
    edges: Vec<ClusterEdge>,
}

/// eu-1 127.0.0.2, eu-2 127.0.0.3 (eu.localhost); us-1 127.0.0.4, us-2 127.0.0.5 (us.localhost).
async fn cluster() -> anyhow::Result<Cluster> {
    let redis = RedisServer::start()?;
    let edges = edges(&redis.url()).await?;
    Ok(Cluster { redis, edges })
}

async fn edges(url: &str) -> anyhow::Result<Vec<ClusterEdge>> {
    let mut edges = Vec::new();
    for (id, ip, region, domain, other) in [
        ("eu-1", "127.0.0.2", "eu", "eu.localhost", "us.localhost"),
        ("eu-2", "127.0.0.3", "eu", "eu.localhost", "us.localhost"),
        ("us-1", "127.0.0.4", "us", "us.localhost", "eu.localhost"),
        ("us-2", "127.0.0.5", "us", "us.localhost", "eu.localhost"),
    ] {
        edges.push(
            ClusterEdge::start(EdgeSpec {
                id,
                ip,
                region,
                domain,
                serve_domains: &[other],
                redis_url: url,
            })
            .await?,
        );
    }
    Ok(edges)
}

/// `GET /hello` for `host` through `edge`, retried until `deadline` (the directory entry of a
/// just-started edge may take a moment to appear).
async fn hello_through(edge: &ClusterEdge, host: &str, deadline: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    loop {
        let (status, headers, body) = client::get(edge.addr, host, "/hello").await?;
        if status == StatusCode::OK {
            assert_eq!(body, "hello from origin", "through {}", edge.id);
            return Ok(());
        }
        if Instant::now() > until {
            anyhow::bail!(
                "GET /hello for {host} through {} answered {status} ({:?})",
                edge.id,
                headers.get("warren-error")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_edge_serves_a_tunnel_held_by_one() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let origin = Origin::start().await?;
    let agent =
        TestAgent::start_with(cluster.edges[0].agent_options(origin.port(), "demo")).await?;
    assert_eq!(agent.hostname, "demo.eu.localhost");
    for edge in &cluster.edges {
        hello_through(edge, "demo.eu.localhost", Duration::from_secs(5)).await?;
    }
    // The forwarding headers name the visitor, never the relay.
    let req = Request::get("/headers")
        .header(HOST, "demo.eu.localhost")
        .body(client::empty())?;
    let response = client::request(cluster.edges[3].addr, req).await?;
    let json: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
    let text = json.to_string().to_ascii_lowercase();
    assert!(
        !text.contains("warren-relay"),
        "relay headers leaked: {text}"
    );
    assert!(text.contains("x-forwarded-for"), "{text}");

    // Unknown tunnels are 404 on every edge.
    for edge in &cluster.edges {
        let (status, headers, _) = client::get(edge.addr, "nobody.us.localhost", "/").await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "through {}", edge.id);
        assert_eq!(headers["warren-error"], "tunnel-not-found");
    }
    agent.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_works_on_a_redis_cluster() -> anyhow::Result<()> {
    let redis = tokio::task::spawn_blocking(|| RedisCluster::start(3)).await??;
    let edges = edges(&redis.url()).await?;
    let origin = Origin::start().await?;
    let agent = TestAgent::start_with(edges[2].agent_options(origin.port(), "slots")).await?;
    assert_eq!(agent.hostname, "slots.us.localhost");
    for edge in &edges {
        hello_through(edge, "slots.us.localhost", Duration::from_secs(5)).await?;
    }
    agent.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_a_100_mib_upload_cross_regions() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let origin = Origin::start().await?;
    let agent = TestAgent::start_with(cluster.edges[1].agent_options(origin.port(), "far")).await?;
    let us = &cluster.edges[2];
    hello_through(us, "far.eu.localhost", Duration::from_secs(5)).await?;

    let mut socket = client::websocket(us.addr, "far.eu.localhost", "/ws").await?;
    socket.send(Message::text("across regions")).await?;
    let echoed = tokio::time::timeout(Duration::from_secs(10), socket.next()).await?;
    assert_eq!(echoed.transpose()?, Some(Message::text("across regions")));
    socket
        .send(Message::binary(Bytes::from(vec![7u8; 300_000])))
        .await?;
    let echoed = tokio::time::timeout(Duration::from_secs(10), socket.next()).await?;
    assert_eq!(
        echoed.transpose()?,
        Some(Message::binary(Bytes::from(vec![7u8; 300_000])))
    );

    let len = 100 * MIB;
    let req = Request::post("/upload")
        .header(HOST, "far.eu.localhost")
        .body(pattern_body(len).boxed())?;
    let response = client::request(us.addr, req).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let json: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
    assert_eq!(json["bytes"], len);
    assert_eq!(json["sha256"], pattern_sha256(len));
    agent.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_cannot_use_the_relay_listener() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let origin = Origin::start().await?;
    let agent =
        TestAgent::start_with(cluster.edges[0].agent_options(origin.port(), "private")).await?;
    let (status, _, body) = client::get(
        cluster.edges[0].relay_addr,
        "private.eu.localhost",
        "/hello",
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_ne!(body, "hello from origin");
    // A wrong key is no better than none.
    let req = Request::get("/hello")
        .header(HOST, "private.eu.localhost")
        .header("warren-relay-key", "guessed-key-guessed-key")
        .header("warren-relay-hops", "1")
        .body(client::empty())?;
    let response = client::request(cluster.edges[0].relay_addr, req).await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    agent.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_come_back_within_5_s_after_redis_restarts() -> anyhow::Result<()> {
    let mut cluster = cluster().await?;
    let origin = Origin::start().await?;
    let agent =
        TestAgent::start_with(cluster.edges[0].agent_options(origin.port(), "durable")).await?;
    hello_through(
        &cluster.edges[3],
        "durable.eu.localhost",
        Duration::from_secs(5),
    )
    .await?;

    cluster.redis.restart()?;
    let restarted = Instant::now();
    // The edge holding the session serves it throughout, from its own registry.
    hello_through(&cluster.edges[0], "durable.eu.localhost", Duration::ZERO).await?;
    // Other edges find it again once the owner has re-registered its route and itself.
    hello_through(
        &cluster.edges[3],
        "durable.eu.localhost",
        Duration::from_secs(20),
    )
    .await?;
    let took = restarted.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "routes took {took:?} to come back after Redis restarted"
    );
    agent.stop().await;
    Ok(())
}

/// A visitor flood that fills one edge's visitor listener does not stop other edges relaying
/// to it: the relay listener has its own cap (edge/src/limits.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_visitor_listener_still_relays() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let url = redis.url();
    let mut edges = Vec::new();
    for (id, ip) in [("eu-1", "127.0.0.2"), ("eu-2", "127.0.0.3")] {
        let spec = EdgeSpec {
            id,
            ip,
            region: "eu",
            domain: "eu.localhost",
            serve_domains: &[],
            redis_url: &url,
        };
        let address: std::net::IpAddr = ip.parse()?;
        let visitor = tokio::net::TcpListener::bind((address, 0)).await?;
        let relay = tokio::net::TcpListener::bind((address, 0)).await?;
        let edge = ClusterEdge::start_tuned(spec, visitor, relay, |config| {
            config.max_connections = 3;
        })
        .await?;
        edges.push(edge);
    }
    let origin = Origin::start().await?;
    let agent = TestAgent::start_with(edges[0].agent_options(origin.port(), "flooded")).await?;
    let host = agent.hostname.clone();
    hello_through(&edges[1], &host, Duration::from_secs(10)).await?;

    // Fill eu-1's visitor listener with connections that send nothing.
    let mut flood = Vec::new();
    for _ in 0..3 {
        flood.push(tokio::net::TcpStream::connect(edges[0].addr).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, headers, _) = client::get(edges[0].addr, &host, "/hello").await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{headers:?}");
    // eu-2 still reaches the tunnel, relaying to eu-1.
    for _ in 0..5 {
        let (status, _, body) = client::get(edges[1].addr, &host, "/hello").await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "hello from origin");
    }
    drop(flood);
    for edge in edges {
        edge.stop().await?;
    }
    Ok(())
}
