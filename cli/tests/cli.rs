//! The real `warren` binary, run as a child process against in-process edges: what a user sees
//! on stdout and stderr, exit codes, and signals.
//!
//! Every child is killed when its `Warren` handle drops, and every wait has a deadline.

mod support;

use std::time::Instant;

use anyhow::{Context as _, ensure};
use serde_json::Value;
use support::{EXIT_DEADLINE, Warren, closed_port, host_of};
use warren_testkit::client;
use warren_testkit::cluster::{TEST_TOKEN, TestEdge};
use warren_testkit::origin::Origin;

// ---------------------------------------------------------------------------------------------
// Failing fast, with a sentence that says what to do
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unreachable_edge_fails_fast_naming_the_edge() -> anyhow::Result<()> {
    let port = closed_port().await?;
    let edge = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let mut warren = Warren::spawn(&["http", "3000", "--edge", &edge, "--token", "x"])?;
    let status = warren.exit_within(EXIT_DEADLINE).await?;
    assert!(!status.success(), "{status}");
    assert!(started.elapsed() < EXIT_DEADLINE);
    let stderr = warren.stderr();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, not: {stderr}");
    assert!(
        lines[0].contains(&format!("127.0.0.1:{port}")),
        "the error should name the edge: {stderr}"
    );
    assert!(
        lines[0].contains("--edge") && lines[0].contains("running"),
        "the error should say what to check: {stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn a_wrong_token_fails_with_a_message_about_the_token() -> anyhow::Result<()> {
    let edge = TestEdge::start().await?;
    let mut warren = Warren::spawn(&["http", "3000", "--edge", &edge.url(), "--token", "wrn_no"])?;
    let status = warren.exit_within(EXIT_DEADLINE).await?;
    assert!(!status.success(), "{status}");
    let stderr = warren.stderr();
    assert!(stderr.contains("token"), "{stderr}");
    assert!(
        stderr.contains("--token"),
        "say how to pass another: {stderr}"
    );
    edge.stop().await
}

#[tokio::test]
async fn invalid_arguments_are_named_in_the_error() -> anyhow::Result<()> {
    // No token anywhere: the bad value must still be what is reported.
    for (args, needle) in [
        (&["http", "notaport"][..], "\"notaport\""),
        (&["http", "0"][..], "port 0"),
        (&["http", "99999"][..], "\"99999\""),
        (&["http", "3000", "--edge", "ftp://edge"][..], "ftp"),
    ] {
        let mut warren = Warren::spawn(args)?;
        let status = warren.exit_within(EXIT_DEADLINE).await?;
        let stderr = warren.stderr();
        assert!(!status.success(), "{args:?}: {status}");
        assert!(
            stderr.contains(needle),
            "{args:?} should name {needle}: {stderr}"
        );
    }

    let mut warren = Warren::spawn(&["http", "3000", "--edge", "http://127.0.0.1:1"])?;
    let status = warren.exit_within(EXIT_DEADLINE).await?;
    let stderr = warren.stderr();
    assert!(!status.success(), "{status}");
    assert!(
        stderr.contains("--token") && stderr.contains("WARREN_TOKEN"),
        "a missing token should say how to pass one: {stderr}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// `warren http` against a running edge
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn json_output_reports_the_tunnel_and_each_request() -> anyhow::Result<()> {
    let origin = Origin::start().await?;
    let edge = TestEdge::start().await?;
    let port = origin.port().to_string();
    let mut warren = Warren::spawn(&[
        "http",
        &port,
        "--edge",
        &edge.url(),
        "--token",
        TEST_TOKEN,
        "--json",
    ])?;
    let first = warren.line().await?;
    assert!(
        first.starts_with(r#"{"event":"tunnel_ready","public_url":"http://"#),
        "the first line should announce the tunnel: {first}"
    );
    let first: Value = serde_json::from_str(&first)?;
    let host = host_of(&first["public_url"])?;

    let (status, _, body) = client::get(edge.addr, &host, "/hello").await?;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(&body[..], b"hello from origin");
    let (status, _, _) = client::get(edge.addr, &host, "/status/418").await?;
    assert_eq!(status.as_u16(), 418);

    for (path, status) in [("/hello", 200), ("/status/418", 418)] {
        let event = warren.json_event("request").await?;
        assert_eq!(event["method"], "GET", "{event}");
        assert_eq!(event["path"], path, "{event}");
        assert_eq!(event["status"], status, "{event}");
    }

    warren.signal("INT")?;
    let status = warren.exit_within(EXIT_DEADLINE).await?;
    assert!(status.success(), "Ctrl-C should be a clean exit: {status}");
    edge.stop().await
}

#[tokio::test]
async fn quiet_prints_the_tunnel_but_no_request_lines() -> anyhow::Result<()> {
    let origin = Origin::start().await?;
    let edge = TestEdge::start().await?;
    let port = origin.port().to_string();
    let mut warren = Warren::spawn(&[
        "http",
        &port,
        "--edge",
        &edge.url(),
        "--token",
        TEST_TOKEN,
        "--json",
        "--quiet",
    ])?;
    let first = warren.json_event("tunnel_ready").await?;
    let host = host_of(&first["public_url"])?;
    for _ in 0..5 {
        let (status, _, _) = client::get(edge.addr, &host, "/hello").await?;
        assert_eq!(status.as_u16(), 200);
    }
    // Longer than the edge's batching delay: any log would have been printed by now.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    warren.signal("INT")?;
    let output = warren.finish().await?;
    assert!(output.status.success(), "{}", output.stderr);
    assert!(
        !output.stdout.contains(r#""event":"request""#),
        "--quiet prints no request: {}",
        output.stdout
    );
    edge.stop().await
}

#[tokio::test]
async fn a_local_service_that_is_down_gets_a_warning_and_visitors_a_502() -> anyhow::Result<()> {
    let edge = TestEdge::start().await?;
    let local = closed_port().await?.to_string();
    let mut warren = Warren::spawn(&[
        "http",
        &local,
        "--local-host",
        "127.0.0.1",
        "--edge",
        &edge.url(),
        "--token",
        TEST_TOKEN,
    ])?;
    let forwarding = warren.line().await?;
    let mut words = forwarding.split_whitespace();
    ensure!(
        words.next() == Some("Forwarding"),
        "expected the Forwarding line first, got {forwarding:?}"
    );
    let url = words.next().context("no URL on the Forwarding line")?;
    assert!(
        forwarding.ends_with(&format!("127.0.0.1:{local}")),
        "{forwarding}"
    );

    let (status, headers, _) = client::get(edge.addr, &host_of(&url.into())?, "/hello").await?;
    assert_eq!(status.as_u16(), 502);
    assert_eq!(headers["warren-error"], "local-service-refused");

    let warning = format!("warning: nothing is listening on 127.0.0.1:{local}");
    warren
        .wait_for_stderr(&warning)
        .await
        .context("the agent should warn that the local service is down")?;
    let request = warren.line().await?;
    assert!(
        request.contains("GET") && request.contains("/hello") && request.contains("502"),
        "{request}"
    );
    edge.stop().await
}

// ---------------------------------------------------------------------------------------------
// `warren dev`
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn dev_serves_a_tunnel_and_stops_cleanly_on_sigint() -> anyhow::Result<()> {
    let origin = Origin::start().await?;
    let port = origin.port().to_string();
    let mut warren = Warren::spawn(&["dev", &port, "--listen", "127.0.0.1:0", "--json"])?;
    let ready = warren.json_event("dev_ready").await?;
    let edge = ready["edge"].as_str().context("dev_ready without edge")?;
    let token = ready["token"].as_str().context("dev_ready without token")?;
    assert!(token.starts_with("wrn_"), "{ready}");
    let command = ready["tunnel_command"].as_str().unwrap_or_default();
    assert!(command.contains(edge) && command.contains(token), "{ready}");
    let edge_port = edge.rsplit(':').next().unwrap_or_default().parse::<u16>()?;
    assert_ne!(edge_port, 0, "dev_ready should name the real port: {ready}");

    let tunnel = warren.json_event("tunnel_ready").await?;
    let host = host_of(&tunnel["public_url"])?;
    let addr = ([127, 0, 0, 1], edge_port).into();
    let (status, _, body) = client::get(addr, &host, "/hello").await?;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(&body[..], b"hello from origin");

    warren.signal("INT")?;
    let status = warren.exit_within(EXIT_DEADLINE).await?;
    assert!(status.success(), "SIGINT should be a clean exit: {status}");
    Ok(())
}

#[tokio::test]
async fn dev_stops_cleanly_on_sigterm_right_after_starting() -> anyhow::Result<()> {
    let mut warren = Warren::spawn(&["dev", "--listen", "127.0.0.1:0", "--json"])?;
    warren.json_event("dev_ready").await?;
    warren.signal("TERM")?;
    let status = warren.exit_within(EXIT_DEADLINE).await?;
    assert!(status.success(), "SIGTERM should be a clean exit: {status}");
    Ok(())
}

#[tokio::test]
async fn the_command_dev_prints_connects() -> anyhow::Result<()> {
    let mut dev = Warren::spawn(&["dev", "--listen", "127.0.0.1:0"])?;
    let command = loop {
        let line = dev.line().await?;
        if line.trim_start().starts_with("warren http") && line.contains("--edge") {
            break line;
        }
    };
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let edge = args
        .windows(2)
        .find(|w| w[0] == "--edge")
        .map(|w| w[1].to_string())
        .context("the printed command has no --edge")?;
    assert!(args.contains(&"--token"), "{command}");

    let mut agent = Warren::spawn(&args)?;
    let forwarding = agent.line().await?;
    assert!(
        forwarding.starts_with("Forwarding  http://"),
        "{forwarding}"
    );
    let edge_port = edge.rsplit(':').next().unwrap_or_default();
    assert!(
        forwarding.contains(&format!(".localhost:{edge_port} ")),
        "the tunnel should be served by the dev edge at {edge}: {forwarding}"
    );

    agent.signal("INT")?;
    assert!(agent.exit_within(EXIT_DEADLINE).await?.success());
    dev.signal("INT")?;
    assert!(dev.exit_within(EXIT_DEADLINE).await?.success());
    Ok(())
}
