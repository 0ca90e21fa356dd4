//! Custom domains end to end, with the real `warren` binary: `warren domains add` prints the
//! records; `warren http --domain` is refused while the domain is unverified; `warren domains
//! verify` fails with the missing records, then succeeds once they are set in a real DNS server
//! (`pebble-challtestsrv`); `warren http --domain` serves visitors whose `Host` is the custom
//! domain through an edge that verifies control's grants; `warren domains remove` closes it.
//! Run twice: edge and control alone (HTTP reports), and sharing a real Redis (routes in Redis,
//! the close pushed over pub/sub).

mod support;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use support::{DEADLINE, Home, TestCluster, Warren};
use warren_control::dns::DnsResolver;
use warren_testkit::challtestsrv::ChallTestSrv;
use warren_testkit::client;
use warren_testkit::origin::Origin;
use warren_testkit::redis::RedisServer;

const DOMAIN: &str = "app.example.com";
const CHALLENGE: &str = "_warren-challenge.app.example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_custom_domain_serves_visitors() -> anyhow::Result<()> {
    custom_domain_end_to_end(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_custom_domain_serves_visitors_through_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    custom_domain_end_to_end(Some(redis.url())).await
}

async fn custom_domain_end_to_end(redis_url: Option<String>) -> anyhow::Result<()> {
    let dns = ChallTestSrv::start()?;
    let resolver = DnsResolver::At(dns.dns);
    let origin = Origin::start().await?;
    let pushed = redis_url.is_some();
    let cluster = TestCluster::start_configured(Duration::from_secs(3600), redis_url, |c| {
        c.dns_resolver = resolver;
    })
    .await?;
    let home = Home::new()?;
    let login = [
        "login",
        "--control",
        &cluster.control_url,
        "--token",
        &cluster.token,
    ];
    Warren::run(&home, &login).await?.ok()?;

    // `add` prints the two records to create; `--json` gives control's answer.
    let added = Warren::run(&home, &["domains", "add", "App.Example.com"])
        .await?
        .ok()?;
    assert!(
        added
            .stdout
            .contains("app.example.com                    CNAME  localhost"),
        "{}",
        added.stdout
    );
    assert!(added.stdout.contains(CHALLENGE), "{}", added.stdout);
    let json = Warren::run(&home, &["domains", "add", DOMAIN, "--json"])
        .await?
        .ok()?
        .json()?;
    let token = json["records"][1]["value"]
        .as_str()
        .context("no TXT value")?
        .to_string();
    assert!(added.stdout.contains(&token), "{}", added.stdout);

    // Unverified: no tunnel, and verify names what is missing.
    let port = origin.port().to_string();
    let http = [
        "http",
        &port,
        "--local-host",
        "127.0.0.1",
        "--domain",
        DOMAIN,
    ];
    let refused = Warren::run(&home, &http).await?;
    assert!(!refused.status.success());
    assert!(
        refused
            .stderr
            .contains("app.example.com is not verified yet"),
        "{}",
        refused.stderr
    );
    let failed = Warren::run(&home, &["domains", "verify", DOMAIN]).await?;
    assert!(!failed.status.success());
    assert!(
        failed
            .stderr
            .contains(&format!("there is no TXT record at {CHALLENGE}")),
        "{}",
        failed.stderr
    );
    assert!(
        failed
            .stderr
            .contains("there is no CNAME record at app.example.com"),
        "{}",
        failed.stderr
    );

    dns.set_txt(CHALLENGE, &token).await?;
    dns.set_cname(DOMAIN, "localhost").await?;
    let verified = Warren::run(&home, &["domains", "verify", DOMAIN])
        .await?
        .ok()?;
    assert!(
        verified.stdout.contains("Verified app.example.com"),
        "{}",
        verified.stdout
    );
    let list = Warren::run(&home, &["domains", "list", "--json"])
        .await?
        .ok()?
        .json()?;
    assert_eq!(list["domains"][0]["status"], "verified", "{list}");

    let mut agent = Warren::spawn_in(&home, &[&http[..], &["--json"]].concat())?;
    let ready = agent.json_event("tunnel_ready").await?;
    let expected = format!("http://app.example.com:{}", cluster.edge_addr.port());
    assert_eq!(ready["public_url"], expected.as_str(), "{ready}");
    let (status, _, body) = client::get(cluster.edge_addr, "App.Example.com:80", "/hello").await?;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(&body[..], b"hello from origin");
    let event = agent.json_event("request").await?;
    assert_eq!(event["status"], 200, "{event}");
    // Another hostname outside the edge's domain is still not served.
    let (status, headers, _) = client::get(cluster.edge_addr, "other.example.com", "/").await?;
    assert_eq!(status.as_u16(), 404);
    assert_eq!(
        headers.get("warren-error").and_then(|v| v.to_str().ok()),
        Some("unknown-host")
    );

    // Removing the domain closes its tunnel.
    let removed_at = Instant::now();
    Warren::run(&home, &["domains", "remove", DOMAIN])
        .await?
        .ok()?;
    // Over Redis the close is pushed: well before the edges' 5 s HTTP backstop.
    let within = if pushed {
        Duration::from_secs(3)
    } else {
        DEADLINE
    };
    let status = agent.exit_within(within).await?;
    assert!(!status.success(), "the agent of a removed domain stops");
    assert!(removed_at.elapsed() < within, "{:?}", removed_at.elapsed());
    let last = agent.json_event("error").await?;
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("custom domain was removed")),
        "{last}"
    );
    let (status, _, _) = client::get(cluster.edge_addr, DOMAIN, "/hello").await?;
    assert_eq!(status.as_u16(), 404);
    cluster.stop().await
}
