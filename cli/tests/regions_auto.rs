//! `--region auto` end to end: control with two regions ("eu", "us"), an edge for each, each
//! region's probe URL behind a latency proxy. The real `warren http` picks the fast region and
//! its tunnel works; when the latency moves, the next start picks the other region. `warren
//! regions --json` shows both latencies; an unknown `--region` is one sentence listing the ids.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use serde_json::Value;
use support::{Home, Warren, host_of};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warren_control::{AppState, ControlConfig, RegionConfig};
use warren_edge::{Deps, EdgeConfig, Listeners};
use warren_testkit::client;
use warren_testkit::latency_proxy::LatencyProxy;
use warren_testkit::origin::Origin;

/// One way; a probe sample crosses the proxy twice, so a slow region is ~80 ms behind.
const SLOW: Duration = Duration::from_millis(40);

struct Region {
    id: &'static str,
    edge: SocketAddr,
    proxy: LatencyProxy,
}

struct TwoRegions {
    control_url: String,
    token: String,
    regions: Vec<Region>,
    shutdown: CancellationToken,
    _db: tempfile::TempDir,
}

impl Drop for TwoRegions {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TwoRegions {
    async fn start() -> anyhow::Result<TwoRegions> {
        let db = tempfile::tempdir()?;
        let shutdown = CancellationToken::new();
        let control_listener = TcpListener::bind("127.0.0.1:0").await?;
        let control_url = format!("http://127.0.0.1:{}", control_listener.local_addr()?.port());
        let secret = format!("test-edge-secret-{:016x}", rand::random::<u64>());
        let mut config = ControlConfig::new(
            format!("sqlite://{}?mode=rwc", db.path().join("c.db").display()),
            control_url.clone(),
        );
        let mut listeners = Vec::new();
        let mut regions = Vec::new();
        for id in ["eu", "us"] {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let edge = listener.local_addr()?;
            let proxy = LatencyProxy::start(edge, Duration::ZERO).await?;
            config.regions.push(RegionConfig {
                id: id.into(),
                name: id.to_uppercase(),
                location: "loopback".into(),
                domain: format!("{id}.localhost"),
                tunnel_url: format!("http://127.0.0.1:{}", edge.port()),
                probe_url: format!("http://{}/_warren/probe", proxy.addr()),
                public_scheme: "http".into(),
                public_port: Some(edge.port()),
            });
            listeners.push(listener);
            regions.push(Region { id, edge, proxy });
        }
        config.edge_secret = Some(secret.clone());
        let state = AppState::open(config).await?;
        let email = format!("user{:x}@example.com", rand::random::<u32>());
        let (_, token) = warren_control::create_account(&state, &email, false).await?;
        tokio::spawn(warren_control::serve(
            control_listener,
            state,
            shutdown.clone(),
        ));
        for (listener, region) in listeners.into_iter().zip(&regions) {
            let config = EdgeConfig {
                domain: format!("{}.localhost", region.id),
                region: region.id.into(),
                public_port: Some(region.edge.port()),
                shutdown_grace: Duration::from_secs(1),
                heartbeat_interval: Duration::from_millis(500),
                control_url: Some(control_url.clone()),
                control_insecure_http: true,
                control_secret: Some(secret.clone()),
                ..EdgeConfig::default()
            };
            let deps = Deps::with_control(&config).await?;
            let listeners = Listeners {
                visitor: listener,
                tunnel: None,
                relay: None,
                tls: None,
                admin: None,
            };
            tokio::spawn(warren_edge::run(config, deps, listeners, shutdown.clone()));
        }
        Ok(TwoRegions {
            control_url,
            token,
            regions,
            shutdown,
            _db: db,
        })
    }

    fn env(&self) -> [(&str, &str); 2] {
        [
            ("WARREN_CONTROL", self.control_url.as_str()),
            ("WARREN_TOKEN", self.token.as_str()),
        ]
    }

    fn region(&self, id: &str) -> anyhow::Result<&Region> {
        self.regions
            .iter()
            .find(|r| r.id == id)
            .with_context(|| format!("no region {id}"))
    }

    /// Makes `slow` slow and every other region fast.
    fn slow_down(&self, slow: &str) {
        for region in &self.regions {
            let delay = if region.id == slow {
                SLOW
            } else {
                Duration::ZERO
            };
            region.proxy.set_delay(delay);
        }
    }

    /// Starts `warren http` with `--region auto`, checks the probe chose `expected` and the
    /// tunnel serves visitors through that region's edge, then stops the agent.
    async fn auto_picks(&self, origin: &Origin, expected: &str) -> anyhow::Result<Value> {
        let home = Home::new()?;
        let port = origin.port().to_string();
        let mut agent = Warren::spawn_env(
            &home,
            &["http", &port, "--local-host", "127.0.0.1", "--json"],
            &self.env(),
        )?;
        let probe = agent.json_event("region_probe").await?;
        assert_eq!(probe["chosen"], expected, "{probe}");
        let granted = agent.json_event("tunnel_granted").await?;
        assert_eq!(granted["region"], expected, "{granted}");
        let ready = agent.json_event("tunnel_ready").await?;
        let host = host_of(&ready["public_url"])?;
        ensure!(
            host.contains(&format!(".{expected}.localhost")),
            "the tunnel is not in {expected}: {host}"
        );
        let (status, _, body) = client::get(self.region(expected)?.edge, &host, "/hello").await?;
        assert_eq!(status.as_u16(), 200);
        assert_eq!(&body[..], b"hello from origin");
        Ok(probe)
    }
}

fn latency(probe: &Value, id: &str) -> Option<f64> {
    probe["regions"]
        .as_array()?
        .iter()
        .find(|r| r["id"] == id)?["latency_ms"]
        .as_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_picks_the_faster_region_and_follows_the_latency() -> anyhow::Result<()> {
    let started = Instant::now();
    let origin = Origin::start().await?;
    let cluster = TwoRegions::start().await?;

    // The edge answers the probe itself, naming its region.
    let eu = cluster.region("eu")?.edge;
    let (status, headers, _) = client::get(eu, "eu.localhost", "/_warren/probe").await?;
    assert_eq!(status.as_u16(), 204);
    assert_eq!(headers["warren-region"], "eu");
    assert_eq!(headers["cache-control"], "no-store");

    cluster.slow_down("us");
    let probe = cluster.auto_picks(&origin, "eu").await?;
    let (fast, slow) = (latency(&probe, "eu"), latency(&probe, "us"));
    assert!(
        matches!((fast, slow), (Some(f), Some(s)) if s >= 80.0 && f < s),
        "{probe}"
    );
    assert_eq!(
        probe["regions"][1]["samples_ms"].as_array().map(Vec::len),
        Some(3)
    );

    cluster.slow_down("eu");
    cluster.auto_picks(&origin, "us").await?;

    // `warren regions` measures both.
    let home = Home::new()?;
    let out = Warren::run_with(&home, &["regions", "--json"], &cluster.env(), None)
        .await?
        .ok()?;
    let listed = out.json()?;
    let eu_ms = latency(&listed, "eu").context("no latency for eu")?;
    let us_ms = latency(&listed, "us").context("no latency for us")?;
    assert!(eu_ms >= 80.0 && us_ms < eu_ms, "{listed}");
    let out = Warren::run_with(&home, &["regions"], &cluster.env(), None)
        .await?
        .ok()?;
    assert!(out.stdout.contains("LATENCY"), "{}", out.stdout);

    assert!(
        started.elapsed() < Duration::from_secs(20),
        "too slow: {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_region_is_one_sentence_listing_the_known_ones() -> anyhow::Result<()> {
    let cluster = TwoRegions::start().await?;
    let home = Home::new()?;
    let out = Warren::run_with(
        &home,
        &["http", "3000", "--region", "mars"],
        &cluster.env(),
        None,
    )
    .await?;
    ensure!(!out.status.success(), "{}", out.stderr);
    let line = out.stderr.trim();
    assert!(
        line.contains("\"mars\"") && line.contains("eu, us") && line.lines().count() == 1,
        "{line}"
    );

    // A forced region skips the probe.
    let origin = Origin::start().await?;
    let port = origin.port().to_string();
    let mut agent = Warren::spawn_env(
        &home,
        &[
            "http",
            &port,
            "--local-host",
            "127.0.0.1",
            "--region",
            "us",
            "--json",
        ],
        &cluster.env(),
    )?;
    let first = agent.json_line().await?;
    assert_eq!(first["event"], "tunnel_granted", "{first}");
    assert_eq!(first["region"], "us", "{first}");
    Ok(())
}
