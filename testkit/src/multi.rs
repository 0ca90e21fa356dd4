//! Several edges of one cluster on loopback addresses (127.0.0.2, 127.0.0.3, ...), sharing a
//! real Redis: routes and the edge directory in Redis, relays between them.

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
        let config = EdgeConfig {
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
        let addr = visitor.local_addr()?;
        let relay_addr = relay.local_addr()?;
        let deps = Deps::from_config(&config).await?;
        let shutdown = CancellationToken::new();
        let listeners = Listeners {
            visitor,
            tunnel: None,
            relay: Some(relay),
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
