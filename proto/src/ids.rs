//! Identifiers that travel on the wire.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stream on one session. Stream 0 is the session itself (session-level frames use it).
/// The edge opens odd ids, the agent even ones, so both sides can open without coordination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u32);

impl StreamId {
    /// The id that session-level frames (WINDOW for the session, PING, GOAWAY, control) carry.
    pub const SESSION: StreamId = StreamId(0);

    pub fn is_session(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A tunnel within a session, chosen by the agent in its `Hello` (an agent may serve several
/// tunnels on one session). Every OPEN names the tunnel the new stream is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TunnelId(pub u32);

impl fmt::Display for TunnelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
