//! The binary frame: a 9-byte header and a payload.
//!
//! ```text
//! +-------------------+---------+-------------------+-----------------+
//! | length: u32 (BE)  | kind:u8 | stream: u32 (BE)  | payload (length)|
//! +-------------------+---------+-------------------+-----------------+
//! ```
//!
//! One WebSocket message carries one or more whole frames. [`Frame::decode`] tells "need more
//! bytes" (`Ok(None)`) from "invalid" (`Err`), so the codec also works on a plain byte stream.

use crate::error::{FrameError, GoAwayCode, ResetCode};
use crate::ids::{StreamId, TunnelId};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 9;
/// The largest payload any frame may carry. Larger frames are rejected before they are buffered.
pub const MAX_PAYLOAD: usize = 256 * 1024;
/// The largest DATA payload the multiplexer produces (a frame of its own per chunk).
pub const MAX_DATA_CHUNK: usize = 64 * 1024;
/// The largest WebSocket message a peer may send (several batched frames).
pub const MAX_MESSAGE: usize = 1024 * 1024;

const KIND_DATA: u8 = 0x00;
const KIND_OPEN: u8 = 0x01;
const KIND_FIN: u8 = 0x02;
const KIND_RST: u8 = 0x03;
const KIND_WINDOW: u8 = 0x04;
const KIND_PING: u8 = 0x05;
const KIND_PONG: u8 = 0x06;
const KIND_GOAWAY: u8 = 0x07;
const KIND_HELLO: u8 = 0x08;
const KIND_WELCOME: u8 = 0x09;
const KIND_REJECT: u8 = 0x0a;
const KIND_EVENT: u8 = 0x0b;

/// Every frame of the protocol, in both directions. Which side may send which is enforced by
/// [`Mux`](crate::Mux) and by the handshake code, not by the codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Stream bytes. Counts against the stream's and the session's flow-control windows.
    Data { stream: StreamId, payload: Bytes },
    /// Opens a stream for a tunnel. DATA may follow at once: the initial window is known.
    Open { stream: StreamId, tunnel: TunnelId },
    /// The sender will send no more DATA on this stream (half-close).
    Fin { stream: StreamId },
    /// Abandons a stream in both directions, with the reason.
    Rst { stream: StreamId, code: ResetCode },
    /// Returns `increment` bytes of credit, for a stream or (stream 0) the whole session.
    Window { stream: StreamId, increment: u32 },
    /// Heartbeat request; the peer answers with PONG carrying the same nonce.
    Ping { nonce: u64 },
    /// Heartbeat answer.
    Pong { nonce: u64 },
    /// The sender is closing the session: no new streams; existing ones may finish.
    GoAway { code: GoAwayCode, message: String },
    /// The agent's first frame: protocol version, then a JSON [`Hello`](crate::control::Hello).
    /// The version is outside the JSON so any future version can still read it.
    Hello { version: u16, body: Bytes },
    /// The edge accepts the session: JSON [`Welcome`](crate::control::Welcome).
    Welcome { body: Bytes },
    /// The edge refuses the session: JSON [`Reject`](crate::control::Reject).
    Reject { body: Bytes },
    /// A session-level message after the handshake: JSON [`Event`](crate::control::Event).
    Event { body: Bytes },
}

impl Frame {
    /// The frame's name, for errors and logs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Frame::Data { .. } => "DATA",
            Frame::Open { .. } => "OPEN",
            Frame::Fin { .. } => "FIN",
            Frame::Rst { .. } => "RST",
            Frame::Window { .. } => "WINDOW",
            Frame::Ping { .. } => "PING",
            Frame::Pong { .. } => "PONG",
            Frame::GoAway { .. } => "GOAWAY",
            Frame::Hello { .. } => "HELLO",
            Frame::Welcome { .. } => "WELCOME",
            Frame::Reject { .. } => "REJECT",
            Frame::Event { .. } => "EVENT",
        }
    }

    /// Appends the encoded frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Frame::Data { stream, payload } => {
                put_header(dst, KIND_DATA, *stream, payload.len());
                dst.put_slice(payload);
            }
            Frame::Open { stream, tunnel } => {
                put_header(dst, KIND_OPEN, *stream, 4);
                dst.put_u32(tunnel.0);
            }
            Frame::Fin { stream } => put_header(dst, KIND_FIN, *stream, 0),
            Frame::Rst { stream, code } => {
                put_header(dst, KIND_RST, *stream, 2);
                dst.put_u16(code.to_u16());
            }
            Frame::Window { stream, increment } => {
                put_header(dst, KIND_WINDOW, *stream, 4);
                dst.put_u32(*increment);
            }
            Frame::Ping { nonce } => {
                put_header(dst, KIND_PING, StreamId::SESSION, 8);
                dst.put_u64(*nonce);
            }
            Frame::Pong { nonce } => {
                put_header(dst, KIND_PONG, StreamId::SESSION, 8);
                dst.put_u64(*nonce);
            }
            Frame::GoAway { code, message } => {
                let message = truncate_utf8(message, MAX_PAYLOAD - 2);
                put_header(dst, KIND_GOAWAY, StreamId::SESSION, 2 + message.len());
                dst.put_u16(code.to_u16());
                dst.put_slice(message.as_bytes());
            }
            Frame::Hello { version, body } => {
                put_header(dst, KIND_HELLO, StreamId::SESSION, 2 + body.len());
                dst.put_u16(*version);
                dst.put_slice(body);
            }
            Frame::Welcome { body } => put_body(dst, KIND_WELCOME, body),
            Frame::Reject { body } => put_body(dst, KIND_REJECT, body),
            Frame::Event { body } => put_body(dst, KIND_EVENT, body),
        }
    }

    /// The encoded frame as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf.freeze()
    }

    /// Decodes one frame from the front of `src`, consuming it. `Ok(None)` means `src` holds
    /// only part of a frame and nothing was consumed. Payloads are slices of `src` (no copy).
    pub fn decode(src: &mut Bytes) -> Result<Option<Frame>, FrameError> {
        let Some((kind, stream, len)) = parse_header(src)? else {
            return Ok(None);
        };
        src.advance(HEADER_LEN);
        let payload = src.split_to(len);
        Frame::from_parts(kind, stream, payload).map(Some)
    }

    /// Like [`Frame::decode`], for a growable read buffer.
    pub fn decode_mut(src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some((kind, stream, len)) = parse_header(src)? else {
            return Ok(None);
        };
        src.advance(HEADER_LEN);
        let payload = src.split_to(len).freeze();
        Frame::from_parts(kind, stream, payload).map(Some)
    }

    /// Decodes every frame of one WebSocket message. A message that ends inside a frame is
    /// invalid: frames never span messages.
    pub fn decode_message(mut message: Bytes) -> Result<Vec<Frame>, FrameError> {
        if message.len() > MAX_MESSAGE {
            return Err(FrameError::Oversized {
                len: message.len(),
                max: MAX_MESSAGE,
            });
        }
        let mut frames = Vec::new();
        while !message.is_empty() {
            match Frame::decode(&mut message)? {
                Some(frame) => frames.push(frame),
                None => return Err(FrameError::Truncated(message.len())),
            }
        }
        Ok(frames)
    }

    fn from_parts(kind: u8, stream: u32, mut payload: Bytes) -> Result<Frame, FrameError> {
        let stream = StreamId(stream);
        let frame = match kind {
            KIND_DATA => Frame::Data {
                stream: on_stream("DATA", stream)?,
                payload,
            },
            KIND_OPEN => {
                expect_len("OPEN", &payload, 4, "4")?;
                Frame::Open {
                    stream: on_stream("OPEN", stream)?,
                    tunnel: TunnelId(payload.get_u32()),
                }
            }
            KIND_FIN => {
                expect_len("FIN", &payload, 0, "0")?;
                Frame::Fin {
                    stream: on_stream("FIN", stream)?,
                }
            }
            KIND_RST => {
                expect_len("RST", &payload, 2, "2")?;
                Frame::Rst {
                    stream: on_stream("RST", stream)?,
                    code: ResetCode::from_u16(payload.get_u16()),
                }
            }
            KIND_WINDOW => {
                expect_len("WINDOW", &payload, 4, "4")?;
                let increment = payload.get_u32();
                if increment == 0 {
                    return Err(FrameError::BadPayload {
                        kind: "WINDOW",
                        reason: "increment must not be zero".into(),
                    });
                }
                Frame::Window { stream, increment }
            }
            KIND_PING | KIND_PONG => {
                let name = if kind == KIND_PING { "PING" } else { "PONG" };
                on_session(name, stream)?;
                expect_len(name, &payload, 8, "8")?;
                let nonce = payload.get_u64();
                if kind == KIND_PING {
                    Frame::Ping { nonce }
                } else {
                    Frame::Pong { nonce }
                }
            }
            KIND_GOAWAY => {
                on_session("GOAWAY", stream)?;
                if payload.len() < 2 {
                    return Err(bad_len("GOAWAY", &payload, "at least 2"));
                }
                let code = GoAwayCode::from_u16(payload.get_u16());
                let message =
                    String::from_utf8(payload.to_vec()).map_err(|_| FrameError::BadPayload {
                        kind: "GOAWAY",
                        reason: "message is not UTF-8".into(),
                    })?;
                Frame::GoAway { code, message }
            }
            KIND_HELLO => {
                on_session("HELLO", stream)?;
                if payload.len() < 2 {
                    return Err(bad_len("HELLO", &payload, "at least 2"));
                }
                let version = payload.get_u16();
                Frame::Hello {
                    version,
                    body: payload,
                }
            }
            KIND_WELCOME => Frame::Welcome {
                body: on_session("WELCOME", stream).map(|()| payload)?,
            },
            KIND_REJECT => Frame::Reject {
                body: on_session("REJECT", stream).map(|()| payload)?,
            },
            KIND_EVENT => Frame::Event {
                body: on_session("EVENT", stream).map(|()| payload)?,
            },
            unknown => return Err(FrameError::UnknownKind(unknown)),
        };
        Ok(frame)
    }
}

/// Reads a header; `Ok(None)` if the whole frame is not there yet.
fn parse_header(src: &[u8]) -> Result<Option<(u8, u32, usize)>, FrameError> {
    if src.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(FrameError::Oversized {
            len,
            max: MAX_PAYLOAD,
        });
    }
    if src.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let kind = src[4];
    let stream = u32::from_be_bytes([src[5], src[6], src[7], src[8]]);
    Ok(Some((kind, stream, len)))
}

fn put_header(dst: &mut BytesMut, kind: u8, stream: StreamId, len: usize) {
    debug_assert!(len <= MAX_PAYLOAD, "frame payload over MAX_PAYLOAD");
    dst.reserve(HEADER_LEN + len);
    // Payload lengths are bounded by MAX_PAYLOAD (256 KiB) everywhere frames are built.
    dst.put_u32(len as u32);
    dst.put_u8(kind);
    dst.put_u32(stream.0);
}

fn put_body(dst: &mut BytesMut, kind: u8, body: &[u8]) {
    put_header(dst, kind, StreamId::SESSION, body.len());
    dst.put_slice(body);
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn on_stream(kind: &'static str, stream: StreamId) -> Result<StreamId, FrameError> {
    if stream.is_session() {
        return Err(FrameError::MissingStream { kind });
    }
    Ok(stream)
}

fn on_session(kind: &'static str, stream: StreamId) -> Result<(), FrameError> {
    if !stream.is_session() {
        return Err(FrameError::NotSessionFrame {
            kind,
            stream: stream.0,
        });
    }
    Ok(())
}

fn expect_len(
    kind: &'static str,
    payload: &Bytes,
    len: usize,
    expected: &'static str,
) -> Result<(), FrameError> {
    if payload.len() != len {
        return Err(bad_len(kind, payload, expected));
    }
    Ok(())
}

fn bad_len(kind: &'static str, payload: &Bytes, expected: &'static str) -> FrameError {
    FrameError::BadLength {
        kind,
        len: payload.len(),
        expected,
    }
}
