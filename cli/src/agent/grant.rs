//! Grants as the agent holds them: the newest one, shared between the task that renews it
//! (`warren http` asks control at about half its lifetime) and the connect loop, which
//! presents whatever is newest at each (re)connect.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// A grant signed by control.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    /// The JWT, sent in HELLO as `Credential::Grant`.
    pub jwt: String,
    /// Unix seconds after which edges refuse it.
    pub expires_at: u64,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("jwt", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Grant {
    /// Whether edges would refuse it now (by this machine's clock).
    pub fn is_expired(&self) -> bool {
        unix_now() >= self.expires_at
    }
}

/// The renewing side.
pub type GrantSender = watch::Sender<Grant>;
/// The connecting side.
pub type GrantReceiver = watch::Receiver<Grant>;

pub fn channel(first: Grant) -> (GrantSender, GrantReceiver) {
    watch::channel(first)
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
