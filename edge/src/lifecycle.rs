//! The edge's lifecycle as every task sees it: when draining starts, when whatever is left must
//! stop, and the tracker that shutdown waits on.
//!
//! Shutdown has three steps (house style): a signal decides (`main.rs`); `draining` tells every
//! task (accept loops stop, connections finish their request, agents get GOAWAY); `tasks` is
//! waited for within the grace period, after which `closing` ends what is still open — upgraded
//! connections (WebSockets) and relayed splices included, which have no request to finish.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Lifecycle {
    /// Cancelled when the edge starts draining.
    pub draining: CancellationToken,
    /// Cancelled when the grace period is over: close whatever is still open.
    pub closing: CancellationToken,
    /// Every connection and session task; shutdown waits for them.
    pub tasks: TaskTracker,
}

impl Lifecycle {
    /// A lifecycle whose draining starts when `draining` is cancelled.
    pub fn new(draining: CancellationToken) -> Lifecycle {
        Lifecycle {
            draining,
            closing: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }
}
