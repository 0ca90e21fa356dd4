//! What the agent reports while it runs. `--json` prints each as one line of JSON with an
//! `event` field; people get aligned text.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AgentEvent {
    /// A tunnel is online.
    TunnelReady {
        public_url: String,
        hostname: String,
        local: String,
        session_id: String,
    },
    /// A visitor request finished.
    Request {
        method: String,
        path: String,
        status: u16,
        duration_ms: f64,
        bytes_in: u64,
        bytes_out: u64,
        request_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The session was lost; the agent will try again after `delay_ms`.
    Reconnecting {
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    /// Something went wrong. `fatal` errors end the agent.
    Error { message: String, fatal: bool },
    /// Something worth telling the user.
    Notice { message: String },
    /// Control renewed the tunnel's grant; reconnects present the new one.
    GrantRenewed { expires_at: u64 },
    /// One more session (`--sessions`) joined session `joined` and carries its tunnels too.
    LaneReady { session_id: String, joined: String },
}
