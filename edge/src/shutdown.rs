//! Graceful shutdown: the accept loops have stopped and visitor connections finish their
//! current request; agents get GOAWAY so they reconnect elsewhere while their in-flight
//! streams complete; after the grace period whatever is left is closed.

use crate::state::EdgeState;
use std::sync::Arc;
use std::time::Duration;
use warren_proto::error::GoAwayCode;

pub async fn drain(state: &Arc<EdgeState>) {
    let grace = state.config.shutdown_grace;
    let sessions = state.registry.sessions();
    tracing::info!(sessions = sessions.len(), ?grace, "edge draining");
    // Idle pooled streams would hold every session open until the grace period ends.
    state.registry.clear_pools();
    for session in &sessions {
        let session = session.clone();
        state.tasks.spawn(async move {
            session
                .drain(GoAwayCode::Normal, "edge shutting down", grace)
                .await;
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
