//! Control and the edge talking through a real Redis (cluster mode): closes and token
//! revocations reach the agent at once over pub/sub, and session events travel over the Redis
//! Stream, so stopping control for 30 s neither disturbs live tunnels nor loses history.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use support::{DEADLINE, Home, TestCluster, Warren, eventually, host_of};
use warren_cli::control_client::ControlClient;
use warren_testkit::client;
use warren_testkit::origin::Origin;
use warren_testkit::redis::RedisServer;

/// Closes must arrive well before the 5 s HTTP backstop: that is the pub/sub path working.
const PUSHED_WITHIN: Duration = Duration::from_secs(3);

async fn login(cluster: &TestCluster) -> anyhow::Result<Home> {
    let home = Home::logged_in(cluster).await?;
    Ok(home)
}

/// `warren http` with `token`; returns the agent, its tunnel id and its Host.
async fn open_tunnel(
    home: &Home,
    cluster: &TestCluster,
    token: &str,
    port: u16,
) -> anyhow::Result<(Warren, String, String)> {
    let port = port.to_string();
    let mut agent = Warren::spawn_env(
        home,
        &["http", &port, "--local-host", "127.0.0.1", "--json"],
        &[
            ("WARREN_CONTROL", &cluster.control_url),
            ("WARREN_TOKEN", token),
        ],
    )?;
    let granted = agent.json_event("tunnel_granted").await?;
    let tunnel_id = granted["tunnel_id"]
        .as_str()
        .context("no tunnel_id")?
        .to_string();
    let host = host_of(&agent.json_event("tunnel_ready").await?["public_url"])?;
    Ok((agent, tunnel_id, host))
}

async fn get_ok(cluster: &TestCluster, host: &str) -> anyhow::Result<()> {
    let (status, _, body) = client::get(cluster.edge_addr, host, "/hello").await?;
    ensure!(status.as_u16() == 200, "{status}: {body:?}");
    Ok(())
}

/// The agent's last `error` event, once it has exited.
async fn exit_message(agent: &mut Warren) -> anyhow::Result<String> {
    let status = agent.exit_within(DEADLINE).await?;
    ensure!(
        !status.success(),
        "a closed tunnel ends the agent with an error"
    );
    let error = agent.json_event("error").await?;
    Ok(error["message"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_tunnel_or_revoking_its_token_reaches_the_agent_at_once() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let origin = Origin::start().await?;
    let cluster = TestCluster::start_with(Duration::from_secs(3600), Some(redis.url())).await?;
    let home = login(&cluster).await?;
    let api = ControlClient::new(&cluster.control_url, Some(cluster.token.clone()))?;

    // Closed through the API.
    let (mut agent, tunnel_id, host) =
        open_tunnel(&home, &cluster, &cluster.token, origin.port()).await?;
    get_ok(&cluster, &host).await?;
    // Let the edge's first backstop poll pass, so what follows can only come over pub/sub.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let asked = Instant::now();
    api.delete(&format!("/v1/tunnels/{tunnel_id}")).await?;
    let message = exit_message(&mut agent).await?;
    let took = asked.elapsed();
    eprintln!("close through the API reached the agent in {took:?}");
    assert!(message.contains("closed through the API"), "{message}");
    assert!(took < PUSHED_WITHIN, "the close took {took:?}");

    // A second token opens a tunnel; revoking the token closes it.
    let created = api
        .post(
            "/v1/tokens",
            &json!({"name": "ci laptop", "scopes": ["tunnel"]}),
        )
        .await?;
    let token = created["token"].as_str().context("no token")?.to_string();
    let token_id = created["id"].as_str().context("no id")?.to_string();
    let (mut agent, tunnel_id, host) = open_tunnel(&home, &cluster, &token, origin.port()).await?;
    get_ok(&cluster, &host).await?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let asked = Instant::now();
    api.delete(&format!("/v1/tokens/{token_id}")).await?;
    let message = exit_message(&mut agent).await?;
    let took = asked.elapsed();
    eprintln!("token revocation reached the agent in {took:?}");
    assert!(message.contains("revoked"), "{message}");
    assert!(took < PUSHED_WITHIN, "the revocation took {took:?}");
    let (status, _, _) = client::get(cluster.edge_addr, &host, "/hello").await?;
    assert_eq!(status.as_u16(), 404, "the tunnel no longer serves");

    // History says why.
    let row = history_row(&home, &tunnel_id).await?;
    assert_eq!(row["state"], "ended", "{row}");
    cluster.stop().await
}

/// The tunnel's row in `warren history --json`.
async fn history_row(home: &Home, tunnel_id: &str) -> anyhow::Result<Value> {
    let out = Warren::run(home, &["history", "--json"]).await?.ok()?;
    out.json()?["tunnels"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == tunnel_id).cloned())
        .with_context(|| format!("{tunnel_id} is not in history: {}", out.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_stopped_for_30_s_disturbs_no_tunnel_and_loses_no_history() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let origin = Origin::start().await?;
    let mut cluster = TestCluster::start_with(Duration::from_secs(3600), Some(redis.url())).await?;
    let home = login(&cluster).await?;

    // Two tunnels: `steady` serves all along, `brief` ends while control is away. Tunnel
    // names derive from the token, so `brief` gets a token of its own.
    let api = ControlClient::new(&cluster.control_url, Some(cluster.token.clone()))?;
    let created = api
        .post(
            "/v1/tokens",
            &json!({"name": "brief", "scopes": ["tunnel"]}),
        )
        .await?;
    let brief_token = created["token"].as_str().context("no token")?.to_string();
    let (_steady, steady_id, steady_host) =
        open_tunnel(&home, &cluster, &cluster.token, origin.port()).await?;
    let (brief, brief_id, brief_host) =
        open_tunnel(&home, &cluster, &brief_token, origin.port()).await?;
    let mut steady_requests = 0u64;
    for _ in 0..3 {
        get_ok(&cluster, &steady_host).await?;
        get_ok(&cluster, &brief_host).await?;
        steady_requests += 1;
    }
    let mut brief_requests = 3u64;
    // Both started and were counted before control goes away.
    eventually("both tunnels live with 3 requests", || async {
        let steady = history_row(&home, &steady_id).await?;
        let brief = history_row(&home, &brief_id).await?;
        ensure!(
            steady["requests"] == 3 && brief["requests"] == 3,
            "history: {steady} {brief}"
        );
        Ok(Some(()))
    })
    .await?;

    cluster.stop_control().await?;
    let outage = Instant::now();
    let mut failures = 0u64;
    let mut brief = Some(brief);
    while outage.elapsed() < Duration::from_secs(30) {
        match get_ok(&cluster, &steady_host).await {
            Ok(()) => steady_requests += 1,
            Err(e) => {
                failures += 1;
                eprintln!("request during the outage failed: {e:#}");
            }
        }
        if brief.is_some() && outage.elapsed() > Duration::from_secs(10) {
            for _ in 0..4 {
                get_ok(&cluster, &brief_host).await?;
                brief_requests += 1;
            }
            // The agent goes away: the edge records the session's end while control is down.
            drop(brief.take());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "control down for {:?}: {steady_requests} requests served, {failures} failed",
        outage.elapsed()
    );
    assert_eq!(
        failures, 0,
        "live tunnels are unaffected while control is down"
    );
    let backlog: u64 = redis
        .cli(&["XLEN", "warren:events"])?
        .trim()
        .parse()
        .context("XLEN")?;
    assert!(backlog > 0, "events waited in the stream");

    cluster.start_control().await?;
    let steady = eventually("every request of the steady tunnel in history", || async {
        let row = history_row(&home, &steady_id).await?;
        Ok((row["requests"] == steady_requests).then_some(row))
    })
    .await?;
    assert_eq!(steady["state"], "live", "{steady}");
    let brief = eventually("the brief tunnel ended with its requests", || async {
        let row = history_row(&home, &brief_id).await?;
        Ok((row["state"] == "ended").then_some(row))
    })
    .await?;
    assert_eq!(brief["requests"], brief_requests, "{brief}");
    assert!(brief["ended_at"].is_string(), "{brief}");
    // Everything read was applied and acknowledged.
    eventually("no pending stream entries", || async {
        let pending = redis.cli(&["XPENDING", "warren:events", "control"])?;
        Ok(pending
            .lines()
            .next()
            .is_some_and(|l| l.trim() == "0")
            .then_some(()))
    })
    .await?;
    cluster.stop().await
}
