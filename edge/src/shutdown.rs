//! Graceful shutdown: the accept loops have stopped and visitor connections finish their
//! current request; agents get GOAWAY normal so they reconnect elsewhere while their in-flight
//! streams complete; after the grace period whatever is left is closed. A second signal exits
//! at once (`main.rs`).
//!
//! Make before break: in a cluster a draining session stays open until its agent's new session
//! (on another edge) holds the route — the agent closes the old one itself once it is welcomed
//! elsewhere. Closing it earlier, as soon as it is idle, would release the route while the
//! agent is still connecting, and visitors arriving in between would find no tunnel at all.
//! Meanwhile requests for it are held or relayed (`visitor/hold.rs`), never sent down the
//! draining session.

use crate::state::EdgeState;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use warren_proto::error::GoAwayCode;
use warren_session::Session;

/// How often a draining session checks whether its agent's new session holds the route.
const POLL_MOVED: Duration = Duration::from_millis(100);

pub async fn drain(state: &Arc<EdgeState>) {
    let grace = state.config.shutdown_grace;
    let sessions = state.registry.sessions_by_id();
    tracing::info!(sessions = sessions.len(), ?grace, "edge draining");
    // Idle pooled streams would hold every session open until the grace period ends.
    state.registry.clear_pools();
    let mut hostnames: HashMap<String, Vec<String>> = HashMap::new();
    for tunnel in state.registry.tunnels() {
        hostnames
            .entry(tunnel.session_id.clone())
            .or_default()
            .push(tunnel.hostname.clone());
    }
    for (session_id, session) in sessions {
        session.go_away(GoAwayCode::Normal, "edge shutting down");
        let hosts = hostnames.remove(&session_id).unwrap_or_default();
        let task_state = state.clone();
        state.tasks.spawn(async move {
            let finished = async {
                if task_state.relay.is_some() {
                    moved_away(&task_state, &session, &session_id, &hosts).await;
                }
                session.idle().await;
            };
            let _ = tokio::time::timeout(grace, finished).await;
            session.close();
        });
    }
    state.tasks.close();
    if tokio::time::timeout(grace, state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing what is left");
        for session in state.registry.sessions() {
            session.close();
        }
        // The closed sessions' tasks clean up (release routes, queue their `Ended` reports)
        // as soon as they notice; give them a moment.
        let _ = tokio::time::timeout(Duration::from_secs(1), state.tasks.wait()).await;
    }
    tracing::info!("edge stopped");
}

/// Resolves once no route names this session any more (the agent's new session took them
/// over, or they expired), the session ended, or the route table cannot say (Redis down: the
/// agent could not claim anything either, so waiting helps nobody).
async fn moved_away(state: &EdgeState, session: &Session, session_id: &str, hostnames: &[String]) {
    loop {
        if session.is_ended() {
            return;
        }
        let mut held = false;
        for host in hostnames {
            match state.routes.lookup(host).await {
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
