//! One agent session from handshake to cleanup: read HELLO, authenticate, claim each tunnel's
//! route, answer WELCOME, serve until the session ends, then release exactly what it held.

use crate::auth::Identity;
use crate::routes::{Claimed, Route, RouteError};
use crate::tunnel::Agents;
use crate::tunnel::LiveTunnel;
use crate::tunnel::dynamic::{Dynamic, Opener};
use crate::tunnel::registry::{Counters, Lanes};
use crate::tunnel::request_log::{LogFormat, RequestLogQueue};
use crate::tunnel::upstream::Pool;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use warren_proto::control::{
    Event, Hello, LaneKey, MAX_TUNNELS_PER_SESSION, Reject, RejectCode, TunnelProtocol,
    TunnelReady, TunnelRequest, Welcome,
};
use warren_proto::error::GoAwayCode;
use warren_proto::mux::{Heartbeat, Role};
use warren_proto::names::Subdomain;
use warren_proto::{Mux, Settings};
use warren_session::handshake::{self, HandshakeError};
use warren_session::{Session, SessionEvent};

pub(crate) type Ws = warren_session::WebSocket<TokioIo<Upgraded>>;

/// A tunnel the HELLO (or an `open_tunnel`) asked for, with its hostname decided.
pub(crate) struct Planned {
    pub(crate) id: warren_proto::TunnelId,
    pub(crate) hostname: String,
    pub(crate) host_header: Option<String>,
}

pub async fn run(agents: Arc<Agents>, mut ws: Ws, peer: SocketAddr) {
    let hello = match handshake::read_hello(&mut ws, agents.config.handshake_timeout).await {
        Ok(hello) => hello,
        Err(e) => return refuse_handshake(&mut ws, e, peer).await,
    };
    if agents.auth_throttle.is_blocked(peer.ip()) {
        tracing::info!(agent = %peer, "agent refused: too many failed authentications from its address");
        let reject = Reject::new(
            RejectCode::Unauthorized,
            "too many failed authentications from this address: check the token, then try \
             again in a minute",
        );
        let _ = handshake::send_reject(&mut ws, &reject).await;
        return;
    }
    let identity = match agents.auth.authenticate(&hello.credential).await {
        Ok(identity) => identity,
        Err(reject) => {
            if reject.code == RejectCode::Unauthorized {
                agents.auth_throttle.failed(peer.ip());
            }
            tracing::info!(code = ?reject.code, "agent refused");
            let _ = handshake::send_reject(&mut ws, &reject).await;
            return;
        }
    };
    if let Some(join) = hello.join.clone() {
        return crate::tunnel::lane::run(agents, ws, peer, hello, identity, join).await;
    }
    let planned = match plan_tunnels(&agents, &hello, &identity) {
        Ok(planned) => planned,
        Err(reject) => {
            let _ = handshake::send_reject(&mut ws, &reject).await;
            return;
        }
    };
    if identity.grant.is_none()
        && let Some(held) = &agents.held_names
        && let Err(reject) = crate::tunnel::held::refuse_held(
            held.as_ref(),
            planned.iter().map(|p| p.hostname.as_str()),
            &agents.config.domain,
        )
        .await
    {
        let _ = handshake::send_reject(&mut ws, &reject).await;
        return;
    }
    let session_id = new_session_id();
    tracing::Span::current().record("session", session_id.as_str());
    if let Err(reject) = claim_routes(&agents, &planned, &identity, &session_id).await {
        let _ = handshake::send_reject(&mut ws, &reject).await;
        return;
    }
    // The agent presents this key to add lanes to the session (`warren http --sessions N`).
    let lane_key = format!("{:032x}", rand::random::<u128>());
    let mut welcome = welcome(&agents, &planned, &session_id);
    welcome.lane_key = Some(LaneKey(lane_key.clone()));
    welcome.dynamic_tunnels = hello.dynamic_tunnels;
    let mux = session_mux(&agents, &hello, &welcome);
    let span = tracing::info_span!("session", id = %session_id, agent = %peer);
    // The tunnels are routable before the agent hears WELCOME, so a visitor who uses a URL the
    // moment the agent prints it is served, not told 404. Streams opened meanwhile wait in the
    // session's queue, behind the WELCOME.
    let (session, _incoming, events, unstarted) = warren_session::prepare(mux);
    let live = register(
        &agents,
        &planned,
        &session,
        &session_id,
        &identity,
        hello
            .request_log
            .then(|| RequestLogQueue::new(session.clone(), LogFormat::from_hello(&hello))),
    );
    agents.registry.allow_lanes(
        &session_id,
        crate::auth::digest(&lane_key),
        &identity.account_id,
        session.clone(),
    );
    let mut reported = false;
    match handshake::send_welcome(&mut ws, &welcome).await {
        Ok(()) => {
            unstarted.start(ws, span);
            if let Some(link) = &agents.reports {
                for tunnel in &live {
                    link.started(
                        tunnel,
                        &identity.token_id,
                        &hello.agent_version,
                        &peer.to_string(),
                    );
                    reported = true;
                }
            }
            tracing::info!(
                session = %session_id,
                agent = %peer,
                agent_version = %hello.agent_version,
                tunnels = ?planned.iter().map(|p| p.hostname.as_str()).collect::<Vec<_>>(),
                "agent session started"
            );
        }
        Err(e) => {
            tracing::debug!(error = %e, "agent left during the handshake");
            // Ends the session; the cleanup below undoes the registration and the claims.
            drop(unstarted);
        }
    }
    let mut agent_left = false;
    // Tunnels opened after the handshake (`warren mcp`), and the means to open them.
    let mut dynamic = hello.dynamic_tunnels.then(|| {
        Dynamic::new(
            agents.clone(),
            session.clone(),
            session_id.clone(),
            identity.clone(),
            Opener {
                agent_version: hello.agent_version.clone(),
                agent_addr: peer.to_string(),
                request_log: live
                    .first()
                    .and_then(|t| t.request_log.clone())
                    .or_else(|| {
                        hello.request_log.then(|| {
                            RequestLogQueue::new(session.clone(), LogFormat::from_hello(&hello))
                        })
                    }),
                fixed: planned.iter().map(|p| p.id).collect(),
            },
        )
    });
    let end = serve(
        &agents,
        &planned,
        &session_id,
        &session,
        events,
        &mut agent_left,
        dynamic.as_mut(),
    )
    .await;
    if let Some(dynamic) = dynamic {
        dynamic.end(agent_left, &end).await;
    }
    // Lanes notice the session's end and drain themselves (`lane.rs`).
    agents.registry.forbid_lanes(&session_id);
    for tunnel in &live {
        tunnel.pool.clear();
        if agents.registry.remove_tunnel(&tunnel.hostname, &session_id) && agent_left {
            // The agent said goodbye: its visitors are not held waiting for it to return.
            agents.registry.forget_lost(&tunnel.hostname);
        }
    }
    release_routes(&agents, &planned, &session_id).await;
    agents.registry.remove_session(&session_id);
    if reported && let Some(link) = &agents.reports {
        for tunnel in &live {
            link.ended(tunnel, &end_reason(&agents, tunnel, &end));
        }
    }
    tracing::info!(session = %session_id, reason = %end, "agent session ended");
}

/// Why a session stopped serving `tunnel`, as control records it.
fn end_reason(agents: &Agents, tunnel: &LiveTunnel, end: &warren_session::SessionEnd) -> String {
    if let Some(reason) = tunnel.close_reason.get() {
        return reason.clone();
    }
    if agents.life.draining.is_cancelled() {
        return "edge shutting down".to_string();
    }
    format!("agent gone: {end}")
}

async fn refuse_handshake(ws: &mut Ws, error: HandshakeError, peer: SocketAddr) {
    tracing::info!(agent = %peer, error = %error, "agent handshake failed");
    let reject = match error {
        HandshakeError::UnsupportedVersion(version) => Reject::unsupported_version(version),
        HandshakeError::Invalid(message) => Reject::new(RejectCode::BadRequest, message),
        _ => return,
    };
    let _ = handshake::send_reject(ws, &reject).await;
}

/// Decides each tunnel's hostname, or the reason the HELLO cannot be served.
fn plan_tunnels(
    agents: &Agents,
    hello: &Hello,
    identity: &Identity,
) -> Result<Vec<Planned>, Reject> {
    // A session that opens its tunnels later (`dynamic_tunnels`) may start with none.
    let least = usize::from(!hello.dynamic_tunnels);
    if hello.tunnels.len() < least || hello.tunnels.len() > MAX_TUNNELS_PER_SESSION {
        return Err(Reject::new(
            RejectCode::BadRequest,
            format!("a session carries {least} to {MAX_TUNNELS_PER_SESSION} tunnels"),
        ));
    }
    if let Some(grant) = &identity.grant {
        if hello.dynamic_tunnels && hello.tunnels.is_empty() {
            // The grant only says who the agent is; each tunnel comes with its own.
            return Ok(Vec::new());
        }
        let [request] = hello.tunnels.as_slice() else {
            return Err(Reject::new(
                RejectCode::BadRequest,
                format!(
                    "a grant opens exactly one tunnel, but the agent asked for {}: run one `warren http` per tunnel",
                    hello.tunnels.len()
                ),
            ));
        };
        return plan_granted(agents, request, grant).map(|p| vec![p]);
    }
    let mut ids = HashSet::new();
    let mut hosts = HashSet::new();
    let mut planned = Vec::with_capacity(hello.tunnels.len());
    for request in &hello.tunnels {
        if !ids.insert(request.id) {
            return Err(Reject::new(
                RejectCode::BadRequest,
                format!("tunnel id {} is repeated", request.id),
            ));
        }
        let planned_one = plan_token(agents, request, identity)?;
        if !hosts.insert(planned_one.hostname.clone()) {
            return Err(Reject::new(
                RejectCode::BadRequest,
                format!(
                    "two tunnels of this session ask for {}",
                    planned_one.hostname
                ),
            ));
        }
        planned.push(planned_one);
    }
    Ok(planned)
}

/// A tunnel of a session authenticated with a token: the subdomain asked for, or a stable one.
pub(crate) fn plan_token(
    agents: &Agents,
    request: &TunnelRequest,
    identity: &Identity,
) -> Result<Planned, Reject> {
    check_protocol(request)?;
    let subdomain = match &request.subdomain {
        Some(name) => Subdomain::parse(name)
            .map_err(|e| Reject::new(RejectCode::SubdomainInvalid, e.to_string()))?,
        None => Subdomain::stable(&identity.account_id, &request.local_addr),
    };
    request
        .validate_host_header()
        .map_err(|e| Reject::new(RejectCode::BadRequest, e.to_string()))?;
    Ok(Planned {
        id: request.id,
        hostname: format!("{subdomain}.{}", agents.config.domain),
        host_header: request.host_header.clone(),
    })
}

fn check_protocol(request: &TunnelRequest) -> Result<(), Reject> {
    match request.protocol {
        TunnelProtocol::Http => Ok(()),
        TunnelProtocol::Unsupported => Err(Reject::new(
            RejectCode::BadRequest,
            "this edge serves http tunnels only: the protocol asked for needs a newer edge",
        )),
    }
}

/// A grant opens one tunnel, on the hostname it names.
pub(crate) fn plan_granted(
    agents: &Agents,
    request: &TunnelRequest,
    grant: &crate::auth::GrantScope,
) -> Result<Planned, Reject> {
    check_protocol(request)?;
    if let Some(name) = &request.subdomain {
        let subdomain = Subdomain::parse(name)
            .map_err(|e| Reject::new(RejectCode::SubdomainInvalid, e.to_string()))?;
        let asked = format!("{subdomain}.{}", agents.config.domain.to_ascii_lowercase());
        if asked != grant.hostname {
            return Err(Reject::new(
                RejectCode::Forbidden,
                format!(
                    "the grant is for {} but the agent asked for {asked}: run `warren http` again \
                     to get a grant for the name you want",
                    grant.hostname
                ),
            ));
        }
    }
    request
        .validate_host_header()
        .map_err(|e| Reject::new(RejectCode::BadRequest, e.to_string()))?;
    Ok(Planned {
        id: request.id,
        hostname: grant.hostname.clone(),
        host_header: request.host_header.clone(),
    })
}

pub(crate) async fn claim_routes(
    agents: &Agents,
    planned: &[Planned],
    identity: &Identity,
    session_id: &str,
) -> Result<(), Reject> {
    for (i, tunnel) in planned.iter().enumerate() {
        let route = Route {
            edge_id: agents.edge_id.clone(),
            session_id: session_id.to_string(),
            tunnel_id: tunnel.id.0,
            account_id: identity.account_id.clone(),
            region: agents.config.region.clone(),
        };
        let refusal = match agents.routes.claim(&tunnel.hostname, &route).await {
            Ok(Claimed::New) => continue,
            Ok(Claimed::TookOver(previous)) => {
                tracing::info!(host = %tunnel.hostname, previous = %previous.session_id, "tunnel taken over by a new session");
                continue;
            }
            Err(RouteError::Taken { host }) => Reject::new(
                RejectCode::SubdomainTaken,
                format!(
                    "{host} is in use by another account: choose another name with --subdomain"
                ),
            ),
            Err(RouteError::Unavailable(e)) => {
                tracing::error!(error = %e, "route table unavailable");
                Reject::new(
                    RejectCode::Overloaded,
                    "the edge cannot reach its route table; try again shortly",
                )
            }
        };
        release_routes(agents, &planned[..i], session_id).await;
        return Err(refusal);
    }
    Ok(())
}

pub(crate) async fn release_routes(agents: &Agents, planned: &[Planned], session_id: &str) {
    for tunnel in planned {
        if let Err(e) = agents.routes.release(&tunnel.hostname, session_id).await {
            tracing::warn!(host = %tunnel.hostname, error = %e, "could not release route; its lease will expire");
        }
    }
}

/// The session's multiplexer, from the edge's settings and the agent's.
pub(crate) fn session_mux(agents: &Agents, hello: &Hello, welcome: &Welcome) -> Mux {
    // The edge opens the session's streams (one per upstream connection), so the configured
    // cap limits them too, within what the agent accepts.
    let agent_settings = Settings {
        max_streams: hello
            .settings
            .max_streams
            .min(agents.config.max_streams_per_session),
        ..hello.settings
    };
    Mux::new(
        Role::Edge,
        welcome.settings,
        agent_settings,
        heartbeat(agents),
        tokio::time::Instant::now().into_std(),
    )
}

fn welcome(agents: &Agents, planned: &[Planned], session_id: &str) -> Welcome {
    let heartbeat = heartbeat(agents);
    Welcome {
        session_id: session_id.to_string(),
        tunnels: planned
            .iter()
            .map(|p| TunnelReady {
                id: p.id,
                hostname: p.hostname.clone(),
                public_url: agents.public_url(&p.hostname),
            })
            .collect(),
        settings: agents.config.receive_settings(),
        heartbeat_interval_ms: heartbeat.interval.as_millis() as u64,
        heartbeat_timeout_ms: heartbeat.timeout.as_millis() as u64,
        lane_key: None,
        dynamic_tunnels: false,
    }
}

pub(crate) fn heartbeat(agents: &Agents) -> Heartbeat {
    Heartbeat {
        interval: agents.config.heartbeat_interval,
        timeout: agents.config.heartbeat_interval * 3,
    }
}

/// Makes the session's tunnels reachable, displacing older sessions of the same account.
fn register(
    agents: &Agents,
    planned: &[Planned],
    session: &Session,
    session_id: &str,
    identity: &Identity,
    request_log: Option<Arc<RequestLogQueue>>,
) -> Vec<Arc<LiveTunnel>> {
    agents.registry.add_session(session_id, session.clone());
    let mut registered = Vec::with_capacity(planned.len());
    for tunnel in planned {
        let live = live_tunnel(
            agents,
            tunnel,
            session,
            session_id,
            identity,
            request_log.clone(),
        );
        registered.push(insert(agents, live));
    }
    registered
}

/// The registry's entry for `tunnel`, served by `session`.
pub(crate) fn live_tunnel(
    agents: &Agents,
    tunnel: &Planned,
    session: &Session,
    session_id: &str,
    identity: &Identity,
    request_log: Option<Arc<RequestLogQueue>>,
) -> LiveTunnel {
    LiveTunnel {
        hostname: tunnel.hostname.clone(),
        public_url: agents.public_url(&tunnel.hostname),
        id: tunnel.id,
        session: session.clone(),
        session_id: session_id.to_string(),
        account_id: identity.account_id.clone(),
        request_log,
        tunnel_id: identity.grant.as_ref().map(|g| g.tunnel_id.clone()),
        counters: Counters::default(),
        close_reason: OnceLock::new(),
        pool: Pool::new(agents.config.pool_idle_per_tunnel),
        lanes: Lanes::default(),
        host_header: tunnel.host_header.clone(),
        dynamic: false,
    }
}

/// Serves `live` from now on, displacing an older session's copy.
pub(crate) fn insert(agents: &Agents, live: LiveTunnel) -> Arc<LiveTunnel> {
    let live = Arc::new(live);
    if let Some(old) = agents.registry.insert_tunnel(live.clone()) {
        displace(&old);
    }
    live
}

/// An older session of the same account lost this tunnel to a newer one (here, or on another
/// edge: `lease.rs`): tell its agent and let it drain.
pub(crate) fn displace(old: &LiveTunnel) {
    let _ = old
        .close_reason
        .set("taken over by a newer session".to_string());
    old.pool.clear();
    old.session.send_message(&Event::TunnelClosed {
        id: old.id,
        reason: format!(
            "{} was taken over by another agent session with the same name",
            old.hostname
        ),
    });
    if old.dynamic {
        // The session carries other tunnels (or will): it stays; `dynamic.rs` releases this one.
        return;
    }
    let session = old.session.clone();
    tokio::spawn(async move {
        session
            .drain(
                GoAwayCode::Replaced,
                "tunnel taken over by a newer session",
                Duration::from_secs(30),
            )
            .await;
    });
}

/// Serves the session until it ends. When the agent sends GOAWAY the multiplexer already
/// refuses new streams; idle pooled connections are dropped here so the agent's drain is not
/// held up by streams nobody will use again.
async fn serve(
    agents: &Agents,
    planned: &[Planned],
    session_id: &str,
    session: &Session,
    mut events: tokio::sync::mpsc::Receiver<SessionEvent>,
    agent_left: &mut bool,
    mut dynamic: Option<&mut Dynamic>,
) -> warren_session::SessionEnd {
    let mut reap = tokio::time::interval(crate::tunnel::dynamic::REAP_EVERY);
    reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            end = session.ended() => {
                // A GOAWAY followed at once by the close may end the session before its
                // event is seen here: the end reason carries it too.
                if matches!(end, warren_session::SessionEnd::PeerClosed(Some(_))) {
                    *agent_left = true;
                }
                return end;
            }
            _ = reap.tick(), if dynamic.is_some() => {
                if let Some(dynamic) = dynamic.as_deref_mut() {
                    dynamic.reap().await;
                }
            }
            event = events.recv() => match event {
                Some(SessionEvent::GoAway { code, message }) => {
                    tracing::info!(?code, %message, "agent is going away");
                    *agent_left = true;
                    for tunnel in planned {
                        if let Some(live) = agents.registry.lookup(&tunnel.hostname)
                            && live.session_id == session_id
                        {
                            live.pool.clear();
                        }
                    }
                    if let Some(dynamic) = dynamic.as_deref() {
                        dynamic.clear_pools();
                    }
                }
                Some(SessionEvent::Message(message)) => match dynamic.as_deref_mut() {
                    Some(dynamic) => dynamic.handle(message).await,
                    None => tracing::debug!(?message, "message from agent"),
                },
                None => return session.ended().await,
            },
        }
    }
}

pub(crate) fn new_session_id() -> String {
    format!("s_{:016x}", rand::random::<u64>())
}
