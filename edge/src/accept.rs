//! Accept loops: they only accept and spawn. Handshakes happen in the spawned task; a
//! semaphore caps connections; accept errors (such as running out of file descriptors) back
//! off instead of spinning.

use crate::state::EdgeState;
use crate::visitor::dispatch::Listener;
use crate::visitor::serve;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::Instrument;

pub async fn accept_loop(state: Arc<EdgeState>, listener: TcpListener, kind: Listener) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            () = state.shutdown.cancelled() => return,
            permit = state.connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (socket, peer) = tokio::select! {
            () = state.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, ?backoff, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(5);
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let span = tracing::debug_span!("conn", peer = %peer);
        let conn_state = state.clone();
        state.tasks.spawn(
            async move {
                serve::connection(conn_state, socket, peer, kind).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
}
