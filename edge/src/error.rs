//! Why a visitor request failed, classified by the side at fault. Every failure of a visitor
//! request becomes one of these, and `visitor/error_page.rs` turns it into a response.

use http::StatusCode;
use warren_proto::ResetCode;

/// Which party a failure belongs to (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Visitor,
    Agent,
    LocalService,
    Edge,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum EdgeError {
    #[error("no tunnel is online at {host}")]
    UnknownTunnel { host: String },
    #[error("{host} is not served by this edge")]
    UnknownHost { host: String },
    #[error("the request has no Host header")]
    MissingHost,
    #[error("the agent serving this tunnel is not connected")]
    AgentUnreachable,
    #[error("the agent's session is at its stream limit")]
    Overloaded,
    #[error("the local service refused the connection")]
    LocalRefused,
    #[error("the agent could not connect to the local service in time")]
    LocalConnectTimeout,
    #[error("the local service did not answer within {0} s")]
    LocalTimeout(u64),
    #[error("the local service closed the connection or sent an invalid response: {0}")]
    LocalError(String),
    #[error("the edge is shutting down")]
    ShuttingDown,
    #[error("the edge is at its connection limit")]
    EdgeBusy,
    #[error("too many connections from your address")]
    TooManyConnections,
    #[error("not found")]
    NotFound,
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl EdgeError {
    pub fn status(&self) -> StatusCode {
        match self {
            EdgeError::UnknownTunnel { .. }
            | EdgeError::UnknownHost { .. }
            | EdgeError::NotFound => StatusCode::NOT_FOUND,
            EdgeError::MissingHost | EdgeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            EdgeError::AgentUnreachable | EdgeError::LocalRefused | EdgeError::LocalError(_) => {
                StatusCode::BAD_GATEWAY
            }
            EdgeError::Overloaded | EdgeError::ShuttingDown | EdgeError::EdgeBusy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            EdgeError::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
            EdgeError::LocalConnectTimeout | EdgeError::LocalTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
        }
    }

    /// Stable identifier sent in the `Warren-Error` header and the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            EdgeError::UnknownTunnel { .. } => "tunnel-not-found",
            EdgeError::UnknownHost { .. } => "unknown-host",
            EdgeError::MissingHost => "missing-host",
            EdgeError::AgentUnreachable => "agent-unreachable",
            EdgeError::Overloaded => "tunnel-overloaded",
            EdgeError::LocalRefused => "local-service-refused",
            EdgeError::LocalConnectTimeout | EdgeError::LocalTimeout(_) => "local-service-timeout",
            EdgeError::LocalError(_) => "local-service-error",
            EdgeError::ShuttingDown => "edge-shutting-down",
            EdgeError::EdgeBusy => "edge-busy",
            EdgeError::TooManyConnections => "too-many-connections",
            EdgeError::NotFound => "not-found",
            EdgeError::BadRequest(_) => "bad-request",
        }
    }

    pub fn side(&self) -> Side {
        match self {
            EdgeError::UnknownTunnel { .. }
            | EdgeError::UnknownHost { .. }
            | EdgeError::MissingHost
            | EdgeError::NotFound
            | EdgeError::BadRequest(_)
            | EdgeError::TooManyConnections => Side::Visitor,
            EdgeError::AgentUnreachable | EdgeError::Overloaded => Side::Agent,
            EdgeError::LocalRefused
            | EdgeError::LocalConnectTimeout
            | EdgeError::LocalTimeout(_)
            | EdgeError::LocalError(_) => Side::LocalService,
            EdgeError::ShuttingDown | EdgeError::EdgeBusy => Side::Edge,
        }
    }

    /// What the visitor (or the tunnel's owner) can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            EdgeError::UnknownTunnel { .. } => {
                "Check the address. If this is your tunnel, start it with `warren http PORT`."
            }
            EdgeError::UnknownHost { .. } => "This address does not belong to this Warren edge.",
            EdgeError::MissingHost => "Send a Host header naming the tunnel.",
            EdgeError::AgentUnreachable => {
                "The tunnel's agent disconnected. If this is your tunnel, check that `warren` is still running."
            }
            EdgeError::Overloaded => {
                "The tunnel has too many requests in flight. Try again shortly."
            }
            EdgeError::LocalRefused => {
                "The agent is online but nothing accepts connections on the local port. Start the local service."
            }
            EdgeError::LocalConnectTimeout | EdgeError::LocalTimeout(_) => {
                "The local service is not answering. Check that it is not stuck."
            }
            EdgeError::LocalError(_) => "The local service failed while answering. Check its logs.",
            EdgeError::ShuttingDown => "This edge is restarting. Try again in a moment.",
            EdgeError::EdgeBusy => {
                "This edge is serving as many connections as it may. Try again in a moment."
            }
            EdgeError::TooManyConnections => {
                "Close some of your connections to this edge, or reuse them, and try again."
            }
            EdgeError::NotFound => "There is nothing at this path.",
            EdgeError::BadRequest(_) => "Fix the request and try again.",
        }
    }

    /// Maps a stream reset from the agent to the failure it reports.
    pub fn from_reset(code: ResetCode) -> EdgeError {
        match code {
            ResetCode::LocalRefused => EdgeError::LocalRefused,
            ResetCode::LocalTimeout => EdgeError::LocalConnectTimeout,
            ResetCode::Refused => EdgeError::Overloaded,
            ResetCode::Shutdown => EdgeError::AgentUnreachable,
            other => EdgeError::LocalError(format!("stream reset ({other})")),
        }
    }
}
