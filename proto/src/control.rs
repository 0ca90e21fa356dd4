//! JSON messages carried by HELLO, WELCOME, REJECT and EVENT frames.
//!
//! Control messages are rare (one handshake per session, one event per request at most), so
//! they favour evolvability over compactness: unknown fields are ignored, so a newer peer can
//! add fields without a version bump. Incompatible changes bump [`PROTOCOL_VERSION`].

use crate::error::FrameError;
use crate::frame::{Frame, MAX_PAYLOAD};
use crate::ids::TunnelId;
use crate::mux::Settings;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The protocol version this crate speaks. Sent first in HELLO.
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest protocol version an edge built from this crate accepts.
pub const MIN_PROTOCOL_VERSION: u16 = 1;
/// At most this many tunnels in one HELLO.
pub const MAX_TUNNELS_PER_SESSION: usize = 64;

/// The agent's opening message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The agent's software version, e.g. `warren 0.1.0`, for logs and history.
    pub agent_version: String,
    pub credential: Credential,
    pub tunnels: Vec<TunnelRequest>,
    /// The agent's receive windows and stream limit.
    pub settings: Settings,
    /// Whether the agent wants a [`RequestLog`] for every completed request.
    #[serde(default)]
    pub request_log: bool,
    /// The agent reads [`Event::RequestLogs`]: the edge then sends request logs in batches
    /// (one message per batch instead of one per request). Agents that do not say so get one
    /// [`Event::RequestLog`] per request.
    #[serde(default)]
    pub request_log_batches: bool,
    /// The agent reads request-log batches in the compact binary form
    /// ([`crate::request_logs`]) instead of JSON. Implies `request_log_batches`. Not written
    /// when false, so a HELLO without it reads exactly as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub request_log_compact: bool,
    /// Adds this connection to a session the same agent already holds on this edge, as one
    /// more **lane** for its tunnels: the edge spreads their new streams over the session and
    /// its lanes (`warren http --sessions N`). The tunnels must be the ones the session
    /// carries. Not written when absent, so a HELLO without it reads exactly as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<Join>,
    /// The agent may open and close tunnels on this session after the handshake
    /// ([`Event::OpenTunnel`], [`Event::CloseTunnel`]), and keeps the session when its last
    /// tunnel closes (`warren mcp`). Not written when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dynamic_tunnels: bool,
}

/// Which session a lane joins, and the proof that the agent holding it sent this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    /// The [`Welcome::session_id`] of the session to join.
    pub session_id: String,
    /// The [`Welcome::lane_key`] that session was given.
    pub key: LaneKey,
}

/// A session's secret for adding lanes to it: random, known only to the edge and the agent
/// that holds the session, valid as long as the session lives.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LaneKey(pub String);

/// Longest [`LaneKey`] and [`Join::session_id`] an edge reads.
pub const MAX_LANE_KEY_LEN: usize = 128;

impl fmt::Debug for LaneKey {
    // Secrets never reach logs, even through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LaneKey(<redacted>)")
    }
}

/// A grant (JWT signed by control) carried by [`Event::OpenTunnel`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GrantToken(pub String);

impl fmt::Debug for GrantToken {
    // Secrets never reach logs, even through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GrantToken(<redacted>)")
    }
}

/// What the agent proves its identity with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// An API token (`warren dev`, or an edge configured with static tokens).
    Token(String),
    /// A short-lived grant signed by control.
    Grant(String),
}

impl fmt::Debug for Credential {
    // Secrets never reach logs, even through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(<redacted>)"),
            Credential::Grant(_) => f.write_str("Grant(<redacted>)"),
        }
    }
}

/// One tunnel the agent wants on this session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelRequest {
    /// Chosen by the agent, unique within the session; every OPEN for this tunnel names it.
    pub id: TunnelId,
    pub protocol: TunnelProtocol,
    /// The subdomain asked for; `None` lets the edge pick a stable one.
    #[serde(default)]
    pub subdomain: Option<String>,
    /// Where the agent forwards to (e.g. `localhost:3000`). Informational, and part of the
    /// seed of the stable default name, so the same command gets the same URL back.
    #[serde(default)]
    pub local_addr: String,
    /// The `Host` the local service gets instead of the visitor's (`warren http
    /// --host-header`: `rewrite` sends the local address, e.g. `localhost:3000`, as many local
    /// servers insist on). The visitor's host is then in `X-Forwarded-Host`. At most
    /// [`MAX_HOST_HEADER_LEN`] bytes of visible ASCII. Not written when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_header: Option<String>,
}

/// Longest [`TunnelRequest::host_header`] an edge accepts.
pub const MAX_HOST_HEADER_LEN: usize = 255;

impl TunnelRequest {
    /// Checks `host_header`: the error's message says what is wrong.
    pub fn validate_host_header(&self) -> Result<(), BadHostHeader> {
        match &self.host_header {
            None => Ok(()),
            Some(host)
                if !host.is_empty()
                    && host.len() <= MAX_HOST_HEADER_LEN
                    && host.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok(())
            }
            Some(_) => Err(BadHostHeader),
        }
    }
}

/// A [`TunnelRequest::host_header`] that is empty, too long or not visible ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the host header must be 1 to {MAX_HOST_HEADER_LEN} visible ASCII characters, such as localhost:3000"
)]
pub struct BadHostHeader;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TunnelProtocol {
    Http,
    /// A protocol this version does not know (a newer agent's `tcp`, say): read, so the
    /// message around it can be refused with a sentence instead of ending the session.
    #[serde(other)]
    Unsupported,
}

/// The edge's acceptance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub session_id: String,
    pub tunnels: Vec<TunnelReady>,
    /// The edge's receive windows and stream limit.
    pub settings: Settings,
    /// How often each side pings, and how long silence may last before the session is dead.
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
    /// The key for adding lanes to this session ([`Hello::join`]). Absent from edges that
    /// cannot add lanes and from a lane's own WELCOME: an agent opens lanes only when it is
    /// present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane_key: Option<LaneKey>,
    /// The edge serves [`Event::OpenTunnel`] on this session (the HELLO asked with
    /// [`Hello::dynamic_tunnels`] and the edge knows how). Not written when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dynamic_tunnels: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelReady {
    pub id: TunnelId,
    pub hostname: String,
    pub public_url: String,
}

/// The edge's refusal: a code the agent branches on and a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    pub code: RejectCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The agent speaks a protocol version the edge does not; the message says what to upgrade.
    UnsupportedVersion,
    /// The credential is missing, unknown, expired or revoked.
    Unauthorized,
    /// The credential does not allow what was asked (hostname, region, protocol).
    Forbidden,
    /// The subdomain is held by another account or another live session.
    SubdomainTaken,
    /// The subdomain is not a valid DNS label or is reserved.
    SubdomainInvalid,
    /// The HELLO is malformed or asks for something impossible.
    BadRequest,
    /// The edge is at its session limit; try another edge or later.
    Overloaded,
    /// The edge is draining; connect to another one.
    ShuttingDown,
    /// [`Event::CloseTunnel`] named a tunnel this session does not serve.
    UnknownTunnel,
    /// A code this version does not know.
    #[serde(other)]
    Unknown,
}

impl RejectCode {
    /// Whether trying again later (or elsewhere) may succeed without the user changing anything.
    pub fn is_retryable(self) -> bool {
        matches!(self, RejectCode::Overloaded | RejectCode::ShuttingDown)
    }
}

/// A session-level message after the handshake, in either direction.
///
/// On the wire an object with a `type` field and the variant's fields beside it. Decoding goes
/// through [`WireEvent`] rather than serde's derive for internally tagged enums, which buffers
/// every message into an intermediate tree first: that cost the agent 8,000 instructions per
/// request log, a third of its whole per-request work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Edge → agent: one visitor request finished (or its response started streaming).
    RequestLog(RequestLog),
    /// Edge → agent: several visitor requests finished, oldest first (at most
    /// [`MAX_REQUEST_LOGS_PER_EVENT`]); sent only to agents whose HELLO set
    /// `request_log_batches`.
    RequestLogs { entries: Vec<RequestLog> },
    /// Edge → agent: a tunnel on this session was closed (by an operator, or taken over).
    TunnelClosed { id: TunnelId, reason: String },
    /// A message worth showing the user.
    Notice { message: String },
    /// Agent → edge, on a session whose WELCOME set `dynamic_tunnels`: serve one more tunnel.
    /// `spec.id` must be new on this session; with control, `grant` is the tunnel's own grant
    /// (checked like a HELLO's). Answered with [`Event::TunnelOpened`] once the route is live,
    /// or [`Event::TunnelRefused`].
    OpenTunnel {
        spec: TunnelRequest,
        #[serde(skip_serializing_if = "Option::is_none")]
        grant: Option<GrantToken>,
    },
    /// Edge → agent: the tunnel `id` is routable at `public_url`.
    TunnelOpened {
        id: TunnelId,
        hostname: String,
        public_url: String,
    },
    /// Edge → agent: the tunnel `id` was not opened (or, for [`Event::CloseTunnel`], is not
    /// served here: [`RejectCode::UnknownTunnel`]).
    TunnelRefused {
        id: TunnelId,
        code: RejectCode,
        message: String,
    },
    /// Agent → edge: stop serving tunnel `id`; the session stays. Answered with
    /// [`Event::TunnelClosed`].
    CloseTunnel { id: TunnelId },
    /// A type this version does not know; ignored.
    #[serde(other)]
    Unknown,
}

/// Every field any [`Event`] has, read in one pass; [`Event`]'s `Deserialize` picks the
/// variant by `type` and checks the fields it needs. Unknown fields are ignored, as everywhere.
/// The names below are therefore reserved across event types: a future type must not reuse
/// one with another JSON type (older peers would reject it instead of ignoring it).
#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    // request_log
    tunnel: Option<TunnelId>,
    request_id: Option<String>,
    method: Option<String>,
    path: Option<String>,
    status: Option<u16>,
    duration_us: Option<u64>,
    bytes_in: Option<u64>,
    bytes_out: Option<u64>,
    error: Option<String>,
    // request_logs
    entries: Option<Vec<RequestLog>>,
    // tunnel_closed
    id: Option<TunnelId>,
    reason: Option<String>,
    // notice, tunnel_refused
    message: Option<String>,
    // open_tunnel
    spec: Option<TunnelRequest>,
    grant: Option<GrantToken>,
    // tunnel_opened
    hostname: Option<String>,
    public_url: Option<String>,
    // tunnel_refused
    code: Option<RejectCode>,
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Event, D::Error> {
        use serde::de::Error;
        fn need<T, E: Error>(value: Option<T>, field: &'static str) -> Result<T, E> {
            value.ok_or_else(|| E::missing_field(field))
        }
        let wire = WireEvent::deserialize(deserializer)?;
        Ok(match wire.kind.as_str() {
            "request_log" => Event::RequestLog(RequestLog {
                tunnel: need(wire.tunnel, "tunnel")?,
                request_id: need(wire.request_id, "request_id")?,
                method: need(wire.method, "method")?,
                path: need(wire.path, "path")?,
                status: need(wire.status, "status")?,
                duration_us: need(wire.duration_us, "duration_us")?,
                bytes_in: need(wire.bytes_in, "bytes_in")?,
                bytes_out: need(wire.bytes_out, "bytes_out")?,
                error: wire.error,
            }),
            "request_logs" => Event::RequestLogs {
                entries: need(wire.entries, "entries")?,
            },
            "tunnel_closed" => Event::TunnelClosed {
                id: need(wire.id, "id")?,
                reason: need(wire.reason, "reason")?,
            },
            "notice" => Event::Notice {
                message: need(wire.message, "message")?,
            },
            "open_tunnel" => Event::OpenTunnel {
                spec: need(wire.spec, "spec")?,
                grant: wire.grant,
            },
            "tunnel_opened" => Event::TunnelOpened {
                id: need(wire.id, "id")?,
                hostname: need(wire.hostname, "hostname")?,
                public_url: need(wire.public_url, "public_url")?,
            },
            "tunnel_refused" => Event::TunnelRefused {
                id: need(wire.id, "id")?,
                code: need(wire.code, "code")?,
                message: need(wire.message, "message")?,
            },
            "close_tunnel" => Event::CloseTunnel {
                id: need(wire.id, "id")?,
            },
            _ => Event::Unknown,
        })
    }
}

/// Most entries in one [`Event::RequestLogs`]: with paths capped at 512 bytes and request ids
/// at 128, a full batch stays far below the frame payload limit.
pub const MAX_REQUEST_LOGS_PER_EVENT: usize = 128;

/// One visitor request as the edge saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLog {
    pub tunnel: TunnelId,
    pub request_id: String,
    pub method: String,
    pub path: String,
    /// 0 if no response was produced.
    pub status: u16,
    /// From the request's arrival at the edge to the end of the response.
    pub duration_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Why the edge answered itself, if it did (e.g. `local-refused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A control message that can be put in a frame and read back.
pub trait ControlMessage: Serialize + for<'de> Deserialize<'de> {
    /// The frame name, for errors.
    const KIND: &'static str;

    fn to_json(&self) -> Bytes {
        // Serialising these plain structs (strings, numbers, enums) cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    fn from_json(body: &[u8]) -> Result<Self, FrameError> {
        if body.len() > MAX_PAYLOAD {
            return Err(FrameError::Oversized {
                len: body.len(),
                max: MAX_PAYLOAD,
            });
        }
        serde_json::from_slice(body).map_err(|e| FrameError::BadPayload {
            kind: Self::KIND,
            reason: e.to_string(),
        })
    }
}

impl ControlMessage for Hello {
    const KIND: &'static str = "HELLO";
}
impl ControlMessage for Welcome {
    const KIND: &'static str = "WELCOME";
}
impl ControlMessage for Reject {
    const KIND: &'static str = "REJECT";
}
impl ControlMessage for Event {
    const KIND: &'static str = "EVENT";
}

impl Hello {
    pub fn into_frame(&self) -> Frame {
        Frame::Hello {
            version: PROTOCOL_VERSION,
            body: self.to_json(),
        }
    }
}

impl Welcome {
    pub fn into_frame(&self) -> Frame {
        Frame::Welcome {
            body: self.to_json(),
        }
    }
}

impl Reject {
    pub fn new(code: RejectCode, message: impl Into<String>) -> Reject {
        Reject {
            code,
            message: message.into(),
        }
    }

    pub fn into_frame(&self) -> Frame {
        Frame::Reject {
            body: self.to_json(),
        }
    }

    /// The rejection an edge sends to an agent speaking `version`, naming what to upgrade.
    pub fn unsupported_version(version: u16) -> Reject {
        let message = if version > PROTOCOL_VERSION {
            format!(
                "this edge speaks tunnel protocol {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION} but the agent speaks {version}: the edge must be upgraded, or use an older warren CLI"
            )
        } else {
            format!(
                "the agent speaks tunnel protocol {version}, which this edge no longer supports (it needs {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}): upgrade the warren CLI"
            )
        };
        Reject::new(RejectCode::UnsupportedVersion, message)
    }
}

impl Event {
    pub fn into_frame(&self) -> Frame {
        Frame::Event {
            body: self.to_json(),
        }
    }

    /// Reads an EVENT body: JSON, or compact request logs ([`crate::request_logs`]), told
    /// apart by the first byte.
    pub fn from_body(body: &[u8]) -> Result<Event, FrameError> {
        match body.first() {
            Some(&crate::request_logs::COMPACT_REQUEST_LOGS) => crate::request_logs::decode(body),
            _ => Event::from_json(body),
        }
    }
}
