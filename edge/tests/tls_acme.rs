//! HTTPS on the edge with certificates from a real ACME server (pebble, with
//! pebble-challtestsrv as its DNS), on loopback ports the OS picks.
//!
//! What is shown: a region wildcard obtained via DNS-01 and served for a tunnel hostname (the
//! client verifies against pebble's root), end to end through an agent; the plain listener's
//! redirect; an unknown SNI failing the handshake cleanly; two edges sharing one certificate
//! through Redis with one order at pebble; a renewal picked up by a running edge while an open
//! connection stays up; a custom domain ordered on first use via HTTP-01 only when it has a
//! route, rate-limited per account.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use warren_edge::routes::Route;
use warren_edge::tls::TlsSettings;
use warren_edge::{Deps, EdgeConfig};
use warren_testkit::cluster::{TestAgent, TestEdge};
use warren_testkit::origin::Origin;
use warren_testkit::pebble::{Pebble, PebbleOptions};
use warren_testkit::redis::RedisServer;
use warren_testkit::tls::{HttpsConnection, connect};

const DOMAIN: &str = "eu.warren.test";
/// Issuance against pebble takes a second or two; leave room on a loaded machine.
const ISSUANCE: Duration = Duration::from_secs(60);

fn init() {
    warren_edge::tls::install_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

fn acme_config(pebble: &Pebble, dns: bool) -> EdgeConfig {
    EdgeConfig {
        domain: DOMAIN.into(),
        tls: TlsSettings {
            acme_directory: Some(pebble.directory.clone()),
            acme_contact: vec!["mailto:ops@warren.test".into()],
            acme_ca_file: Some(pebble.ca_file()),
            acme_dns_provider: dns.then(|| pebble.dns_provider()),
            cert_check_interval: Duration::from_millis(300),
            ..TlsSettings::default()
        },
        ..TestEdge::config()
    }
}

/// Opens a verified HTTPS connection to `sni` as soon as the edge serves a certificate for it.
async fn until_served(
    addr: SocketAddr,
    sni: &str,
    roots: &rustls::RootCertStore,
    within: Duration,
) -> anyhow::Result<HttpsConnection> {
    let deadline = Instant::now() + within;
    loop {
        match HttpsConnection::open(addr, sni, roots.clone()).await {
            Ok(conn) => return Ok(conn),
            Err(e) if Instant::now() > deadline => {
                anyhow::bail!(
                    "{sni} was not served with a valid certificate within {within:?}: {e}"
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn admin_certs(edge: &TestEdge) -> anyhow::Result<serde_json::Value> {
    let admin = edge.admin_addr.expect("admin listener");
    let mut stream = tokio::net::TcpStream::connect(admin).await?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /_warren/certs HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    Ok(serde_json::from_str(body)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns01_wildcard_serves_tunnels_end_to_end_and_unknown_names_fail_cleanly()
-> anyhow::Result<()> {
    init();
    let pebble = Pebble::start(PebbleOptions::default())?;
    let roots = pebble.issuing_roots().await?;
    let config = acme_config(&pebble, true);
    let visitor = TcpListener::bind("127.0.0.1:0").await?;
    let edge = TestEdge::start_tls(config.clone(), Deps::embedded(&config), visitor).await?;
    let tls_addr = edge.tls_addr.expect("tls listener");

    // The agent connects over the plain listener (`/_warren/*` is never redirected).
    let origin = Origin::start().await?;
    let agent = TestAgent::start(&edge, origin.port(), Some("demo")).await?;
    assert_eq!(agent.hostname, format!("demo.{DOMAIN}"));

    let mut conn = until_served(tls_addr, &agent.hostname, &roots, ISSUANCE).await?;
    let (status, body) = conn.get("/hello").await?;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"hello from origin");
    let (status, body) = conn.get("/headers").await?;
    assert_eq!(status, 200);
    let headers: serde_json::Value = serde_json::from_slice(&body)?;
    let fields = warren_testkit::http::header_fields(&headers);
    assert_eq!(
        warren_testkit::http::values_of(&fields, "x-forwarded-proto"),
        ["https"]
    );
    // The apex (where agents connect over wss://) is covered by the same certificate.
    let (status, _) = until_served(tls_addr, DOMAIN, &roots, ISSUANCE)
        .await?
        .get("/healthz")
        .await?;
    assert_eq!(status, 200);

    // HTTP/2 is offered by ALPN.
    let h2 = connect(
        tls_addr,
        &agent.hostname,
        roots.clone(),
        &[b"h2", b"http/1.1"],
    )
    .await?;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    drop(h2);

    // A name nobody serves: the handshake fails with an alert, nothing else breaks.
    let refused = connect(tls_addr, "stranger.example.org", roots.clone(), &[]).await;
    let Err(error) = refused else {
        panic!("unknown SNI must be refused");
    };
    let error = error.to_string();
    assert!(
        error.contains("alert")
            || error.contains("HandshakeFailure")
            || error.contains("UnrecognisedName"),
        "unexpected error: {error}"
    );
    let deeper = connect(tls_addr, &format!("a.b.{DOMAIN}"), roots.clone(), &[]).await;
    assert!(deeper.is_err(), "a wildcard covers one label only");
    let (status, _) = conn.get("/hello").await?;
    assert_eq!(status, 200);

    // The plain listener redirects visitors to HTTPS.
    let mut raw = warren_testkit::http::RawConnection::connect(edge.addr).await?;
    raw.send(format!("GET /x?y=1 HTTP/1.1\r\nhost: demo.{DOMAIN}\r\n\r\n").as_bytes())
        .await?;
    let redirect = raw.response(false).await?;
    assert_eq!(redirect.status, 308);
    assert_eq!(
        redirect.header("location"),
        Some(format!("https://demo.{DOMAIN}:{}/x?y=1", tls_addr.port()).as_str())
    );

    // Operators see what is served and until when.
    let certs = admin_certs(&edge).await?;
    let list = certs["certificates"].as_array().expect("list");
    assert_eq!(list.len(), 1, "{certs}");
    let names = &list[0]["names"];
    assert!(
        names
            .as_array()
            .expect("names")
            .iter()
            .any(|n| n == &format!("*.{DOMAIN}"))
    );
    assert!(list[0]["not_after"].as_u64().expect("not_after") > 0);
    assert_eq!(pebble.orders()?, 1, "{}", pebble.log());

    agent.stop().await;
    edge.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_share_one_certificate_and_pebble_sees_one_order() -> anyhow::Result<()> {
    init();
    let redis = RedisServer::start()?;
    let pebble = Pebble::start(PebbleOptions::default())?;
    let roots = pebble.issuing_roots().await?;
    let mut config = acme_config(&pebble, true);
    config.redis_url = Some(redis.url());
    config.relay_key = Some("relay-key-for-tls-tests".into());
    config.tls.cert_store_key = Some("5a".repeat(32));
    let mut edges = Vec::new();
    for _ in 0..2 {
        let deps = Deps::embedded(&config).clustered(&config).await?;
        let visitor = TcpListener::bind("127.0.0.1:0").await?;
        edges.push(TestEdge::start_tls(config.clone(), deps, visitor).await?);
    }
    let sni = format!("anything.{DOMAIN}");
    let mut leaves = Vec::new();
    for edge in &edges {
        let conn = until_served(edge.tls_addr.expect("tls"), &sni, &roots, ISSUANCE).await?;
        leaves.push(conn.leaf.clone());
    }
    assert_eq!(
        leaves[0], leaves[1],
        "both edges serve the same certificate"
    );
    assert_eq!(
        pebble.orders()?,
        1,
        "one order for both edges:\n{}",
        pebble.log()
    );

    // A tunnel held by the first edge, reached over HTTPS on the second: relayed, and the
    // local service still learns the visitor used HTTPS.
    let origin = Origin::start().await?;
    let agent = TestAgent::start(&edges[0], origin.port(), Some("relayed")).await?;
    let mut conn = until_served(
        edges[1].tls_addr.expect("tls"),
        &agent.hostname,
        &roots,
        ISSUANCE,
    )
    .await?;
    let (status, body) = conn.get("/headers").await?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let headers: serde_json::Value = serde_json::from_slice(&body)?;
    let fields = warren_testkit::http::header_fields(&headers);
    assert_eq!(
        warren_testkit::http::values_of(&fields, "x-forwarded-proto"),
        ["https"]
    );
    assert!(
        warren_testkit::http::values_of(&fields, "warren-relay-proto").is_empty(),
        "relay headers never reach the agent"
    );
    drop(conn);
    agent.stop().await;

    // The private key is sealed at rest: nothing in Redis reads as a PEM key.
    let keys = redis.cli(&["KEYS", "warren:tls:cert:*"])?;
    let key = keys.trim();
    assert!(key.ends_with(&format!(":*.{DOMAIN}")), "{keys}");
    let stored = redis.cli(&["GET", key])?;
    assert!(stored.len() > 100, "{stored}");
    assert!(!stored.contains("PRIVATE KEY"));
    assert!(!stored.contains("BEGIN CERTIFICATE"));

    for edge in edges {
        edge.stop().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_is_picked_up_without_restart_or_dropping_open_connections() -> anyhow::Result<()>
{
    init();
    // Renewal starts two thirds into the lifetime: after 20 s here.
    let pebble = Pebble::start(PebbleOptions {
        validity: Duration::from_secs(30),
        ..PebbleOptions::default()
    })?;
    let roots = pebble.issuing_roots().await?;
    let config = acme_config(&pebble, true);
    let visitor = TcpListener::bind("127.0.0.1:0").await?;
    let edge = TestEdge::start_tls(config.clone(), Deps::embedded(&config), visitor).await?;
    let tls_addr = edge.tls_addr.expect("tls");

    let mut open = until_served(tls_addr, DOMAIN, &roots, ISSUANCE).await?;
    let first = open.leaf.clone();
    assert_eq!(open.get("/healthz").await?.0, 200);

    let deadline = Instant::now() + Duration::from_secs(60);
    let renewed = loop {
        // Keep the first connection busy (an idle one is closed after the handshake timeout).
        assert_eq!(open.get("/healthz").await?.0, 200);
        let conn = until_served(tls_addr, DOMAIN, &roots, ISSUANCE).await?;
        if conn.leaf != first {
            break conn;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no renewal within 60 s:\n{}",
            pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    drop(renewed);
    // The connection opened before the swap still works, with its original certificate.
    assert_eq!(open.get("/healthz").await?.0, 200);
    assert!(pebble.orders()? >= 2);
    edge.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_domains_are_ordered_via_http01_only_with_a_route_and_within_the_rate()
-> anyhow::Result<()> {
    init();
    // Pebble validates HTTP-01 on 127.0.0.1:<the edge's visitor port>.
    let visitor = TcpListener::bind("127.0.0.1:0").await?;
    let pebble = Pebble::start(PebbleOptions {
        http_port: visitor.local_addr()?.port(),
        ..PebbleOptions::default()
    })?;
    let roots = pebble.issuing_roots().await?;
    let mut config = acme_config(&pebble, false);
    config.tls.acme_orders_per_account_hour = 1;
    let deps = Deps::embedded(&config);
    let routes = deps.routes.clone();
    let edge = TestEdge::start_tls(config.clone(), deps, visitor).await?;
    let tls_addr = edge.tls_addr.expect("tls");

    // No route (an unverified domain never gets one): refused, and no order, ever.
    for _ in 0..3 {
        assert!(
            connect(tls_addr, "unverified.customer.test", roots.clone(), &[])
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(pebble.orders()?, 0, "{}", pebble.log());

    let route = |host: &str| Route {
        edge_id: "e_test".into(),
        session_id: format!("s_{host}"),
        tunnel_id: 1,
        account_id: "acct_1".into(),
        region: "local".into(),
    };
    routes.claim("shop.customer.test", &route("shop")).await?;
    let mut conn = until_served(tls_addr, "shop.customer.test", &roots, ISSUANCE).await?;
    assert_eq!(pebble.orders()?, 1, "{}", pebble.log());
    drop(conn.get("/").await);

    // The same account's second custom domain is over its rate: no order.
    routes.claim("blog.customer.test", &route("blog")).await?;
    for _ in 0..3 {
        assert!(
            connect(tls_addr, "blog.customer.test", roots.clone(), &[])
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(pebble.orders()?, 1, "{}", pebble.log());
    assert_eq!(pebble.orders()?, 1);
    edge.stop().await
}
