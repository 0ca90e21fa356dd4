//! An edge and agents on loopback, started through the same `run` functions the binaries use.
//!
//! Each [`TestAgent`] runs on a tokio runtime of its own, on its own thread, so that
//! [`TestAgent::kill`] can drop the whole agent at once — every task and socket — the way a
//! killed process would, while the edge and the test carry on.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warren_cli::agent::{self, AgentError, AgentEvent, AgentOptions, LocalTarget, TunnelSpec};
use warren_edge::{Deps, EdgeConfig, Listeners};

/// The token every test edge accepts.
pub const TEST_TOKEN: &str = "wrn_test_token";

/// How long helpers wait for something that should happen quickly.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// An edge on `127.0.0.1:0` with the embedded defaults.
pub struct TestEdge {
    pub addr: SocketAddr,
    /// The HTTPS listener, when started with [`TestEdge::start_tls`].
    pub tls_addr: Option<SocketAddr>,
    /// The operators' listener, when started with [`TestEdge::start_tls`].
    pub admin_addr: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl TestEdge {
    /// The settings tests start from: the test token, short timeouts.
    pub fn config() -> EdgeConfig {
        EdgeConfig {
            tokens: vec![TEST_TOKEN.to_string()],
            heartbeat_interval: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(5),
            // Shorter than a test's per-request patience (5 s), long enough for an agent
            // restarted by a test to come back.
            hold_timeout: Duration::from_secs(3),
            ..EdgeConfig::default()
        }
    }

    pub async fn start() -> anyhow::Result<TestEdge> {
        TestEdge::start_with(TestEdge::config()).await
    }

    pub async fn start_with(config: EdgeConfig) -> anyhow::Result<TestEdge> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        TestEdge::start_on(config, listener).await
    }

    /// Starts on a listener the caller bound (e.g. to restart on the same port).
    pub async fn start_on(config: EdgeConfig, listener: TcpListener) -> anyhow::Result<TestEdge> {
        let deps = Deps::embedded(&config);
        TestEdge::start_with_deps(config, deps, listener).await
    }

    /// Starts an edge connected to control: `config.control_url` and `config.control_secret`
    /// must be set (grants are verified with control's keys, sessions reported to it).
    pub async fn start_with_control(config: EdgeConfig) -> anyhow::Result<TestEdge> {
        let deps = Deps::with_control(&config).await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        TestEdge::start_with_deps(config, deps, listener).await
    }

    /// Starts with the given parts on a listener the caller bound.
    pub async fn start_with_deps(
        config: EdgeConfig,
        deps: Deps,
        listener: TcpListener,
    ) -> anyhow::Result<TestEdge> {
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let listeners = Listeners {
            visitor: listener,
            tunnel: None,
            relay: None,
            tls: None,
            admin: None,
        };
        let handle = tokio::spawn(warren_edge::run(config, deps, listeners, shutdown.clone()));
        Ok(TestEdge {
            addr,
            tls_addr: None,
            admin_addr: None,
            shutdown,
            handle,
        })
    }

    /// Starts with an HTTPS listener and an admin listener too (both on `127.0.0.1:0`), the
    /// visitor listener being the one the caller bound; with a relay key, a relay listener too.
    pub async fn start_tls(
        config: EdgeConfig,
        deps: Deps,
        visitor: TcpListener,
    ) -> anyhow::Result<TestEdge> {
        let addr = visitor.local_addr()?;
        let tls = TcpListener::bind("127.0.0.1:0").await?;
        let admin = TcpListener::bind("127.0.0.1:0").await?;
        let (tls_addr, admin_addr) = (tls.local_addr()?, admin.local_addr()?);
        // With a relay key the edge is part of a cluster: other edges relay to it.
        let relay = match config.relay_key {
            Some(_) => Some(TcpListener::bind("127.0.0.1:0").await?),
            None => None,
        };
        let shutdown = CancellationToken::new();
        let listeners = Listeners {
            visitor,
            tunnel: None,
            relay,
            tls: Some(tls),
            admin: Some(admin),
        };
        let handle = tokio::spawn(warren_edge::run(config, deps, listeners, shutdown.clone()));
        Ok(TestEdge {
            addr,
            tls_addr: Some(tls_addr),
            admin_addr: Some(admin_addr),
            shutdown,
            handle,
        })
    }

    /// The URL agents are given with `--edge`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts a graceful shutdown and waits for it to finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.handle.await?
    }

    /// Starts a graceful shutdown without waiting.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits for a shutdown begun with [`TestEdge::begin_shutdown`].
    pub async fn finished(self) -> anyhow::Result<()> {
        self.handle.await?
    }
}

/// Agent options for a tunnel from `edge` to `127.0.0.1:local_port`.
pub fn agent_options(edge: &TestEdge, local_port: u16, subdomain: Option<&str>) -> AgentOptions {
    let spec = TunnelSpec {
        local: LocalTarget {
            host: "127.0.0.1".into(),
            port: local_port,
        },
        subdomain: subdomain.map(str::to_string),
        host_header: None,
    };
    // Valid by construction: a loopback URL and one tunnel.
    AgentOptions::new(&edge.url(), TEST_TOKEN.to_string(), vec![spec])
        .expect("valid test agent options")
}

/// An agent on a runtime of its own.
pub struct TestAgent {
    pub public_url: String,
    pub hostname: String,
    events: mpsc::UnboundedReceiver<AgentEvent>,
    shutdown: CancellationToken,
    runtime: Option<tokio::runtime::Runtime>,
    result: Option<tokio::sync::oneshot::Receiver<Result<(), AgentError>>>,
}

impl TestAgent {
    /// Starts an agent for `local_port` and waits until its tunnel is ready.
    pub async fn start(
        edge: &TestEdge,
        local_port: u16,
        subdomain: Option<&str>,
    ) -> anyhow::Result<TestAgent> {
        TestAgent::start_with(agent_options(edge, local_port, subdomain)).await
    }

    pub async fn start_with(options: AgentOptions) -> anyhow::Result<TestAgent> {
        let mut agent = TestAgent::spawn(options)?;
        let ready = agent
            .wait_for(|e| matches!(e, AgentEvent::TunnelReady { .. }))
            .await;
        match ready {
            Ok(AgentEvent::TunnelReady {
                public_url,
                hostname,
                ..
            }) => {
                agent.public_url = public_url;
                agent.hostname = hostname;
                Ok(agent)
            }
            _ => match agent.result().await {
                Some(Err(e)) => Err(anyhow::anyhow!("agent failed: {e}")),
                _ => Err(anyhow::anyhow!("agent never became ready")),
            },
        }
    }

    /// Starts an agent without waiting for anything.
    pub fn spawn(options: AgentOptions) -> anyhow::Result<TestAgent> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let (tx, events) = mpsc::unbounded_channel();
        let (result_tx, result_rx) = tokio::sync::oneshot::channel();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        runtime.spawn(async move {
            let result = agent::run(options, tx, token).await;
            let _ = result_tx.send(result);
        });
        Ok(TestAgent {
            public_url: String::new(),
            hostname: String::new(),
            events,
            shutdown,
            runtime: Some(runtime),
            result: Some(result_rx),
        })
    }

    /// The next event that matches, within [`DEADLINE`].
    pub async fn wait_for(
        &mut self,
        mut matches: impl FnMut(&AgentEvent) -> bool,
    ) -> anyhow::Result<AgentEvent> {
        let wait = async {
            while let Some(event) = self.events.recv().await {
                if matches(&event) {
                    return Some(event);
                }
            }
            None
        };
        match tokio::time::timeout(DEADLINE, wait).await {
            Ok(Some(event)) => Ok(event),
            Ok(None) => Err(anyhow::anyhow!("the agent stopped before the event")),
            Err(_) => Err(anyhow::anyhow!(
                "no matching agent event within {DEADLINE:?}"
            )),
        }
    }

    /// Events received so far, without waiting.
    pub fn drain_events(&mut self) -> Vec<AgentEvent> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }

    /// How the agent ended, once it has (within [`DEADLINE`]).
    pub async fn result(&mut self) -> Option<Result<(), AgentError>> {
        let rx = self.result.take()?;
        tokio::time::timeout(DEADLINE, rx).await.ok()?.ok()
    }

    /// Asks the agent to stop cleanly and waits for it.
    pub async fn stop(mut self) -> Option<Result<(), AgentError>> {
        self.shutdown.cancel();
        self.result().await
    }

    /// Drops the agent at once, tasks and sockets, like a killed process.
    pub fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Initialises test logging once (`RUST_LOG` selects what to show).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}
