//! A lane: one more connection from an agent that already holds a session here, carrying the
//! same tunnels (`warren http --sessions N`).
//!
//! One session is read and written by one task on each side, so under load the requests of
//! every visitor queue behind it. A lane is a whole second session (its own WebSocket, reader,
//! writer and, in the agent, thread); new streams go to the session and its lanes in turn.
//! A lane claims no route and sends no request logs: it lives and dies with the session it
//! joined, which it proves with the session's lane key (sent only to that agent, in WELCOME).

use crate::auth::Identity;
use crate::tunnel::Agents;
use crate::tunnel::LiveTunnel;
use crate::tunnel::attach::{Ws, new_session_id, session_mux};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use warren_proto::control::{
    Hello, Join, MAX_LANE_KEY_LEN, Reject, RejectCode, TunnelReady, Welcome,
};
use warren_proto::error::GoAwayCode;
use warren_session::{Session, SessionEvent, handshake};

/// At most this many lanes per session (the agent's `--sessions` allows up to 1 + this).
pub const MAX_LANES: usize = 7;

/// How long a lane whose session ended may take to finish its streams.
const LANE_GRACE: Duration = Duration::from_secs(30);

/// Serves a HELLO that asked to join a session, from checks to cleanup.
pub async fn run(
    agents: Arc<Agents>,
    mut ws: Ws,
    peer: SocketAddr,
    hello: Hello,
    identity: Identity,
    join: Join,
) {
    let (primary, tunnels) = match check(&agents, &hello, &identity, &join) {
        Ok(found) => found,
        Err(reject) => {
            tracing::info!(agent = %peer, session = %join.session_id.escape_debug(), code = ?reject.code, "lane refused");
            let _ = handshake::send_reject(&mut ws, &reject).await;
            return;
        }
    };
    let lane_id = new_session_id();
    let welcome = welcome(&agents, &tunnels, &lane_id);
    let mux = session_mux(&agents, &hello, &welcome);
    let (session, _incoming, events, unstarted) = warren_session::prepare(mux);
    if let Err(e) = handshake::send_welcome(&mut ws, &welcome).await {
        tracing::debug!(error = %e, "agent left during the lane handshake");
        return;
    }
    let span =
        tracing::info_span!("lane", id = %lane_id, session = %join.session_id, agent = %peer);
    unstarted.start(ws, span);
    agents.registry.add_session(&lane_id, session.clone());
    for tunnel in &tunnels {
        tunnel.lanes.add(&lane_id, session.clone());
    }
    tracing::info!(lane = %lane_id, session = %join.session_id, agent = %peer, "agent lane joined");
    let end = serve(&tunnels, &lane_id, &session, &primary, events).await;
    for tunnel in &tunnels {
        tunnel.lanes.remove(&lane_id);
    }
    agents.registry.remove_session(&lane_id);
    tracing::info!(lane = %lane_id, reason = %end, "agent lane ended");
}

/// The session to join and the tunnels it serves here, or why the lane is refused.
fn check(
    agents: &Agents,
    hello: &Hello,
    identity: &Identity,
    join: &Join,
) -> Result<(Session, Vec<Arc<LiveTunnel>>), Reject> {
    if join.session_id.len() > MAX_LANE_KEY_LEN || join.key.0.len() > MAX_LANE_KEY_LEN {
        return Err(Reject::new(
            RejectCode::BadRequest,
            format!("join: the session id and key are at most {MAX_LANE_KEY_LEN} bytes each"),
        ));
    }
    let not_here = || {
        Reject::new(
            RejectCode::Forbidden,
            format!(
                "no session {} of this account is open on this edge to add a lane to: lanes must \
                 reach the edge that holds the session (`--sessions 1` opens none)",
                join.session_id.escape_debug()
            ),
        )
    };
    let digest = crate::auth::digest(&join.key.0);
    let primary = agents
        .registry
        .joinable(&join.session_id, &digest, &identity.account_id)
        .ok_or_else(not_here)?;
    if primary.is_going_away() {
        return Err(Reject::new(
            RejectCode::Forbidden,
            "the session this lane would join is closing",
        ));
    }
    let tunnels = agents.registry.tunnels_of(&join.session_id);
    let held: BTreeSet<u32> = tunnels.iter().map(|t| t.id.0).collect();
    let asked: BTreeSet<u32> = hello.tunnels.iter().map(|t| t.id.0).collect();
    if held.is_empty() {
        return Err(not_here());
    }
    if asked != held {
        return Err(Reject::new(
            RejectCode::BadRequest,
            format!(
                "a lane carries exactly the tunnels of the session it joins ({held:?}), not {asked:?}"
            ),
        ));
    }
    if tunnels.iter().any(|t| t.lanes.len() >= MAX_LANES) {
        return Err(Reject::new(
            RejectCode::Overloaded,
            format!(
                "a session takes at most {MAX_LANES} lanes (`--sessions` up to {})",
                MAX_LANES + 1
            ),
        ));
    }
    Ok((primary, tunnels))
}

fn welcome(agents: &Agents, tunnels: &[Arc<LiveTunnel>], lane_id: &str) -> Welcome {
    let heartbeat = crate::tunnel::attach::heartbeat(agents);
    Welcome {
        session_id: lane_id.to_string(),
        tunnels: tunnels
            .iter()
            .map(|t| TunnelReady {
                id: t.id,
                hostname: t.hostname.clone(),
                public_url: t.public_url.clone(),
            })
            .collect(),
        settings: agents.config.receive_settings(),
        heartbeat_interval_ms: heartbeat.interval.as_millis() as u64,
        heartbeat_timeout_ms: heartbeat.timeout.as_millis() as u64,
        lane_key: None,
        dynamic_tunnels: false,
    }
}

/// Serves the lane until it ends. When the session it joined ends (lost, closed, taken over),
/// the lane takes no new streams and drains: it never outlives its session.
async fn serve(
    tunnels: &[Arc<LiveTunnel>],
    lane_id: &str,
    lane: &Session,
    primary: &Session,
    mut events: tokio::sync::mpsc::Receiver<SessionEvent>,
) -> warren_session::SessionEnd {
    loop {
        tokio::select! {
            end = lane.ended() => return end,
            _ = primary.ended() => {
                for tunnel in tunnels {
                    tunnel.lanes.remove(lane_id);
                }
                lane.drain(GoAwayCode::Normal, "the session this lane belongs to ended", LANE_GRACE).await;
                return lane.ended().await;
            }
            event = events.recv() => match event {
                Some(SessionEvent::GoAway { code, message }) => {
                    tracing::info!(?code, %message, "agent is closing the lane");
                    for tunnel in tunnels {
                        tunnel.lanes.remove(lane_id);
                        tunnel.pool.clear();
                    }
                }
                Some(SessionEvent::Message(message)) => {
                    tracing::debug!(?message, "message from agent on a lane");
                }
                None => return lane.ended().await,
            },
        }
    }
}
