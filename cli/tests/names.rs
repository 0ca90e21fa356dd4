//! No name changes hands behind its owner's back, end to end (real control, a real edge, two
//! `warren` agents of two accounts): account B can neither claim, get a grant for, nor end up
//! serving account A's stable name while A's tunnel is live, while A's agent reconnects, or
//! after A's agent stopped; once A releases the name (explicitly), B can.

mod support;

use std::time::Duration;

use anyhow::{Context as _, ensure};
use support::{DEADLINE, EXIT_DEADLINE, Home, TestCluster, Warren, host_of};
use warren_testkit::client;
use warren_testkit::origin::Origin;

async fn login(home: &Home, control: &str, token: &str) -> anyhow::Result<()> {
    Warren::run(home, &["login", "--control", control, "--token", token])
        .await?
        .ok()?;
    Ok(())
}

/// B tries everything it can to get `name`; each attempt must fail naming the claim.
async fn b_cannot_take(b: &Home, name: &str, port: &str) -> anyhow::Result<()> {
    let claim = Warren::run(b, &["subdomains", "claim", name]).await?;
    ensure!(
        !claim.status.success(),
        "B claimed {name}: {}",
        claim.stdout
    );
    ensure!(
        claim.stderr.contains("claimed by another account"),
        "{}",
        claim.stderr
    );
    let mut agent = Warren::spawn_in(
        b,
        &[
            "http",
            port,
            "--local-host",
            "127.0.0.1",
            "--subdomain",
            name,
            "--json",
        ],
    )?;
    let status = agent.exit_within(DEADLINE).await?;
    ensure!(!status.success(), "B's agent got {name}");
    let error = agent.json_event("error").await?;
    ensure!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("claimed by another account")),
        "{error}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_account_never_gets_a_stable_name() -> anyhow::Result<()> {
    let origin = Origin::start().await?;
    let port = origin.port().to_string();
    let mut cluster = TestCluster::start(Duration::from_secs(3600)).await?;
    let (a, b) = (Home::new()?, Home::new()?);
    login(&a, &cluster.control_url, &cluster.token).await?;
    let (_, b_token) =
        warren_control::create_account(&cluster.state, "b@example.com", false).await?;
    login(&b, &cluster.control_url, &b_token).await?;

    let mut agent = Warren::spawn_in(&a, &["http", &port, "--local-host", "127.0.0.1", "--json"])?;
    let host = host_of(&agent.json_event("tunnel_ready").await?["public_url"])?;
    let name = host.split('.').next().context("no label")?.to_string();

    // Live.
    b_cannot_take(&b, &name, &port).await?;

    // Reconnecting: the edge is gone, A's agent is retrying.
    cluster.stop_edge().await?;
    b_cannot_take(&b, &name, &port).await?;
    cluster.start_edge().await?;
    let ready = agent.json_event("tunnel_ready").await?;
    assert_eq!(
        host_of(&ready["public_url"])?,
        host,
        "A's URL after the reconnect"
    );
    let (status, _, body) = client::get(cluster.edge_addr, &host, "/hello").await?;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(&body[..], b"hello from origin");

    // Stopped: the name stays A's until A releases it.
    agent.signal("INT")?;
    ensure!(agent.exit_within(EXIT_DEADLINE).await?.success());
    b_cannot_take(&b, &name, &port).await?;
    let listed = Warren::run(&a, &["subdomains", "list"]).await?.ok()?;
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with(&name) && l.contains("stable name")),
        "{}",
        listed.stdout
    );

    Warren::run(&a, &["subdomains", "release", &name])
        .await?
        .ok()?;
    let mut taker = Warren::spawn_in(
        &b,
        &[
            "http",
            &port,
            "--local-host",
            "127.0.0.1",
            "--subdomain",
            &name,
            "--json",
        ],
    )?;
    let ready = taker.json_event("tunnel_ready").await?;
    assert_eq!(
        host_of(&ready["public_url"])?,
        host,
        "released, B may serve it"
    );
    taker.signal("INT")?;
    ensure!(taker.exit_within(EXIT_DEADLINE).await?.success());
    cluster.stop().await
}

/// `warren http PORT --edge EDGE --token SECRET --subdomain NAME --json`, straight to the edge.
fn static_agent(
    home: &Home,
    edge: &str,
    secret: &str,
    port: &str,
    name: &str,
) -> anyhow::Result<Warren> {
    Warren::spawn_in(
        home,
        &[
            "http",
            port,
            "--local-host",
            "127.0.0.1",
            "--edge",
            edge,
            "--token",
            secret,
            "--subdomain",
            name,
            "--json",
        ],
    )
}

/// The message of the error that ended `agent`, which must fail within the deadline.
async fn failure(mut agent: Warren) -> anyhow::Result<String> {
    let status = agent.exit_within(DEADLINE).await?;
    ensure!(!status.success(), "the agent was expected to fail");
    let error = agent.json_event("error").await?;
    Ok(error["message"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_tokens_are_accounts_and_never_take_control_names() -> anyhow::Result<()> {
    let origin = Origin::start().await?;
    let port = origin.port().to_string();
    let mut cluster = TestCluster::start(Duration::from_secs(3600)).await?;
    cluster.edge_tokens = vec![
        "alice:alice-secret-0123456789".into(),
        "bob:bob-secret-0123456789".into(),
    ];
    cluster.restart_edge().await?;
    let edge = format!("http://{}", cluster.edge_addr);
    let home = Home::new()?;

    // Two static tokens are two accounts: bob cannot take alice's live name.
    let mut alice = static_agent(&home, &edge, "alice-secret-0123456789", &port, "shared")?;
    let host = host_of(&alice.json_event("tunnel_ready").await?["public_url"])?;
    let bob = static_agent(&home, &edge, "bob-secret-0123456789", &port, "shared")?;
    let message = failure(bob).await?;
    assert!(message.contains("in use by another account"), "{message}");
    let (status, _, body) = client::get(cluster.edge_addr, &host, "/hello").await?;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(&body[..], b"hello from origin", "still alice's");
    alice.signal("INT")?;
    ensure!(alice.exit_within(EXIT_DEADLINE).await?.success());

    // A name an account of control holds is never given to a static token.
    let control = warren_cli::control_client::ControlClient::new(
        &cluster.control_url,
        Some(cluster.token.clone()),
    )?;
    control
        .post("/v1/subdomains", &serde_json::json!({"name": "owned"}))
        .await?;
    let alice = static_agent(&home, &edge, "alice-secret-0123456789", &port, "owned")?;
    let message = failure(alice).await?;
    assert!(
        message.contains("held by an account of this edge's control plane"),
        "{message}"
    );
    cluster.stop().await
}
