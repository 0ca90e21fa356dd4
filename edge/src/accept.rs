//! Accept loops: they only accept, admit and spawn. Admission (`limits.rs`) never waits, so
//! nothing queues unbounded in the kernel; handshakes (PROXY header, TLS, HTTP) happen in the
//! spawned task under their timeouts; accept errors (such as running out of file descriptors)
//! back off instead of spinning.

use crate::limits::Listener;
use crate::visitor::Visitors;
use crate::visitor::serve;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::Instrument;

pub async fn accept_loop(visitors: Arc<Visitors>, listener: TcpListener, kind: Listener) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let (socket, peer) = tokio::select! {
            () = visitors.life.draining.cancelled() => return,
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
        let Some(admission) = visitors.limits.admit(kind) else {
            // Over the cap with the refusal path full too: closed at once (counted).
            continue;
        };
        let span = tracing::debug_span!("conn", peer = %peer);
        let conn_visitors = visitors.clone();
        visitors.life.tasks.spawn(
            async move {
                serve::connection(conn_visitors, admission, socket, peer, kind).await;
            }
            .instrument(span),
        );
    }
}
