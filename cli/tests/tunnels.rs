//! Tunnels granted by control, end to end: `warren login` → `warren http` (the real binary)
//! against an edge that verifies control's grants and reports to it → visitors → `warren
//! tunnels close` → the agent stops → `warren history` has the tunnel with its counters. Also
//! grant renewal across an edge restart, and `warren dev` with its control plane.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, ensure};
use serde_json::Value;
use support::{DEADLINE, EXIT_DEADLINE, Home, TestCluster, Warren, eventually, host_of};
use warren_cli::control_client::ControlClient;
use warren_testkit::client;
use warren_testkit::origin::Origin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_http_close_and_history_end_to_end() -> anyhow::Result<()> {
    let origin = Origin::start().await?;
    let cluster = TestCluster::start(Duration::from_secs(3600)).await?;
    let home = Home::logged_in(&cluster).await?;

    let port = origin.port().to_string();
    let mut agent = Warren::spawn_in(
        &home,
        &["http", &port, "--local-host", "127.0.0.1", "--json"],
    )?;
    let granted = agent.json_event("tunnel_granted").await?;
    let tunnel_id = granted["tunnel_id"]
        .as_str()
        .context("no tunnel_id")?
        .to_string();
    let ready = agent.json_event("tunnel_ready").await?;
    assert_eq!(
        ready["public_url"], granted["public_url"],
        "{ready} {granted}"
    );
    let host = host_of(&ready["public_url"])?;

    // Two GETs and an upload: bytes flow both ways.
    const REQUESTS: u64 = 3;
    for _ in 0..REQUESTS - 1 {
        let (status, _, body) = client::get(cluster.edge_addr, &host, "/hello").await?;
        assert_eq!(status.as_u16(), 200);
        assert_eq!(&body[..], b"hello from origin");
    }
    let upload = http::Request::post("/upload")
        .header(http::header::HOST, &host)
        .body(client::full(vec![b'x'; 1000]))?;
    let response = client::request(cluster.edge_addr, upload).await?;
    assert_eq!(response.status().as_u16(), 200);
    http_body_util::BodyExt::collect(response.into_body()).await?;
    for _ in 0..REQUESTS {
        let event = agent.json_event("request").await?;
        assert_eq!(event["status"], 200, "{event}");
    }

    // The tunnel is listed as live once the edge has reported it.
    let listed = eventually("the tunnel listed as live", || async {
        let out = Warren::run(&home, &["tunnels", "--json"]).await?.ok()?;
        let tunnels = out.json()?["tunnels"].clone();
        Ok(tunnels
            .as_array()
            .and_then(|t| t.iter().find(|t| t["id"] == tunnel_id.as_str()).cloned()))
    })
    .await?;
    assert_eq!(listed["state"], "live", "{listed}");

    let out = Warren::run(&home, &["tunnels", "close", &tunnel_id])
        .await?
        .ok()?;
    assert!(out.stdout.contains(&tunnel_id), "{}", out.stdout);

    // Control tells the edge within a report interval (500 ms); the edge tells the agent.
    let status = agent.exit_within(DEADLINE).await?;
    assert!(
        !status.success(),
        "a closed tunnel ends the agent with an error: {status}"
    );
    let last = agent.json_event("error").await?;
    let message = last["message"].as_str().unwrap_or_default();
    assert!(message.contains("the tunnel was closed"), "{last}");
    assert_eq!(last["fatal"], true);

    let (status, _, _) = client::get(cluster.edge_addr, &host, "/hello").await?;
    assert_eq!(status.as_u16(), 404, "the closed tunnel no longer serves");

    let ended = eventually("the tunnel ended in history with its counters", || async {
        let out = Warren::run(&home, &["history", "--json"]).await?.ok()?;
        let tunnels = out.json()?["tunnels"].clone();
        let row = tunnels
            .as_array()
            .and_then(|t| t.iter().find(|t| t["id"] == tunnel_id.as_str()).cloned())
            .context("the tunnel is not in history")?;
        Ok((row["state"] == "ended" && row["requests"] == REQUESTS).then_some(row))
    })
    .await?;
    assert_eq!(ended["requests"], REQUESTS, "{ended}");
    assert!(
        ended["bytes_in"].as_u64().unwrap_or(0) >= 1000,
        "the upload: {ended}"
    );
    assert!(ended["bytes_out"].as_u64().unwrap_or(0) > 0, "{ended}");
    assert!(ended["ended_at"].is_string(), "{ended}");

    let out = Warren::run(&home, &["history"]).await?.ok()?;
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&tunnel_id))
        .context("no history row")?;
    assert!(row.contains("ended"), "{row}");
    cluster.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_are_renewed_and_reconnects_use_the_newest() -> anyhow::Result<()> {
    let origin = Origin::start().await?;
    let mut cluster = TestCluster::start(Duration::from_secs(4)).await?;
    let home = Home::new()?;
    let port = origin.port().to_string();
    // No saved login: the environment names control and the token.
    let mut agent = Warren::spawn_env(
        &home,
        &["http", &port, "--local-host", "127.0.0.1", "--json"],
        &[
            ("WARREN_CONTROL", &cluster.control_url),
            ("WARREN_TOKEN", &cluster.token),
        ],
    )?;
    let granted = agent.json_event("tunnel_granted").await?;
    let first_expiry = granted["grant_expires_at"].as_u64().context("no expiry")?;
    let host = host_of(&agent.json_event("tunnel_ready").await?["public_url"])?;

    // The edge accepts an expired grant for 30 s of clock skew; wait until the first grant is
    // refused for good, renewing (at half the 4 s lifetime) and serving all along.
    let mut renewed = 0;
    while unix_now() <= first_expiry + 31 {
        let event = agent.json_line().await?;
        if event["event"] == "grant_renewed" {
            renewed += 1;
            assert!(event["expires_at"].as_u64() > Some(first_expiry), "{event}");
            let (status, _, _) = client::get(cluster.edge_addr, &host, "/hello").await?;
            assert_eq!(status.as_u16(), 200);
        }
    }
    assert!(renewed >= 10, "renewed only {renewed} times in 30 s");

    // A new edge: the agent must present a renewed grant, the first one is long expired.
    cluster.restart_edge().await?;
    let ready = agent.json_event("tunnel_ready").await?;
    assert_eq!(
        host_of(&ready["public_url"])?,
        host,
        "the same URL after the reconnect"
    );
    let (status, _, body) = client::get(cluster.edge_addr, &host, "/hello").await?;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(&body[..], b"hello from origin");
    cluster.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_control_and_keeps_its_token_across_restarts() -> anyhow::Result<()> {
    let origin = Origin::start().await?;
    let home = Home::new()?;
    let data = home.data_dir().join("devdata");
    let data_arg = data.to_string_lossy().to_string();
    let args = [
        "dev",
        "--listen",
        "127.0.0.1:0",
        "--control-listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_arg,
        "--json",
    ];
    let mut dev = Warren::spawn_in(&home, &args)?;
    let ready = dev.json_event("dev_ready").await?;
    let control = ready["control"].as_str().context("no control")?.to_string();
    let token = ready["token"].as_str().context("no token")?.to_string();
    assert_eq!(ready["data_dir"], data_arg.as_str(), "{ready}");
    assert!(ready["edge"].is_string(), "{ready}");
    assert!(data.join("control.db").exists());

    let me = ControlClient::new(&control, Some(token.clone()))?
        .get("/v1/me")
        .await?;
    assert!(me["account"]["email"].is_string(), "{me}");

    // The printed login works, and `warren http` then goes through control's grant.
    let login = ready["login_command"]
        .as_str()
        .context("no login_command")?;
    let login: Vec<&str> = login.split_whitespace().skip(1).collect();
    Warren::run(&home, &login).await?.ok()?;
    let port = origin.port().to_string();
    let mut agent = Warren::spawn_in(
        &home,
        &["http", &port, "--local-host", "127.0.0.1", "--json"],
    )?;
    agent.json_event("tunnel_granted").await?;
    let host = host_of(&agent.json_event("tunnel_ready").await?["public_url"])?;
    let edge_port: u16 = ready["edge"]
        .as_str()
        .and_then(|e| e.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .context("no edge port")?;
    let (status, _, _) = client::get(([127, 0, 0, 1], edge_port).into(), &host, "/hello").await?;
    assert_eq!(status.as_u16(), 200);
    agent.signal("INT")?;
    ensure!(agent.exit_within(EXIT_DEADLINE).await?.success());

    dev.signal("INT")?;
    ensure!(
        dev.exit_within(EXIT_DEADLINE).await?.success(),
        "{}",
        dev.stderr()
    );
    let mut again = Warren::spawn_in(&home, &args)?;
    let ready: Value = again.json_event("dev_ready").await?;
    assert_eq!(
        ready["token"],
        token.as_str(),
        "the same dev token after a restart"
    );
    again.signal("INT")?;
    ensure!(again.exit_within(EXIT_DEADLINE).await?.success());
    Ok(())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
