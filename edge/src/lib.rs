//! The Warren edge: the public relay node. Visitors connect to it over HTTP; agents connect to
//! it over WebSocket and hold tunnel sessions; it routes each visitor request by hostname to
//! the session that serves it and streams the exchange both ways.
//!
//! # Layout (in the order a visitor's request travels)
//! - `accept.rs`: accept loops, connection cap.
//! - `visitor/serve.rs` → `visitor/dispatch.rs` → `host.rs` → `tunnel/registry.rs` →
//!   `visitor/forward.rs` → `tunnel/upstream.rs`: a request from the socket to a tunnel stream.
//!   The agent (`cli/src/agent/`) takes it from there to the local service.
//! - `visitor/error_page.rs`: every failure becomes a response here; `error.rs` classifies them.
//! - `tunnel/endpoint.rs` → `tunnel/attach.rs`: where agents connect and how a session lives.
//! - `routes.rs`: the cluster-wide route table; `auth.rs`: agent credentials; `warren_proto::names`:
//!   subdomain rules.
//! - `config.rs`, `state.rs`: settings and shared state; `shutdown.rs`: graceful shutdown.
#![forbid(unsafe_code)]

pub mod accept;
pub mod auth;
pub mod config;
pub mod error;
pub mod host;
pub mod routes;
pub mod shutdown;
pub mod state;
pub mod tunnel;
pub mod visitor;

pub use config::EdgeConfig;
pub use state::EdgeState;

use auth::{Authenticator, StaticTokens};
use routes::{MemoryRouteTable, RouteTable};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use visitor::dispatch::Listener;

/// Listeners, bound by the caller (tests bind `127.0.0.1:0`).
pub struct Listeners {
    /// Visitors, and agents too (at `/_warren/tunnel` on the edge's own domain).
    pub visitor: TcpListener,
    /// Optionally, a listener for agents only.
    pub tunnel: Option<TcpListener>,
}

/// The edge's pluggable parts.
pub struct Deps {
    pub routes: Arc<dyn RouteTable>,
    pub auth: Arc<dyn Authenticator>,
}

impl Deps {
    /// The embedded defaults: an in-process route table and the configured static tokens.
    pub fn embedded(config: &EdgeConfig) -> Deps {
        Deps {
            routes: Arc::new(MemoryRouteTable::new()),
            auth: Arc::new(StaticTokens::new("local", &config.tokens)),
        }
    }
}

/// Runs an edge until `shutdown` is cancelled, then drains: no new connections, GOAWAY to
/// every agent, in-flight requests finish within `shutdown_grace`.
pub async fn run(
    config: EdgeConfig,
    deps: Deps,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    let visitor_addr = listeners.visitor.local_addr().ok();
    let state = Arc::new(EdgeState::new(
        config,
        deps.routes,
        deps.auth,
        visitor_addr,
        shutdown.clone(),
    ));
    tracing::info!(edge = %state.edge_id, visitor = ?visitor_addr, domain = %state.config.domain, "edge started");
    state.tasks.spawn(accept::accept_loop(
        state.clone(),
        listeners.visitor,
        Listener::Visitor,
    ));
    if let Some(tunnel) = listeners.tunnel {
        state
            .tasks
            .spawn(accept::accept_loop(state.clone(), tunnel, Listener::Tunnel));
    }
    shutdown.cancelled().await;
    shutdown::drain(&state).await;
    Ok(())
}
