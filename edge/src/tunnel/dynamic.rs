//! Tunnels opened and closed on a live session (`warren mcp`): the HELLO set
//! `dynamic_tunnels`, so after the handshake the agent may send `open_tunnel` and
//! `close_tunnel`, and the session outlives its last tunnel.
//!
//! An `open_tunnel` goes through the same checks as a HELLO's tunnel (`attach.rs`'s planning
//! and route claim, reused): with control, it carries its own grant, which must name the same
//! account as the session. The edge answers `tunnel_opened` only once the route is claimed and
//! the tunnel is in the registry, so the URL works the moment the agent hears of it.
//!
//! A dynamic tunnel closed by control or taken over by another session is dropped from the
//! registry elsewhere (`control_link.rs`, `lease.rs`, `attach::displace`); [`Dynamic::reap`]
//! notices within [`REAP_EVERY`] and releases its route and reports its end.

use crate::auth::Identity;
use crate::tunnel::attach::{self, Planned};
use crate::tunnel::request_log::RequestLogQueue;
use crate::tunnel::{Agents, LiveTunnel};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use warren_proto::TunnelId;
use warren_proto::control::{
    Credential, Event, GrantToken, MAX_TUNNELS_PER_SESSION, Reject, RejectCode, TunnelRequest,
};
use warren_session::Session;

/// How often a session looks for its dynamic tunnels that were closed from elsewhere.
pub const REAP_EVERY: Duration = Duration::from_secs(1);

/// What a dynamic tunnel needs from the session's handshake.
pub(crate) struct Opener {
    pub(crate) agent_version: String,
    pub(crate) agent_addr: String,
    pub(crate) request_log: Option<Arc<RequestLogQueue>>,
    /// The ids of the HELLO's tunnels, which dynamic ones may not reuse.
    pub(crate) fixed: HashSet<TunnelId>,
}

/// One session's dynamic tunnels.
pub(crate) struct Dynamic {
    agents: Arc<Agents>,
    session: Session,
    session_id: String,
    identity: Identity,
    opener: Opener,
    open: BTreeMap<TunnelId, Arc<LiveTunnel>>,
}

impl Dynamic {
    pub(crate) fn new(
        agents: Arc<Agents>,
        session: Session,
        session_id: String,
        identity: Identity,
        opener: Opener,
    ) -> Dynamic {
        Dynamic {
            agents,
            session,
            session_id,
            identity,
            opener,
            open: BTreeMap::new(),
        }
    }

    /// Serves one message from the agent.
    pub(crate) async fn handle(&mut self, message: Event) {
        match message {
            Event::OpenTunnel { spec, grant } => {
                let id = spec.id;
                let answer = match self.open_tunnel(spec, grant).await {
                    Ok(live) => Event::TunnelOpened {
                        id,
                        hostname: live.hostname.clone(),
                        public_url: live.public_url.clone(),
                    },
                    Err(reject) => {
                        tracing::info!(tunnel = %id, code = ?reject.code, message = %reject.message, "open_tunnel refused");
                        Event::TunnelRefused {
                            id,
                            code: reject.code,
                            message: reject.message,
                        }
                    }
                };
                self.session.send_message(&answer);
            }
            Event::CloseTunnel { id } => {
                let answer = match self.open.remove(&id) {
                    Some(live) => {
                        let reason = "closed by the agent";
                        let _ = live.close_reason.set(reason.to_string());
                        self.finish(&live, true).await;
                        Event::TunnelClosed {
                            id,
                            reason: format!("{} was closed by the agent", live.hostname),
                        }
                    }
                    None => Event::TunnelRefused {
                        id,
                        code: RejectCode::UnknownTunnel,
                        message: format!("this session serves no dynamic tunnel {id}"),
                    },
                };
                self.session.send_message(&answer);
            }
            other => tracing::debug!(message = ?other, "message from agent"),
        }
    }

    async fn open_tunnel(
        &mut self,
        spec: TunnelRequest,
        grant: Option<GrantToken>,
    ) -> Result<Arc<LiveTunnel>, Reject> {
        let bad = |m: String| Reject::new(RejectCode::BadRequest, m);
        if self.open.contains_key(&spec.id) || self.opener.fixed.contains(&spec.id) {
            return Err(bad(format!(
                "tunnel id {} is already used on this session",
                spec.id
            )));
        }
        if self.open.len() + self.opener.fixed.len() >= MAX_TUNNELS_PER_SESSION {
            return Err(bad(format!(
                "a session carries at most {MAX_TUNNELS_PER_SESSION} tunnels: close one first"
            )));
        }
        if self.session.is_going_away() {
            return Err(Reject::new(
                RejectCode::ShuttingDown,
                "the session is closing: open the tunnel on a new one",
            ));
        }
        let (identity, planned) = self.plan(&spec, grant).await?;
        if self.open.values().any(|t| t.hostname == planned.hostname) {
            return Err(bad(format!(
                "this session already serves {}",
                planned.hostname
            )));
        }
        attach::claim_routes(
            &self.agents,
            std::slice::from_ref(&planned),
            &identity,
            &self.session_id,
        )
        .await?;
        let mut live = attach::live_tunnel(
            &self.agents,
            &planned,
            &self.session,
            &self.session_id,
            &identity,
            self.opener.request_log.clone(),
        );
        live.dynamic = true;
        let live = attach::insert(&self.agents, live);
        self.agents
            .registry
            .add_session(&self.session_id, self.session.clone());
        if let Some(link) = &self.agents.reports
            && identity.grant.is_some()
        {
            link.started(
                &live,
                &identity.token_id,
                &self.opener.agent_version,
                &self.opener.agent_addr,
            );
        }
        tracing::info!(host = %live.hostname, tunnel = %live.id, "dynamic tunnel opened");
        self.open.insert(live.id, live.clone());
        Ok(live)
    }

    /// The tunnel's hostname, and whom it is for: the session's own identity for a token
    /// session, or the identity of the tunnel's grant (same account) for a granted one.
    async fn plan(
        &self,
        spec: &TunnelRequest,
        grant: Option<GrantToken>,
    ) -> Result<(Identity, Planned), Reject> {
        let Some(GrantToken(grant)) = grant else {
            if self.identity.grant.is_some() {
                return Err(Reject::new(
                    RejectCode::Unauthorized,
                    "this session was opened with a grant, so each tunnel needs its own grant from control",
                ));
            }
            let planned = attach::plan_token(&self.agents, spec, &self.identity)?;
            return Ok((self.identity.clone(), planned));
        };
        let identity = self
            .agents
            .auth
            .authenticate(&Credential::Grant(grant))
            .await?;
        if identity.account_id != self.identity.account_id {
            return Err(Reject::new(
                RejectCode::Forbidden,
                "the grant is for another account than this session's",
            ));
        }
        let Some(scope) = &identity.grant else {
            return Err(Reject::new(
                RejectCode::Unauthorized,
                "open_tunnel takes a grant from control, not a token",
            ));
        };
        let planned = attach::plan_granted(&self.agents, spec, scope)?;
        Ok((identity, planned))
    }

    /// Finds the dynamic tunnels closed from elsewhere (control, a newer session) and releases
    /// what they held.
    pub(crate) async fn reap(&mut self) {
        let gone: Vec<TunnelId> = self
            .open
            .iter()
            .filter(|(_, live)| {
                !self
                    .agents
                    .registry
                    .lookup(&live.hostname)
                    .is_some_and(|now| Arc::ptr_eq(&now, live))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(live) = self.open.remove(&id) {
                self.finish(&live, false).await;
            }
        }
    }

    pub(crate) fn clear_pools(&self) {
        for live in self.open.values() {
            live.pool.clear();
        }
    }

    /// The session ended: releases every tunnel it still served.
    pub(crate) async fn end(mut self, agent_left: bool, end: &warren_session::SessionEnd) {
        let open = std::mem::take(&mut self.open);
        for live in open.values() {
            if live.close_reason.get().is_none() && !self.agents.life.draining.is_cancelled() {
                let _ = live.close_reason.set(format!("agent gone: {end}"));
            }
            self.finish(live, agent_left).await;
        }
    }

    /// Stops serving `live` (if the registry still has it from this session), releases its
    /// route and reports its end. `on_purpose`: nobody should hold visitors for it.
    async fn finish(&self, live: &Arc<LiveTunnel>, on_purpose: bool) {
        live.pool.clear();
        let removed = self
            .agents
            .registry
            .remove_tunnel(&live.hostname, &self.session_id);
        if removed && on_purpose {
            self.agents.registry.forget_lost(&live.hostname);
        }
        let planned = Planned {
            id: live.id,
            hostname: live.hostname.clone(),
            host_header: None,
        };
        attach::release_routes(
            &self.agents,
            std::slice::from_ref(&planned),
            &self.session_id,
        )
        .await;
        if live.tunnel_id.is_some()
            && let Some(link) = &self.agents.reports
        {
            let reason = live.close_reason.get().cloned().unwrap_or_else(|| {
                if self.agents.life.draining.is_cancelled() {
                    "edge shutting down".to_string()
                } else {
                    "closed".to_string()
                }
            });
            link.ended(live, &reason);
        }
        tracing::info!(host = %live.hostname, tunnel = %live.id, "dynamic tunnel closed");
    }
}
