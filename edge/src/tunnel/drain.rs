//! The agent side of a graceful shutdown: agents get GOAWAY normal so they reconnect elsewhere
//! while their in-flight streams complete. The edge's own part (stop accepting, wait for every
//! task within the grace period, then close what is left) is in `lib.rs`.
//!
//! Make before break: in a cluster a draining session stays open until its agent's new session
//! (on another edge) holds the route — the agent closes the old one itself once it is welcomed
//! elsewhere. Closing it earlier, as soon as it is idle, would release the route while the
//! agent is still connecting, and visitors arriving in between would find no tunnel at all.
//! Meanwhile requests for it are held or relayed (`visitor/hold.rs`), never sent down the
//! draining session.

use crate::tunnel::Agents;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use warren_proto::error::GoAwayCode;
use warren_session::Session;

/// How often a draining session checks whether its agent's new session holds the route.
const POLL_MOVED: Duration = Duration::from_millis(100);

/// Sends GOAWAY on every session and spawns, for each, a task that closes it once it is idle
/// (in a cluster, once its routes moved away too) or when the grace period ends.
pub fn sessions(agents: &Arc<Agents>, clustered: bool) {
    let grace = agents.config.shutdown_grace;
    let sessions = agents.registry.sessions_by_id();
    tracing::info!(sessions = sessions.len(), ?grace, "edge draining");
    // Idle pooled streams would hold every session open until the grace period ends.
    agents.registry.clear_pools();
    let mut hostnames: HashMap<String, Vec<String>> = HashMap::new();
    for tunnel in agents.registry.tunnels() {
        hostnames
            .entry(tunnel.session_id.clone())
            .or_default()
            .push(tunnel.hostname.clone());
    }
    for (session_id, session) in sessions {
        session.go_away(GoAwayCode::Normal, "edge shutting down");
        let hosts = hostnames.remove(&session_id).unwrap_or_default();
        let task_agents = agents.clone();
        agents.life.tasks.spawn(async move {
            let finished = async {
                if clustered {
                    moved_away(&task_agents, &session, &session_id, &hosts).await;
                }
                session.idle().await;
            };
            let _ = tokio::time::timeout(grace, finished).await;
            session.close();
        });
    }
}

/// Closes every session still open (the grace period is over).
pub fn close_all(agents: &Agents) {
    for session in agents.registry.sessions() {
        session.close();
    }
}

/// Resolves once no route names this session any more (the agent's new session took them
/// over, or they expired), the session ended, or the route table cannot say (Redis down: the
/// agent could not claim anything either, so waiting helps nobody).
async fn moved_away(agents: &Agents, session: &Session, session_id: &str, hostnames: &[String]) {
    loop {
        if session.is_ended() {
            return;
        }
        let mut held = false;
        for host in hostnames {
            match agents.routes.lookup(host).await {
                Ok(Some(route)) if route.session_id == session_id => held = true,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "route table unavailable while draining");
                    return;
                }
            }
        }
        if !held {
            return;
        }
        tokio::select! {
            _ = session.ended() => return,
            () = tokio::time::sleep(POLL_MOVED) => {}
        }
    }
}
