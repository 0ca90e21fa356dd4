//! The agent side of the edge: where agents connect, and the live tunnels they serve.
//!
//! - `endpoint.rs`: the WebSocket upgrade at `/_warren/tunnel` (on the edge's own domain, or on
//!   the agents-only listener).
//! - `attach.rs`: one session's life: handshake, authentication, route claims, serving, cleanup.
//! - `dynamic.rs`: tunnels opened and closed on a live session (`warren mcp`).
//! - `lane.rs`: an extra connection of the same agent joining its session (`--sessions N`).
//! - `lease.rs`: renews this edge's route leases, re-registers lost ones, drops stale tunnels.
//! - `drain.rs`: the sessions' part of a graceful shutdown (make before break).
//! - `registry.rs`: the tunnels and sessions live on this edge.
//! - `upstream.rs`: sending a visitor request down a tunnel, over pooled streams.
//! - `request_log.rs`: the per-request log lines sent to the agent, in batches.
//!
//! Everything here works from [`Agents`], the handles the agent side needs; nothing here
//! knows about visitors' connections, the relay, or control (sessions are reported through
//! [`SessionReports`], which the control link implements).

pub mod attach;
pub mod drain;
pub mod dynamic;
pub mod endpoint;
pub mod held;
pub mod lane;
pub mod lease;
pub mod registry;
pub mod request_log;
pub mod upstream;

pub use registry::{LiveTunnel, Registry};

use crate::auth::Authenticator;
use crate::config::EdgeConfig;
use crate::lifecycle::Lifecycle;
use crate::limits::AuthThrottle;
use crate::routes::RouteTable;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where the sessions of granted tunnels are reported (control, through `control_link.rs`).
pub trait SessionReports: Send + Sync + 'static {
    /// A session began serving the granted tunnel `tunnel`.
    fn started(
        &self,
        tunnel: &Arc<LiveTunnel>,
        token_id: &str,
        agent_version: &str,
        agent_addr: &str,
    );
    /// The session stopped serving `tunnel`, for `reason`; its counters are final.
    fn ended(&self, tunnel: &LiveTunnel, reason: &str);
}

/// The agent side's shared handles.
pub struct Agents {
    pub config: Arc<EdgeConfig>,
    pub edge_id: String,
    pub registry: Arc<Registry>,
    pub routes: Arc<dyn RouteTable>,
    pub auth: Arc<dyn Authenticator>,
    pub reports: Option<Arc<dyn SessionReports>>,
    /// Control's answer to "does one of your accounts hold this name?", asked for sessions of
    /// static tokens on an edge that also has control.
    pub held_names: Option<Arc<dyn held::HeldNames>>,
    pub life: Lifecycle,
    /// Failed authentications per address (`--auth-failures-per-minute`).
    pub auth_throttle: AuthThrottle,
    /// The visitor listeners' addresses, for public URLs.
    pub visitor_addr: Option<SocketAddr>,
    pub tls_addr: Option<SocketAddr>,
}

impl Agents {
    /// The public URL of a tunnel hostname: `https` URLs name the TLS listener's port (unless
    /// `--public-port` says otherwise).
    pub fn public_url(&self, hostname: &str) -> String {
        let listener = match (self.config.public_scheme.as_str(), self.tls_addr) {
            ("https", Some(tls)) => Some(tls),
            _ => self.visitor_addr,
        };
        self.config.public_url(hostname, listener)
    }
}
