//! Protocol errors: what ends a session ([`ProtoError`]), what a decoder rejects
//! ([`FrameError`]), and why a single stream was reset ([`ResetCode`]).

use crate::ids::StreamId;
use thiserror::Error;

/// A frame that cannot be decoded. Always fatal for the session that sent it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame payload of {len} bytes exceeds the limit of {max} bytes")]
    Oversized { len: usize, max: usize },
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    #[error("{kind} frame has a {len}-byte payload; expected {expected}")]
    BadLength {
        kind: &'static str,
        len: usize,
        expected: &'static str,
    },
    #[error("{kind} frame must be sent on stream 0, not stream {stream}")]
    NotSessionFrame { kind: &'static str, stream: u32 },
    #[error("{kind} frame must name a stream, not stream 0")]
    MissingStream { kind: &'static str },
    #[error("message ends in the middle of a frame ({0} bytes left over)")]
    Truncated(usize),
    #[error("malformed {kind} payload: {reason}")]
    BadPayload { kind: &'static str, reason: String },
}

/// An error that ends a whole session. The peer is told with GOAWAY where possible.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtoError {
    #[error("invalid frame: {0}")]
    Frame(#[from] FrameError),
    #[error("stream {stream} sent {len} bytes beyond its flow-control window")]
    StreamFlowControl { stream: StreamId, len: usize },
    #[error("the session sent {len} bytes beyond its flow-control window")]
    SessionFlowControl { len: usize },
    #[error("window update overflows the send window of stream {0}")]
    WindowOverflow(StreamId),
    #[error("stream {0} was opened out of order or with the wrong parity")]
    BadStreamId(StreamId),
    #[error("{kind} frame for stream {stream}, which was never opened")]
    UnopenedStream {
        kind: &'static str,
        stream: StreamId,
    },
    #[error("unexpected {0} frame after the handshake")]
    UnexpectedFrame(&'static str),
    #[error("no frame from the peer for {0} ms: heartbeat deadline missed")]
    HeartbeatTimeout(u64),
}

impl ProtoError {
    /// The GOAWAY code that tells the peer why the session is being closed.
    pub fn goaway_code(&self) -> GoAwayCode {
        match self {
            ProtoError::HeartbeatTimeout(_) => GoAwayCode::Timeout,
            ProtoError::StreamFlowControl { .. }
            | ProtoError::SessionFlowControl { .. }
            | ProtoError::WindowOverflow(_) => GoAwayCode::FlowControl,
            _ => GoAwayCode::Protocol,
        }
    }
}

/// Why a stream was reset (RST). Unknown codes from newer peers decode as [`ResetCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResetCode {
    /// The side that opened the stream no longer wants it (visitor went away).
    Cancel,
    /// The receiver will not accept the stream (too many streams, unknown tunnel).
    Refused,
    /// The agent could not connect to the local service: connection refused.
    LocalRefused,
    /// The agent's connection attempt to the local service timed out.
    LocalTimeout,
    /// The local service failed after the connection was made (reset, I/O error).
    LocalError,
    /// The stream was idle for longer than allowed.
    Idle,
    /// The session is shutting down and the stream could not finish in time.
    Shutdown,
    /// The peer broke the protocol on this stream.
    Protocol,
    /// A code this version does not know.
    Other(u16),
}

impl ResetCode {
    pub fn to_u16(self) -> u16 {
        match self {
            ResetCode::Cancel => 1,
            ResetCode::Refused => 2,
            ResetCode::LocalRefused => 3,
            ResetCode::LocalTimeout => 4,
            ResetCode::LocalError => 5,
            ResetCode::Idle => 6,
            ResetCode::Shutdown => 7,
            ResetCode::Protocol => 8,
            ResetCode::Other(code) => code,
        }
    }

    pub fn from_u16(code: u16) -> ResetCode {
        match code {
            1 => ResetCode::Cancel,
            2 => ResetCode::Refused,
            3 => ResetCode::LocalRefused,
            4 => ResetCode::LocalTimeout,
            5 => ResetCode::LocalError,
            6 => ResetCode::Idle,
            7 => ResetCode::Shutdown,
            8 => ResetCode::Protocol,
            other => ResetCode::Other(other),
        }
    }

    /// A short, stable name used in logs and in the edge's error header.
    pub fn as_str(self) -> &'static str {
        match self {
            ResetCode::Cancel => "cancel",
            ResetCode::Refused => "refused",
            ResetCode::LocalRefused => "local-refused",
            ResetCode::LocalTimeout => "local-timeout",
            ResetCode::LocalError => "local-error",
            ResetCode::Idle => "idle",
            ResetCode::Shutdown => "shutdown",
            ResetCode::Protocol => "protocol",
            ResetCode::Other(_) => "other",
        }
    }
}

impl std::fmt::Display for ResetCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResetCode::Other(code) => write!(f, "reset code {code}"),
            known => f.write_str(known.as_str()),
        }
    }
}

/// Why a session is going away (GOAWAY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoAwayCode {
    /// Orderly: the sender is draining (edge shutdown, agent exit). Reconnect elsewhere.
    Normal,
    /// The peer broke the protocol.
    Protocol,
    /// The peer overran a flow-control window.
    FlowControl,
    /// Nothing arrived before the heartbeat deadline.
    Timeout,
    /// The tunnel was closed by an operator or by the account owner.
    Closed,
    /// Another session of the same account took over this session's tunnels.
    Replaced,
    /// A code this version does not know.
    Other(u16),
}

impl GoAwayCode {
    pub fn to_u16(self) -> u16 {
        match self {
            GoAwayCode::Normal => 0,
            GoAwayCode::Protocol => 1,
            GoAwayCode::FlowControl => 2,
            GoAwayCode::Timeout => 3,
            GoAwayCode::Closed => 4,
            GoAwayCode::Replaced => 5,
            GoAwayCode::Other(code) => code,
        }
    }

    pub fn from_u16(code: u16) -> GoAwayCode {
        match code {
            0 => GoAwayCode::Normal,
            1 => GoAwayCode::Protocol,
            2 => GoAwayCode::FlowControl,
            3 => GoAwayCode::Timeout,
            4 => GoAwayCode::Closed,
            5 => GoAwayCode::Replaced,
            other => GoAwayCode::Other(other),
        }
    }

    /// Whether an agent should reconnect after receiving this code.
    pub fn should_reconnect(self) -> bool {
        !matches!(self, GoAwayCode::Closed | GoAwayCode::Replaced)
    }
}
