//! Helpers for running the real `warren` binary as a child process: a private home per test
//! (config and data directories), the child's stdout line by line and its stderr, exit codes,
//! signals; and a control plane plus an edge connected to it, in the test process.
//!
//! Every child is killed when its [`Warren`] handle drops, and every wait has a deadline.
#![allow(dead_code)] // Each test file uses a different subset.

use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use warren_control::{AppState, ControlConfig, RegionConfig};
use warren_edge::{Deps, EdgeConfig, Listeners};
pub use warren_testkit::cluster::DEADLINE;

pub const WARREN: &str = env!("CARGO_BIN_EXE_warren");
/// How long a command that fails or is interrupted may take to exit.
pub const EXIT_DEADLINE: Duration = Duration::from_secs(5);

/// A private `$HOME` with its own config and data directories.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> anyhow::Result<Home> {
        Ok(Home {
            dir: tempfile::tempdir()?,
        })
    }

    /// A fresh home where `warren login` against `cluster` has succeeded.
    pub async fn logged_in(cluster: &TestCluster) -> anyhow::Result<Home> {
        let home = Home::new()?;
        Warren::run(
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
        Ok(home)
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where `warren login` saves the login.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir().join("warren").join("config.toml")
    }

    fn apply(&self, command: &mut Command) {
        command
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.config_dir())
            .env("XDG_DATA_HOME", self.data_dir());
    }
}

/// A running `warren` process. Dropping it kills the process.
pub struct Warren {
    child: Child,
    stdout: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
    _home: Option<Home>,
}

/// What a finished command printed.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout as JSON, for `--json` commands that print one object.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(self.stdout.trim())
            .with_context(|| format!("not JSON: {:?} (stderr {:?})", self.stdout, self.stderr))
    }

    pub fn ok(self) -> anyhow::Result<Output> {
        ensure!(
            self.status.success(),
            "warren failed ({}): stdout {:?}, stderr {:?}",
            self.status,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }
}

impl Warren {
    /// Starts `warren ARGS` in a fresh private home.
    pub fn spawn(args: &[&str]) -> anyhow::Result<Warren> {
        let home = Home::new()?;
        let mut warren = Warren::start(&home, args, &[], None)?;
        warren._home = Some(home);
        Ok(warren)
    }

    /// Starts `warren ARGS` in `home`.
    pub fn spawn_in(home: &Home, args: &[&str]) -> anyhow::Result<Warren> {
        Warren::start(home, args, &[], None)
    }

    /// Starts `warren ARGS` in `home` with extra environment variables.
    pub fn spawn_env(home: &Home, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Warren> {
        Warren::start(home, args, env, None)
    }

    /// Runs `warren ARGS` in `home` to completion (within [`DEADLINE`]).
    pub async fn run(home: &Home, args: &[&str]) -> anyhow::Result<Output> {
        Warren::start(home, args, &[], None)?.finish().await
    }

    /// Runs `warren ARGS` with extra environment variables and optional standard input.
    pub async fn run_with(
        home: &Home,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> anyhow::Result<Output> {
        Warren::start(home, args, env, stdin)?.finish().await
    }

    /// No `WARREN_*` settings from the test's environment leak in.
    fn start(
        home: &Home,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> anyhow::Result<Warren> {
        let mut command = Command::new(WARREN);
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("WARREN_") {
                command.env_remove(name);
            }
        }
        home.apply(&mut command);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().context("start warren")?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().context("no stdin pipe")?;
            pipe.write_all(input.as_bytes())?;
        }
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let stderr_pipe = child.stderr.take().context("no stderr pipe")?;
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut pipe = stderr_pipe;
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]);
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&text);
            }
        });
        Ok(Warren {
            child,
            stdout: lines,
            stderr,
            stderr_reader: Some(stderr_reader),
            _home: None,
        })
    }

    /// Waits for the exit (within [`DEADLINE`]) and collects everything printed.
    pub async fn finish(mut self) -> anyhow::Result<Output> {
        let status = self.exit_within(DEADLINE).await?;
        let mut stdout = String::new();
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(2), self.stdout.recv()).await
        {
            stdout.push_str(&line);
            stdout.push('\n');
        }
        let stderr = self.stderr();
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// The next line on stdout, within [`DEADLINE`].
    pub async fn line(&mut self) -> anyhow::Result<String> {
        match tokio::time::timeout(DEADLINE, self.stdout.recv()).await {
            Ok(Some(line)) => Ok(line),
            Ok(None) => bail!("warren closed stdout; stderr: {}", self.stderr_so_far()),
            Err(_) => bail!(
                "no line on stdout within {DEADLINE:?}; stderr: {}",
                self.stderr_so_far()
            ),
        }
    }

    /// The next stdout line, which must be a JSON object with an `event`.
    pub async fn json_line(&mut self) -> anyhow::Result<Value> {
        let line = self.line().await?;
        let value: Value =
            serde_json::from_str(&line).with_context(|| format!("not JSON: {line:?}"))?;
        ensure!(value["event"].is_string(), "no event field: {line}");
        Ok(value)
    }

    /// The next JSON line whose `event` is `name`, skipping others.
    pub async fn json_event(&mut self, name: &str) -> anyhow::Result<Value> {
        loop {
            let value = self.json_line().await?;
            if value["event"] == name {
                return Ok(value);
            }
        }
    }

    /// Waits until stderr contains `needle`, within [`DEADLINE`].
    pub async fn wait_for_stderr(&self, needle: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + DEADLINE;
        while !self.stderr_so_far().contains(needle) {
            ensure!(
                Instant::now() < deadline,
                "stderr never said {needle:?}: {}",
                self.stderr_so_far()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Sends a signal (`INT`, `TERM`) with the `kill` command.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .context("run kill")?;
        ensure!(status.success(), "kill -{name} failed: {status}");
        Ok(())
    }

    /// Waits for the process to exit, for at most `deadline`.
    pub async fn exit_within(&mut self, deadline: Duration) -> anyhow::Result<ExitStatus> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            ensure!(
                Instant::now() < until,
                "warren did not exit within {deadline:?}; stderr: {}",
                self.stderr_so_far()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything written to stderr, once the process has exited.
    pub fn stderr(&mut self) -> String {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        self.stderr_so_far()
    }

    pub fn stderr_so_far(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Warren {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on.
pub async fn closed_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.port())
}

/// `name.localhost:port` from a public URL, for the `Host` header.
pub fn host_of(url: &Value) -> anyhow::Result<String> {
    let url = url.as_str().context("the public URL is not a string")?;
    url.strip_prefix("http://")
        .map(|host| host.trim_end_matches('/').to_string())
        .with_context(|| format!("not an http:// URL: {url}"))
}

/// Polls `check` until it returns `Some`, within [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + DEADLINE;
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        ensure!(
            Instant::now() < deadline,
            "{what} did not happen within {DEADLINE:?} (last error: {last})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Control and an edge connected to it
// ---------------------------------------------------------------------------------------------

/// A control plane on SQLite and an edge that accepts its grants and reports to it, both in
/// this process on loopback ports chosen by the OS; plus an account with a `manage` token.
pub struct TestCluster {
    pub control_url: String,
    control_addr: SocketAddr,
    control_config: ControlConfig,
    /// In cluster mode: the Redis edge and control share.
    redis_url: Option<String>,
    pub edge_addr: SocketAddr,
    /// Static tokens (`NAME:SECRET`) the edge accepts besides grants, from its next start.
    pub edge_tokens: Vec<String>,
    pub state: AppState,
    /// The test account's token (scope `manage`).
    pub token: String,
    pub email: String,
    edge_secret: String,
    edge: Option<(
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )>,
    control_shutdown: CancellationToken,
    control: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _db: tempfile::TempDir,
}

impl TestCluster {
    pub async fn start(grant_ttl: Duration) -> anyhow::Result<TestCluster> {
        TestCluster::start_with(grant_ttl, None).await
    }

    /// With `redis_url`, edge and control talk through Redis: session events on the stream,
    /// closes over pub/sub (the edge also keeps its routes there).
    pub async fn start_with(
        grant_ttl: Duration,
        redis_url: Option<String>,
    ) -> anyhow::Result<TestCluster> {
        TestCluster::start_configured(grant_ttl, redis_url, |_| {}).await
    }

    /// Like [`TestCluster::start_with`], with control's config changed by `configure` first.
    pub async fn start_configured(
        grant_ttl: Duration,
        redis_url: Option<String>,
        configure: impl FnOnce(&mut ControlConfig),
    ) -> anyhow::Result<TestCluster> {
        let db = tempfile::tempdir()?;
        let edge_listener = TcpListener::bind("127.0.0.1:0").await?;
        let edge_addr = edge_listener.local_addr()?;
        let control_listener = TcpListener::bind("127.0.0.1:0").await?;
        let control_addr = control_listener.local_addr()?;
        let control_url = format!("http://127.0.0.1:{}", control_addr.port());
        let edge_secret = format!("test-edge-secret-{:016x}", rand::random::<u64>());
        let mut config = ControlConfig::new(
            format!(
                "sqlite://{}?mode=rwc",
                db.path().join("control.db").display()
            ),
            control_url.clone(),
        );
        config.regions = vec![RegionConfig {
            id: "local".into(),
            name: "Local".into(),
            location: "loopback".into(),
            domain: "localhost".into(),
            tunnel_url: format!("http://127.0.0.1:{}", edge_addr.port()),
            probe_url: format!("http://127.0.0.1:{}/healthz", edge_addr.port()),
            public_scheme: "http".into(),
            public_port: Some(edge_addr.port()),
        }];
        config.edge_secret = Some(edge_secret.clone());
        config.grant_ttl = grant_ttl;
        config.redis_url = redis_url.clone();
        config.instance_id = "test-control".into();
        configure(&mut config);
        let control_config = config.clone();
        let state = AppState::open(config).await?;
        let email = format!("user{:x}@example.com", rand::random::<u32>());
        let (_, token) = warren_control::create_account(&state, &email, false).await?;
        let control_shutdown = CancellationToken::new();
        let control = tokio::spawn(warren_control::serve(
            control_listener,
            state.clone(),
            control_shutdown.clone(),
        ));
        let mut cluster = TestCluster {
            control_url,
            control_addr,
            control_config,
            redis_url,
            edge_addr,
            edge_tokens: Vec::new(),
            state,
            token,
            email,
            edge_secret,
            edge: None,
            control_shutdown,
            control: Some(control),
            _db: db,
        };
        cluster.start_edge_on(edge_listener).await?;
        Ok(cluster)
    }

    fn edge_config(&self) -> EdgeConfig {
        EdgeConfig {
            domain: "localhost".into(),
            region: "local".into(),
            public_port: Some(self.edge_addr.port()),
            shutdown_grace: Duration::from_secs(1),
            heartbeat_interval: Duration::from_millis(500),
            control_url: Some(self.control_url.clone()),
            control_insecure_http: true,
            control_secret: Some(self.edge_secret.clone()),
            tokens: self.edge_tokens.clone(),
            redis_url: self.redis_url.clone(),
            relay_key: self
                .redis_url
                .as_ref()
                .map(|_| "test-relay-key-0123456789abcdef".to_string()),
            ..EdgeConfig::default()
        }
    }

    async fn start_edge_on(&mut self, listener: TcpListener) -> anyhow::Result<()> {
        let config = self.edge_config();
        let deps = Deps::with_control(&config)
            .await?
            .clustered(&config)
            .await?;
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(warren_edge::run(
            config,
            deps,
            Listeners {
                visitor: listener,
                tunnel: None,
                relay: None,
                tls: None,
                admin: None,
            },
            shutdown.clone(),
        ));
        self.edge = Some((shutdown, handle));
        Ok(())
    }

    /// Stops the edge (agents get GOAWAY and try to reconnect).
    pub async fn stop_edge(&mut self) -> anyhow::Result<()> {
        if let Some((shutdown, handle)) = self.edge.take() {
            shutdown.cancel();
            handle.await??;
        }
        Ok(())
    }

    /// Starts a new edge on the same address.
    pub async fn restart_edge(&mut self) -> anyhow::Result<()> {
        self.stop_edge().await?;
        self.start_edge().await
    }

    /// Starts an edge on the address of the one [`TestCluster::stop_edge`] stopped.
    pub async fn start_edge(&mut self) -> anyhow::Result<()> {
        ensure!(self.edge.is_none(), "the edge is running");
        let listener = TcpListener::bind(self.edge_addr).await?;
        self.start_edge_on(listener).await
    }

    /// Stops control (in-flight requests finish); edges and agents keep running.
    pub async fn stop_control(&mut self) -> anyhow::Result<()> {
        self.control_shutdown.cancel();
        if let Some(control) = self.control.take() {
            control.await??;
        }
        Ok(())
    }

    /// Starts control again on the same address and database.
    pub async fn start_control(&mut self) -> anyhow::Result<()> {
        ensure!(self.control.is_none(), "control is running");
        let listener = TcpListener::bind(self.control_addr).await?;
        self.state = AppState::open(self.control_config.clone()).await?;
        self.control_shutdown = CancellationToken::new();
        self.control = Some(tokio::spawn(warren_control::serve(
            listener,
            self.state.clone(),
            self.control_shutdown.clone(),
        )));
        Ok(())
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop_edge().await?;
        self.control_shutdown.cancel();
        if let Some(control) = self.control.take() {
            control.await??;
        }
        Ok(())
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some((shutdown, _)) = &self.edge {
            shutdown.cancel();
        }
        self.control_shutdown.cancel();
    }
}
