//! The Warren edge: the public relay node. Visitors connect to it over HTTP(S); agents connect
//! to it over WebSocket and hold tunnel sessions; it routes each visitor request by hostname to
//! the session that serves it and streams the exchange both ways.
//!
//! # Layout (in the order a visitor's request travels)
//! - `accept.rs`: accept loops; `limits.rs`: admission (a cap per listener and per client
//!   address; what is over them is refused cheaply).
//! - `visitor/serve.rs`: one visitor connection (TLS first on the HTTPS listener:
//!   `tls/accept.rs`). HTTP/1.1 requests for tunnels served here take the proxy core:
//!   `visitor/h1/mod.rs` (read and route a head) → `h1/exchange.rs` (the exchange over a
//!   tunnel stream) → `tunnel/upstream.rs` (pooled streams). Everything else — HTTP/2,
//!   upgrades, the edge's own endpoints, tunnels held by other edges — takes the general path
//!   through hyper: `visitor/dispatch.rs` → `host.rs` → `tunnel/registry.rs` →
//!   `visitor/forward.rs` → `tunnel/upstream.rs`, or `visitor/hold.rs` → `relay/client.rs` to
//!   the owning edge, whose `visitor/relayed.rs` forwards it. The agent (`cli/src/agent/`)
//!   takes it from there to the local service.
//! - `forwarding/`: what the edge adds, removes and rewrites on the way, for both paths.
//! - `visitor/error_page.rs`: every failure becomes a response here; `error.rs` classifies them.
//! - `tunnel/endpoint.rs` → `tunnel/attach.rs`: where agents connect and how a session lives.
//! - `routes/`: the cluster-wide route table; `auth.rs`: agent credentials
//!   (`static_tokens.rs`: the edge's own tokens, one account each);
//!   `warren_proto::names`: subdomain rules.
//! - `grant/`: grants signed by control, verified offline with control's keys (JWKS);
//!   `control_link.rs`: session reports to control and the tunnels it closes;
//!   `control_http.rs`: the bounded HTTP client both use.
//! - `tls/`: the HTTPS listener's handshake, certificates by SNI, ACME and the shared
//!   certificate store; `admin.rs`: the operators' listener.
//! - `config.rs`: settings (`secrets.rs`: secret flags read from files); `lifecycle.rs`: draining and closing; `body.rs`: response bodies.
//!
//! Modules depend downwards only: `visitor` on `tunnel`, `relay`, `forwarding`; `tunnel` on
//! `routes`, `auth`; nothing below imports what is above it. Each part takes the handles it
//! needs (`tunnel::Agents`, `visitor::Visitors`), composed here in [`run`].
#![forbid(unsafe_code)]

pub(crate) mod accept;
pub(crate) mod admin;
pub mod auth;
pub(crate) mod body;
pub mod config;
pub mod control_http;
pub mod control_link;
pub(crate) mod duration;
pub mod error;
pub(crate) mod forwarding;
// Fuzz harnesses of the HTTP/1 parsers; the fuzz crate (`fuzz/`) compiles the file itself.
#[cfg(test)]
mod fuzzing;
pub mod grant;
pub(crate) mod host;
pub(crate) mod lifecycle;
pub(crate) mod limits;
pub mod relay;
pub mod routes;
pub mod secrets;
pub mod static_tokens;
pub mod tls;
pub(crate) mod tunnel;
pub(crate) mod visitor;

pub use config::EdgeConfig;

use auth::{Authenticator, EdgeAuth, StaticTokens};
use control_http::ControlHttp;
use control_link::ControlLink;
use grant::{ClosedTunnels, GrantVerifier};
use lifecycle::Lifecycle;
use limits::Listener;
use relay::client::Relay;
use relay::directory::{Directory, EdgeEntry};
use routes::redis::RedisConnection;
use routes::{MemoryRouteTable, RedisRouteTable, RouteTable};
use std::sync::Arc;
use std::time::Duration;
use tls::store::{CertStore, RedisCertStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tunnel::{Agents, Registry, SessionReports};
use visitor::Visitors;

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

/// The configured static tokens; invalid ones are logged and none accepted (fail closed).
/// `Deps::from_config`, what the binary uses, refuses to start on them instead.
fn static_tokens_or_none(config: &EdgeConfig) -> StaticTokens {
    StaticTokens::from_sources(&config.tokens, config.tokens_file.as_deref()).unwrap_or_else(|e| {
        tracing::error!(error = %control_http::error_chain(&e), "static tokens refused; this edge accepts none");
        StaticTokens::default()
    })
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
            auth: Arc::new(static_tokens_or_none(config)),
            control: None,
            relay: None,
            cert_store: None,
        }
    }

    /// An edge connected to control (`control_url` and `control_secret` set): grants verified
    /// with control's keys, sessions reported to control, plus the configured static tokens if
    /// any. Control being down is not fatal: the keys are fetched again when a grant needs them.
    pub async fn with_control(config: &EdgeConfig) -> anyhow::Result<Deps> {
        config.validate()?;
        let (Some(url), Some(secret)) = (&config.control_url, &config.control_secret) else {
            anyhow::bail!("Deps::with_control needs control_url and control_secret");
        };
        let http = ControlHttp::new(url, &config.control_trust())?;
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
        let tokens = StaticTokens::from_sources(&config.tokens, config.tokens_file.as_deref())?;
        let tokens = (!tokens.is_empty()).then_some(tokens);
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
        let tokens = StaticTokens::from_sources(&config.tokens, config.tokens_file.as_deref())?;
        if tokens.is_empty() && !config.has_control() {
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
        self.relay = Some(Relay::new(Directory::new(connection), key)?);
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
    config.validate()?;
    let config = Arc::new(config);
    let edge_id = config
        .edge_id
        .clone()
        .unwrap_or_else(|| format!("e_{:08x}", rand::random::<u32>()));
    let life = Lifecycle::new(shutdown.clone());
    let visitor_addr = listeners.visitor.local_addr().ok();
    let tls_addr = listeners.tls.as_ref().and_then(|l| l.local_addr().ok());
    let tls = match &listeners.tls {
        Some(_) => {
            let domains: Vec<String> = config.domains().map(str::to_string).collect();
            let tls = tls::setup(
                &config.tls,
                &domains,
                deps.routes.clone(),
                deps.cert_store,
                &edge_id,
            )?;
            Some(Arc::new(tls))
        }
        None => None,
    };
    let registry = Arc::new(Registry::default());
    let agents = Arc::new(Agents {
        config: config.clone(),
        edge_id: edge_id.clone(),
        registry: registry.clone(),
        routes: deps.routes,
        auth: deps.auth,
        reports: deps
            .control
            .clone()
            .map(|link| link as Arc<dyn SessionReports>),
        held_names: deps
            .control
            .clone()
            .map(|link| link as Arc<dyn tunnel::held::HeldNames>),
        life: life.clone(),
        auth_throttle: limits::AuthThrottle::new(config.auth_failures_per_minute),
        visitor_addr,
        tls_addr,
    });
    let trusted = forwarding::client::TrustedProxies::parse(&config.trusted_proxies)
        .map_err(anyhow::Error::msg)?;
    let limits = limits::ConnectionLimits::new(limits::Caps {
        visitors: config.max_connections,
        agents: config.max_agent_connections,
        relay: config.max_relay_connections,
        admin: config.max_admin_connections,
        per_address: config.max_connections_per_ip,
        limit_loopback: config.limit_loopback,
    });
    let visitors = Arc::new(Visitors::new(
        agents.clone(),
        deps.relay,
        tls,
        tls_addr,
        trusted,
        limits,
    ));
    tracing::info!(edge = %edge_id, visitor = ?visitor_addr, domain = %config.domain, "edge started");
    let tasks = &life.tasks;
    tasks.spawn(accept::accept_loop(
        visitors.clone(),
        listeners.visitor,
        Listener::Visitor,
    ));
    if let Some(tls_listener) = listeners.tls {
        tasks.spawn(accept::accept_loop(
            visitors.clone(),
            tls_listener,
            Listener::Tls,
        ));
    }
    if let Some(manager) = visitors.tls.as_ref().and_then(|t| t.manager.clone()) {
        tasks.spawn(manager.run(shutdown.clone()));
    }
    if let Some(admin) = listeners.admin {
        tasks.spawn(accept::accept_loop(
            visitors.clone(),
            admin,
            Listener::Admin,
        ));
    }
    if let Some(tunnel) = listeners.tunnel {
        tasks.spawn(accept::accept_loop(
            visitors.clone(),
            tunnel,
            Listener::Tunnel,
        ));
    }
    let reporter = deps.control.map(|link| {
        let stop = CancellationToken::new();
        let task = tokio::spawn(link.clone().run(
            (edge_id.clone(), config.region.clone()),
            registry.clone(),
            stop.clone(),
        ));
        (link, stop, task)
    });
    tasks.spawn(tunnel::lease::keep_routes(agents.clone()));
    if let Some(relay_listener) = listeners.relay {
        let advertise = match &config.relay_advertise {
            Some(addr) => addr.clone(),
            None => relay_listener.local_addr()?.to_string(),
        };
        tasks.spawn(accept::accept_loop(
            visitors.clone(),
            relay_listener,
            Listener::Relay,
        ));
        tasks.spawn(announce(visitors.clone(), advertise));
    }
    shutdown.cancelled().await;
    let began = tokio::time::Instant::now();
    drain(&agents, visitors.relay.is_some()).await;
    if let Some(relay) = &visitors.relay
        && let Err(e) = relay.directory.withdraw(&edge_id).await
    {
        tracing::warn!(error = %e, "could not withdraw from the edge directory; it expires by itself");
    }
    if let Some((link, stop, task)) = reporter {
        stop.cancel();
        let _ = task.await;
        // The sessions just drained left their `Ended` events: send them within what is left
        // of the grace period (at least a second, so they get one attempt).
        let deadline = (began + config.shutdown_grace)
            .max(tokio::time::Instant::now() + Duration::from_secs(1));
        link.flush(&registry, deadline).await;
    }
    Ok(())
}

/// The edge's graceful shutdown: the accept loops have stopped (they watch `draining`),
/// visitor connections finish their current request, agents move elsewhere
/// (`tunnel/drain.rs`); after the grace period whatever is left is closed.
async fn drain(agents: &Arc<Agents>, clustered: bool) {
    tunnel::drain::sessions(agents, clustered);
    let life = &agents.life;
    life.tasks.close();
    if tokio::time::timeout(agents.config.shutdown_grace, life.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing what is left");
        life.closing.cancel();
        tunnel::drain::close_all(agents);
        // The closed sessions' tasks clean up (release routes, queue their `Ended` reports)
        // as soon as they notice; give them a moment.
        let _ = tokio::time::timeout(Duration::from_secs(1), life.tasks.wait()).await;
    }
    tracing::info!("edge stopped");
}

/// Keeps this edge in the directory so others can relay to it, until shutdown begins.
async fn announce(visitors: Arc<Visitors>, relay_addr: String) {
    let Some(relay) = &visitors.relay else {
        return;
    };
    let entry = EdgeEntry {
        edge_id: visitors.agents.edge_id.clone(),
        region: visitors.config.region.clone(),
        relay_addr,
    };
    // Often enough that a Redis restart loses this edge for two seconds at most.
    let mut ticker = tokio::time::interval(relay::directory::ANNOUNCE_EVERY);
    loop {
        tokio::select! {
            () = visitors.life.draining.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(e) = relay.directory.announce(&entry).await {
            tracing::warn!(error = %e, "could not announce this edge in the directory");
        }
    }
}
