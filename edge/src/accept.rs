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

/// Default of `--unsent-low-water`: unsent bytes the kernel may queue on an accepted socket
/// before writes wait.
///
/// Without a bound, the kernel's send buffer grows with the congestion window (to 4 MiB by
/// default, and at once on loopback, where one segment is 64 KiB), so a visitor that stops
/// reading makes the edge's *kernel* hold megabytes for it; a few thousand of them reach the
/// machine's TCP memory limit, and then every socket on it, the agents' sessions too, drops
/// packets and waits out retransmission timeouts. `TCP_NOTSENT_LOWAT` bounds only what is not
/// yet sent: bytes in flight still grow with the path, so a fast far visitor is not slowed.
/// What a stalled visitor costs in all is this, what its receive window took, and its stream's
/// window in the edge (docs/protocol.md, "A visitor that never reads").
pub const UNSENT_LOW_WATER: u32 = 128 * 1024;

fn bound_unsent(socket: &tokio::net::TcpStream, bytes: u32) {
    if bytes == 0 {
        return;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = socket2::SockRef::from(socket).set_tcp_notsent_lowat(bytes) {
        tracing::debug!(error = %e, "could not set TCP_NOTSENT_LOWAT");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = socket;
}

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
        bound_unsent(&socket, visitors.config.unsent_low_water);
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
