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
//! - `grant/`: grants signed by control, verified offline with control's keys (JWKS);
//!   `control_link.rs`: session reports to control and the tunnels it closes;
//!   `control_http.rs`: the bounded HTTP client both use.
//! - `tls/`: the HTTPS listener's handshake, certificates by SNI, ACME and the shared
//!   certificate store; `admin.rs`: certificate expiry for operators.
//! - `config.rs`, `state.rs`: settings and shared state; `shutdown.rs`: graceful shutdown.
#![forbid(unsafe_code)]

pub mod accept;
pub mod admin;
pub mod auth;
pub mod config;
pub mod control_http;
pub mod control_link;
pub mod error;
pub mod grant;
pub mod host;
pub mod relay;
pub mod routes;
pub mod shutdown;
pub mod state;
pub mod tls;
pub mod tunnel;
pub mod visitor;

pub use config::EdgeConfig;
pub use state::EdgeState;

use auth::{Authenticator, EdgeAuth, StaticTokens};
use control_http::ControlHttp;
use control_link::ControlLink;
use grant::{ClosedTunnels, GrantVerifier};
use relay::client::Relay;
use relay::directory::{Directory, EdgeEntry};
use routes::redis::RedisConnection;
use routes::{MemoryRouteTable, RedisRouteTable, RouteTable};
use std::sync::Arc;
use std::time::Duration;
use tls::store::{CertStore, RedisCertStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use visitor::dispatch::Listener;

/// Listeners, bound by the caller (tests bind `127.0.0.1:0`).
pub struct Listeners {
    /// Visitors, and agents too (at `/_warren/tunnel` on the edge's own domain).
    pub visitor: TcpListener,
    /// Optionally, a listener for agents only.
    pub tunnel: Option<TcpListener>,
    /// In a cluster: the internal listener other edges relay visitor requests to. Bind it to
    /// an address visitors cannot reach.
    pub relay: Option<TcpListener>,
    /// HTTPS for visitors (with `--tls-cert` or ACME). With it, the visitor listener redirects
    /// to HTTPS except ACME HTTP-01 challenges and the edge's own `/_warren/*` endpoints.
    pub tls: Option<TcpListener>,
    /// Operators only: certificate expiry (`/_warren/certs`, `/metrics`), health.
    pub admin: Option<TcpListener>,
}

/// The edge's pluggable parts.
pub struct Deps {
    pub routes: Arc<dyn RouteTable>,
    pub auth: Arc<dyn Authenticator>,
    /// Reports to control; `None` for an edge without control.
    pub control: Option<Arc<ControlLink>>,
    /// In a cluster: the edge directory and relay client (`relay/`).
    pub relay: Option<Relay>,
    /// Where certificates and ACME accounts are kept: Redis in a cluster, else in process.
    pub cert_store: Option<Arc<dyn CertStore>>,
}

impl Deps {
    /// The embedded defaults: an in-process route table and the configured static tokens.
    pub fn embedded(config: &EdgeConfig) -> Deps {
        Deps {
            routes: Arc::new(MemoryRouteTable::new()),
            auth: Arc::new(StaticTokens::new("local", &config.tokens)),
            control: None,
            relay: None,
            cert_store: None,
        }
    }

    /// An edge connected to control (`control_url` and `control_secret` set): grants verified
    /// with control's keys, sessions reported to control, plus the configured static tokens if
    /// any. Control being down is not fatal: the keys are fetched again when a grant needs them.
    pub async fn with_control(config: &EdgeConfig) -> anyhow::Result<Deps> {
        config.validate().map_err(anyhow::Error::msg)?;
        let (Some(url), Some(secret)) = (&config.control_url, &config.control_secret) else {
            anyhow::bail!("Deps::with_control needs control_url and control_secret");
        };
        let http = ControlHttp::new(url).map_err(anyhow::Error::msg)?;
        let closed = Arc::new(ClosedTunnels::default());
        let grants =
            GrantVerifier::new(http.clone(), &config.region, &config.domain, closed.clone());
        match grants.refresh().await {
            Ok(keys) => tracing::info!(keys, control = %url, "control's signing keys loaded"),
            Err(e) => {
                tracing::warn!(error = %e, "control's signing keys are not available yet; grants are refused until they are")
            }
        }
        grants.spawn_refresher();
        let tokens =
            (!config.tokens.is_empty()).then(|| StaticTokens::new("local", &config.tokens));
        Ok(Deps {
            routes: Arc::new(MemoryRouteTable::new()),
            auth: Arc::new(EdgeAuth {
                tokens,
                grants: Some(grants),
            }),
            control: Some(Arc::new(ControlLink::new(http, secret.clone(), closed))),
            relay: None,
            cert_store: None,
        })
    }

    /// Control if configured, else the embedded defaults; refuses an edge that would accept
    /// no agent at all.
    pub async fn from_config(config: &EdgeConfig) -> anyhow::Result<Deps> {
        let deps = if config.has_control() {
            Deps::with_control(config).await?
        } else {
            Deps::embedded(config)
        };
        if config.tokens.is_empty() && !config.has_control() {
            anyhow::bail!(
                "no way for agents to authenticate: pass --token (or WARREN_EDGE_TOKENS) for \
                 static tokens, and/or --control-url with --control-secret for grants from control"
            );
        }
        deps.clustered(config).await
    }

    /// Makes these deps a cluster member's when `--redis-url` is set: routes and the edge
    /// directory in Redis, relaying to other edges with `--relay-key`.
    pub async fn clustered(mut self, config: &EdgeConfig) -> anyhow::Result<Deps> {
        let (Some(url), Some(key)) = (&config.redis_url, &config.relay_key) else {
            return Ok(self);
        };
        let connection = RedisConnection::connect(url).await?;
        if let Some(control) = &self.control {
            control.use_redis(connection.clone(), url);
        }
        self.routes = Arc::new(RedisRouteTable::new(
            connection.clone(),
            routes::DEFAULT_LEASE,
        ));
        self.cert_store = Some(Arc::new(RedisCertStore::new(connection.clone())));
        self.relay = Some(Relay::new(Directory::new(connection), key).map_err(anyhow::Error::msg)?);
        Ok(self)
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
    let mut state = EdgeState::new(
        config,
        deps.routes,
        deps.auth,
        deps.control.clone(),
        visitor_addr,
        shutdown.clone(),
    )
    .with_relay(deps.relay);
    if let Some(listener) = &listeners.tls {
        let tls = tls::setup(
            &state.config,
            state.routes.clone(),
            deps.cert_store,
            &state.edge_id,
        )?;
        state = state.with_tls(Arc::new(tls), listener.local_addr().ok());
    }
    let state = Arc::new(state);
    tracing::info!(edge = %state.edge_id, visitor = ?visitor_addr, domain = %state.config.domain, "edge started");
    state.tasks.spawn(accept::accept_loop(
        state.clone(),
        listeners.visitor,
        Listener::Visitor,
    ));
    if let Some(tls_listener) = listeners.tls {
        state.tasks.spawn(accept::accept_loop(
            state.clone(),
            tls_listener,
            Listener::Tls,
        ));
    }
    if let Some(manager) = state.tls.as_ref().and_then(|t| t.manager.clone()) {
        state.tasks.spawn(manager.run(shutdown.clone()));
    }
    if let Some(admin) = listeners.admin {
        state
            .tasks
            .spawn(accept::accept_loop(state.clone(), admin, Listener::Admin));
    }
    if let Some(tunnel) = listeners.tunnel {
        state
            .tasks
            .spawn(accept::accept_loop(state.clone(), tunnel, Listener::Tunnel));
    }
    let reporter = deps.control.map(|link| {
        let stop = CancellationToken::new();
        let task = tokio::spawn(link.clone().run(state.clone(), stop.clone()));
        (link, stop, task)
    });
    state.tasks.spawn(tunnel::lease::keep_routes(state.clone()));
    if let Some(relay_listener) = listeners.relay {
        let advertise = match &state.config.relay_advertise {
            Some(addr) => addr.clone(),
            None => relay_listener.local_addr()?.to_string(),
        };
        state.tasks.spawn(accept::accept_loop(
            state.clone(),
            relay_listener,
            Listener::Relay,
        ));
        state.tasks.spawn(announce(state.clone(), advertise));
    }
    shutdown.cancelled().await;
    let began = tokio::time::Instant::now();
    shutdown::drain(&state).await;
    if let Some(relay) = &state.relay
        && let Err(e) = relay.directory.withdraw(&state.edge_id).await
    {
        tracing::warn!(error = %e, "could not withdraw from the edge directory; it expires by itself");
    }
    if let Some((link, stop, task)) = reporter {
        stop.cancel();
        let _ = task.await;
        // The sessions just drained left their `Ended` events: send them within what is left
        // of the grace period (at least a second, so they get one attempt).
        let deadline = (began + state.config.shutdown_grace)
            .max(tokio::time::Instant::now() + Duration::from_secs(1));
        link.flush(&state, deadline).await;
    }
    Ok(())
}

/// Keeps this edge in the directory so others can relay to it, until shutdown begins.
async fn announce(state: Arc<EdgeState>, relay_addr: String) {
    let Some(relay) = &state.relay else {
        return;
    };
    let entry = EdgeEntry {
        edge_id: state.edge_id.clone(),
        region: state.config.region.clone(),
        relay_addr,
    };
    // Often enough that a Redis restart loses this edge for two seconds at most.
    let mut ticker = tokio::time::interval(relay::directory::ANNOUNCE_EVERY);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(e) = relay.directory.announce(&entry).await {
            tracing::warn!(error = %e, "could not announce this edge in the directory");
        }
    }
}
