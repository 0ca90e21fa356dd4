//! Several edges of one cluster on loopback addresses (127.0.0.2, 127.0.0.3, ...), sharing a
//! real Redis: routes and the edge directory in Redis, relays between them. [`ClusterEdge`] runs
//! in the test's runtime; [`EdgeProcess`] runs the `warren-edge` binary as a child process
//! (for `kill -9` and SIGTERM).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warren_cli::agent::{AgentOptions, LocalTarget, TunnelSpec};
use warren_edge::{Deps, EdgeConfig, Listeners};

use crate::cluster::TEST_TOKEN;

/// The relay key every test cluster shares.
pub const TEST_RELAY_KEY: &str = "test-relay-key-0123456789";

/// One edge of a cluster.
pub struct ClusterEdge {
    pub id: String,
    pub region: String,
    pub domain: String,
    /// Visitors and agents.
    pub addr: SocketAddr,
    /// The internal relay listener.
    pub relay_addr: SocketAddr,
    pub shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

/// Where an edge runs and what it serves.
pub struct EdgeSpec<'a> {
    pub id: &'a str,
    pub ip: &'a str,
    pub region: &'a str,
    pub domain: &'a str,
    /// The other regions' domains.
    pub serve_domains: &'a [&'a str],
    pub redis_url: &'a str,
}

impl ClusterEdge {
    pub async fn start(spec: EdgeSpec<'_>) -> anyhow::Result<ClusterEdge> {
        let ip: IpAddr = spec.ip.parse()?;
        let visitor = TcpListener::bind((ip, 0)).await?;
        let relay = TcpListener::bind((ip, 0)).await?;
        ClusterEdge::start_on(spec, visitor, relay).await
    }

    /// Starts on listeners the caller bound (e.g. to restart on the same ports).
    pub async fn start_on(
        spec: EdgeSpec<'_>,
        visitor: TcpListener,
        relay: TcpListener,
    ) -> anyhow::Result<ClusterEdge> {
        ClusterEdge::start_tuned(spec, visitor, relay, |_| {}).await
    }

    /// Like [`ClusterEdge::start_on`], with the configuration changed by `tune` first (e.g. a
    /// small connection cap).
    pub async fn start_tuned(
        spec: EdgeSpec<'_>,
        visitor: TcpListener,
        relay: TcpListener,
        tune: impl FnOnce(&mut EdgeConfig),
    ) -> anyhow::Result<ClusterEdge> {
        let mut config = EdgeConfig {
            edge_id: Some(spec.id.to_string()),
            region: spec.region.to_string(),
            domain: spec.domain.to_string(),
            serve_domains: spec.serve_domains.iter().map(|d| d.to_string()).collect(),
            redis_url: Some(spec.redis_url.to_string()),
            relay_key: Some(TEST_RELAY_KEY.to_string()),
            tokens: vec![TEST_TOKEN.to_string()],
            heartbeat_interval: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(5),
            ..EdgeConfig::default()
        };
        tune(&mut config);
        let addr = visitor.local_addr()?;
        let relay_addr = relay.local_addr()?;
        let deps = Deps::from_config(&config).await?;
        let shutdown = CancellationToken::new();
        let listeners = Listeners {
            visitor,
            tunnel: None,
            relay: Some(relay),
            tls: None,
            admin: None,
        };
        let handle = tokio::spawn(warren_edge::run(config, deps, listeners, shutdown.clone()));
        Ok(ClusterEdge {
            id: spec.id.to_string(),
            region: spec.region.to_string(),
            domain: spec.domain.to_string(),
            addr,
            relay_addr,
            shutdown,
            handle,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Agent options for a tunnel through this edge to `127.0.0.1:local_port`.
    pub fn agent_options(&self, local_port: u16, subdomain: &str) -> AgentOptions {
        let spec = TunnelSpec {
            local: LocalTarget {
                host: "127.0.0.1".into(),
                port: local_port,
            },
            subdomain: Some(subdomain.to_string()),
            host_header: None,
        };
        // Valid by construction: a loopback URL and one tunnel.
        AgentOptions::new(&self.url(), TEST_TOKEN.to_string(), vec![spec])
            .expect("valid test agent options")
    }

    /// Graceful shutdown, waited for.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.handle.await?
    }
}

/// A `warren-edge` binary running as a child process, so a test can `kill -9` it or send it
/// SIGTERM like an operator would. Killed when dropped.
pub struct EdgeProcess {
    pub id: String,
    /// Visitors and agents.
    pub addr: SocketAddr,
    pub relay_addr: SocketAddr,
    child: std::process::Child,
}

/// What an [`EdgeProcess`] is started with.
pub struct EdgeProcessSpec<'a> {
    pub id: &'a str,
    pub ip: &'a str,
    pub region: &'a str,
    pub domain: &'a str,
    pub redis_url: &'a str,
    /// The port public URLs name (the balancer's, in front of the region).
    pub public_port: Option<u16>,
    /// Extra arguments, e.g. `["--shutdown-grace", "10s"]`.
    pub extra: &'a [&'a str],
}

/// The `warren-edge` binary next to the running test executable (`target/<profile>/`).
pub fn edge_binary() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> → target/<profile>/warren-edge
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| anyhow::anyhow!("cannot tell the target directory from {exe:?}"))?;
    let binary = dir.join(format!("warren-edge{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        anyhow::bail!(
            "{} does not exist: run `cargo build -p warren-edge` (same profile and target \
             directory as the tests), then run the tests again",
            binary.display()
        );
    }
    Ok(binary)
}

impl EdgeProcess {
    /// Starts the edge and waits until it answers `/readyz`.
    pub async fn start(spec: EdgeProcessSpec<'_>) -> anyhow::Result<EdgeProcess> {
        let binary = edge_binary()?;
        let ip: IpAddr = spec.ip.parse()?;
        // Ports chosen by the OS, released for the child to bind.
        let addr = std::net::TcpListener::bind((ip, 0))?.local_addr()?;
        let relay_addr = std::net::TcpListener::bind((ip, 0))?.local_addr()?;
        let mut command = std::process::Command::new(binary);
        command
            .args(["--listen", &addr.to_string()])
            .args(["--relay-listen", &relay_addr.to_string()])
            .args(["--redis-url", spec.redis_url])
            .args(["--relay-key", TEST_RELAY_KEY])
            .args(["--token", TEST_TOKEN])
            .args(["--edge-id", spec.id])
            .args(["--region", spec.region])
            .args(["--domain", spec.domain])
            .args(["--heartbeat-interval", "500ms"])
            .args(spec.extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        if let Some(port) = spec.public_port {
            command.args(["--public-port", &port.to_string()]);
        }
        let child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start warren-edge: {e}"))?;
        let mut edge = EdgeProcess {
            id: spec.id.to_string(),
            addr,
            relay_addr,
            child,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((status, _, _)) = crate::client::get(addr, spec.domain, "/readyz").await
                && status.is_success()
            {
                return Ok(edge);
            }
            if let Some(status) = edge.child.try_wait()? {
                anyhow::bail!("warren-edge {} exited at start: {status}", spec.id);
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!("warren-edge {} did not become ready within 20 s", spec.id);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: the process dies at once, sockets and all.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// `kill -TERM`: the edge starts draining (a second one makes it exit at once).
    pub fn terminate(&self) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed: {status}");
        Ok(())
    }

    /// Waits up to `within` for the process to exit; its exit status, or `None` if it is
    /// still running.
    pub async fn wait_exit(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if std::time::Instant::now() > deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-alone `warren-edge` binary (embedded routes, static tokens, no Redis or control)
/// as a child process, with one listener for visitors and agents: `/proc/PID/status` then
/// counts the edge's memory alone. Killed when dropped.
pub struct StandaloneEdge {
    /// Visitors and agents.
    pub addr: SocketAddr,
    child: std::process::Child,
}

impl StandaloneEdge {
    /// Starts `binary` (the edge next to the test executable if `None`) accepting `token`,
    /// with `extra` arguments, and waits until it accepts connections.
    pub async fn start(
        binary: Option<std::path::PathBuf>,
        token: &str,
        extra: &[&str],
    ) -> anyhow::Result<StandaloneEdge> {
        let binary = match binary {
            Some(path) => path,
            None => edge_binary()?,
        };
        // A port chosen by the OS, released for the child to bind.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = std::process::Command::new(binary)
            .args(["--listen", &addr.to_string()])
            .args(extra)
            .env("WARREN_EDGE_TOKENS", token)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()?;
        let edge = StandaloneEdge { addr, child };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "warren-edge did not listen on {addr} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(edge)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The edge's resident memory now, in KiB (Linux).
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| anyhow::anyhow!("no VmRSS line for warren-edge"))
    }
}

impl Drop for StandaloneEdge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
