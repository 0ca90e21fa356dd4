//! What an edge tells control about the tunnel sessions it serves, and what control answers.
//!
//! An edge sends an [`EdgeReport`] every half second while it has something to say: in a
//! cluster to the Redis Stream `warren:events` (read by control's consumer group, see the
//! `warren-bus` crate), else to control's internal endpoint (`POST /internal/v1/reports`,
//! authenticated with the edge secret), which also serves as a heartbeat. Counters are
//! cumulative per session, so a report sent or applied twice never counts twice. Control's
//! closes are [`CloseTunnel`]s: published on the Redis channel `warren:close`, and listed in
//! the answer to every HTTP report ([`ReportReply::close`]).

use serde::{Deserialize, Serialize};

/// At most this many events in one report (the edge sends the rest in the next one).
pub const MAX_EVENTS_PER_REPORT: usize = 1000;

/// One batch of session events from one edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct EdgeReport {
    pub edge_id: String,
    pub region: String,
    /// Tunnels this edge serves right now (ids from their grants), so control can tell live
    /// tunnels from those whose edge vanished.
    pub live: Vec<String>,
    pub events: Vec<SessionEvent>,
}

/// Something that happened to one tunnel session. `at_ms` is Unix milliseconds on the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SessionEvent {
    /// An agent session began serving the tunnel (first connect or a reconnect).
    Started {
        tunnel_id: String,
        session_id: String,
        account_id: String,
        token_id: String,
        hostname: String,
        agent_version: String,
        agent_addr: String,
        at_ms: u64,
    },
    /// Cumulative counters of the session so far.
    Counters {
        tunnel_id: String,
        session_id: String,
        bytes_in: u64,
        bytes_out: u64,
        requests: u64,
        at_ms: u64,
    },
    /// The session stopped serving the tunnel; the counters are final.
    Ended {
        tunnel_id: String,
        session_id: String,
        reason: String,
        bytes_in: u64,
        bytes_out: u64,
        requests: u64,
        at_ms: u64,
    },
}

/// Control's answer to a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct ReportReply {
    /// Tunnels to close now; the edge also refuses their grants until the grants expire.
    #[serde(default)]
    pub close: Vec<CloseTunnel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct CloseTunnel {
    pub tunnel_id: String,
    /// Shown to the agent's user, e.g. "closed through the API".
    pub reason: String,
    /// Unix seconds until which the edge refuses this tunnel's grants (their expiry).
    pub until: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_json() {
        let event = SessionEvent::Counters {
            tunnel_id: "t_1".into(),
            session_id: "s_1".into(),
            bytes_in: 1,
            bytes_out: 2,
            requests: 3,
            at_ms: 4,
        };
        let json = serde_json::to_value(&event).expect("serialises");
        assert_eq!(json["type"], "counters");
        let back: SessionEvent = serde_json::from_value(json).expect("parses");
        assert_eq!(back, event);
    }
}
