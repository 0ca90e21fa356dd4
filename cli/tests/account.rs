//! The account commands (`login`, `logout`, `tokens`, `subdomains`, `regions`) run as the real
//! binary against a real control plane (SQLite) served over HTTP in the test process.

mod support;

use std::time::Duration;

use anyhow::Context as _;
use support::{Home, TestCluster, Warren, closed_port};

const TTL: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_saves_a_private_file_and_the_environment_overrides_it() -> anyhow::Result<()> {
    let cluster = TestCluster::start(TTL).await?;
    let home = Home::new()?;
    let out = Warren::run(
        &home,
        &[
            "login",
            "--control",
            &cluster.control_url,
            "--token",
            &cluster.token,
        ],
    )
    .await?
    .ok()?;
    assert!(out.stdout.contains(&cluster.email), "{}", out.stdout);
    assert!(out.stdout.contains("config.toml"), "{}", out.stdout);

    let file = home.config_file();
    let text = std::fs::read_to_string(&file)?;
    assert!(
        text.contains(&cluster.token) && text.contains(&cluster.control_url),
        "{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the config file holds a secret");
    }

    // The saved login is used...
    let out = Warren::run(&home, &["tokens", "list", "--json"])
        .await?
        .ok()?;
    assert_eq!(out.json()?["tokens"].as_array().map(Vec::len), Some(1));

    // ...unless the environment says otherwise: a dead control in WARREN_CONTROL wins.
    let dead = format!("http://127.0.0.1:{}", closed_port().await?);
    let out = Warren::run_with(
        &home,
        &["tokens", "list"],
        &[("WARREN_CONTROL", &dead)],
        None,
    )
    .await?;
    assert!(!out.status.success());
    assert_eq!(
        out.stderr.trim(),
        format!(
            "error: cannot reach control at {dead}: is it running? (check `warren login --control`)"
        )
    );
    // And a bad WARREN_TOKEN wins over the saved good one.
    let out = Warren::run_with(
        &home,
        &["tokens", "list"],
        &[("WARREN_TOKEN", "wrn_0000000000000000_nope")],
        None,
    )
    .await?;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("does not accept this token") && out.stderr.contains("warren login"),
        "{}",
        out.stderr
    );

    let out = Warren::run(&home, &["logout"]).await?.ok()?;
    assert!(out.stdout.contains("Logged out"), "{}", out.stdout);
    assert!(!file.exists());
    let out = Warren::run(&home, &["tokens", "list"]).await?;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("not logged in") && out.stderr.contains("warren login"),
        "{}",
        out.stderr
    );
    cluster.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_a_bad_token_fails_clearly_and_saves_nothing() -> anyhow::Result<()> {
    let cluster = TestCluster::start(TTL).await?;
    let home = Home::new()?;
    let out = Warren::run(
        &home,
        &[
            "login",
            "--control",
            &cluster.control_url,
            "--token",
            "wrn_0123456789abcdef_wrongwrongwrongwrongwrongwrongwr",
        ],
    )
    .await?;
    assert!(!out.status.success());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one sentence: {}", out.stderr);
    assert!(
        lines[0].contains("does not accept this token"),
        "{}",
        out.stderr
    );
    assert!(!home.config_file().exists(), "nothing is saved");

    // The token can come from a pipe, as a prompt would read it.
    let out = Warren::run_with(
        &home,
        &["login", "--control", &cluster.control_url],
        &[],
        Some(&format!("{}\n", cluster.token)),
    )
    .await?
    .ok()?;
    assert!(out.stdout.contains(&cluster.email), "{}", out.stdout);

    // A corrupt file is named, with what to do.
    std::fs::write(home.config_file(), "token = 42\n")?;
    let out = Warren::run(&home, &["subdomains", "list"]).await?;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("config.toml") && out.stderr.contains("warren login"),
        "{}",
        out.stderr
    );
    cluster.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_subdomains_and_regions() -> anyhow::Result<()> {
    let cluster = TestCluster::start(TTL).await?;
    let home = Home::logged_in(&cluster).await?;

    // Tokens: create (shown once), list, use, revoke.
    let out = Warren::run(
        &home,
        &[
            "tokens",
            "create",
            "--name",
            "ci",
            "--scope",
            "read",
            "--expires-in",
            "30d",
            "--json",
        ],
    )
    .await?
    .ok()?;
    let created = out.json()?;
    let id = created["id"].as_str().context("no id")?.to_string();
    let secret = created["token"].as_str().context("no token")?.to_string();
    assert!(secret.starts_with("wrn_"), "{created}");
    assert_eq!(created["scopes"], serde_json::json!(["read"]));
    assert!(created["expires_at"].is_string(), "{created}");

    let out = Warren::run(&home, &["tokens", "list"]).await?.ok()?;
    let header = out.stdout.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("ID") && header.contains("SCOPES"),
        "{}",
        out.stdout
    );
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .context("new token not listed")?;
    assert!(row.contains("ci") && row.contains("read"), "{row}");

    // A read token cannot manage: the sentence says so.
    let out = Warren::run_with(
        &home,
        &["subdomains", "claim", "nope"],
        &[("WARREN_TOKEN", &secret)],
        None,
    )
    .await?;
    assert!(!out.status.success());
    assert!(out.stderr.contains("scope"), "{}", out.stderr);

    let out = Warren::run(&home, &["tokens", "revoke", &id]).await?.ok()?;
    assert!(out.stdout.contains(&id), "{}", out.stdout);
    let out = Warren::run_with(
        &home,
        &["tokens", "list"],
        &[("WARREN_TOKEN", &secret)],
        None,
    )
    .await?;
    assert!(
        !out.status.success() && out.stderr.contains("does not accept this token"),
        "{}",
        out.stderr
    );
    let out = Warren::run(&home, &["tokens", "revoke", &id]).await?;
    assert!(!out.status.success(), "revoking twice is an error");

    // Subdomains: claim, list, conflict, release.
    let name = format!("cli{:x}", rand::random::<u32>());
    let out = Warren::run(&home, &["subdomains", "claim", &name])
        .await?
        .ok()?;
    assert!(out.stdout.contains(&name), "{}", out.stdout);
    let out = Warren::run(&home, &["subdomains", "list", "--json"])
        .await?
        .ok()?;
    let names: Vec<String> = out.json()?["subdomains"]
        .as_array()
        .context("no subdomains")?
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names, std::slice::from_ref(&name));
    let (_, other) =
        warren_control::create_account(&cluster.state, "other@example.com", false).await?;
    let out = Warren::run_with(
        &home,
        &["subdomains", "claim", &name],
        &[("WARREN_TOKEN", &other)],
        None,
    )
    .await?;
    assert!(!out.status.success());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(
        lines[0].contains(&name),
        "409 says whose name it is: {}",
        out.stderr
    );
    let out = Warren::run(&home, &["subdomains", "claim", "Not Valid!"]).await?;
    assert!(!out.status.success(), "{}", out.stdout);
    let out = Warren::run(&home, &["subdomains", "release", &name])
        .await?
        .ok()?;
    assert!(out.stdout.contains(&name), "{}", out.stdout);
    let out = Warren::run(&home, &["subdomains", "list"]).await?.ok()?;
    assert!(!out.stdout.contains(&name), "{}", out.stdout);

    // Regions.
    let out = Warren::run(&home, &["regions"]).await?.ok()?;
    let row = out.stdout.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with("local") && row.contains("localhost"),
        "{}",
        out.stdout
    );
    let out = Warren::run(&home, &["regions", "--json"]).await?.ok()?;
    assert_eq!(out.json()?["regions"][0]["id"], "local");
    cluster.stop().await
}
