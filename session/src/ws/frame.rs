//! RFC 6455 frames without I/O: a [`Decoder`] that takes whole messages out of a buffer of
//! received bytes (checking what a WebSocket peer must check), and the encoding the writer
//! uses. The reader (`mod.rs`) owns the socket and the buffers; this module only looks at
//! bytes, so it is tested and fuzzed without a socket (`fuzz/fuzz_targets/ws_frame.rs`).

use bytes::{Buf, Bytes, BytesMut};

/// Longest frame header: 2 bytes, 8 bytes of extended length, 4 bytes of mask.
pub const MAX_HEADER: usize = 14;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;
/// The FIN bit of a frame's first byte: the last frame of a message.
pub const FIN: u8 = 0x80;

/// Which end of the WebSocket this is: the client (agent) masks what it sends, the server
/// (edge) does not, and each refuses frames masked the other way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsRole {
    Client,
    Server,
}

/// One complete message from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    Binary(Bytes),
    /// A text message (its content is not needed: sessions refuse them).
    Text,
    /// Already answered: the decoder keeps the pong owed ([`Decoder::take_pong`]).
    Ping,
    Pong,
    Close,
}

/// Bytes a peer must not send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("WebSocket message of {len} bytes is over the {max}-byte limit")]
    TooLong { len: u64, max: usize },
}

/// The sizes of the frame at the start of the buffer, once its header is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLen {
    pub header: usize,
    pub payload: usize,
}

/// What [`Decoder::decode`] found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A whole message. `one_frame`: it came in a single frame, so a binary payload is that
    /// frame's bytes split off the buffer without a copy.
    Message { message: WsMessage, one_frame: bool },
    /// A fragment of a longer message was taken in: decode again.
    Fragment,
    /// More bytes are needed; the frame's sizes if its header is complete.
    Incomplete(Option<FrameLen>),
}

/// Decodes frames into messages for one end of a WebSocket.
#[derive(Debug)]
pub struct Decoder {
    role: WsRole,
    max_message: usize,
    /// The message being reassembled from fragments, if one is.
    fragments: Option<Fragments>,
    /// The payload of the last ping, to be echoed in a pong.
    pong: Option<Bytes>,
}

/// A message whose first fragments have arrived.
#[derive(Debug)]
struct Fragments {
    text: bool,
    data: BytesMut,
}

impl Decoder {
    /// A decoder for `role` that refuses messages over `max_message` bytes.
    pub fn new(role: WsRole, max_message: usize) -> Decoder {
        Decoder {
            role,
            max_message,
            fragments: None,
            pong: None,
        }
    }

    /// A message has started (some of its fragments arrived) and not ended.
    pub fn in_message(&self) -> bool {
        self.fragments.is_some()
    }

    /// The pong owed for the latest ping, if any.
    pub fn take_pong(&mut self) -> Option<Bytes> {
        self.pong.take()
    }

    /// Takes at most one frame off the front of `buf`. Control frames between fragments are
    /// returned at once, as RFC 6455 allows them there. Bytes that are consumed are exactly
    /// the frame's; on `Incomplete` nothing is.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, DecodeError> {
        let header = match parse_header(buf, self.role, self.max_message)? {
            Some(h) if buf.len() >= h.len.header + h.len.payload => h,
            other => return Ok(Step::Incomplete(other.map(|h| h.len))),
        };
        buf.advance(header.len.header);
        let mut payload = buf.split_to(header.len.payload);
        if let Some(mask) = header.mask {
            apply_mask(&mut payload, mask);
        }
        self.message(header.fin, header.opcode, payload)
    }

    fn message(&mut self, fin: bool, opcode: u8, payload: BytesMut) -> Result<Step, DecodeError> {
        let whole = |message| {
            Ok(Step::Message {
                message,
                one_frame: true,
            })
        };
        match opcode {
            OP_BINARY | OP_TEXT if self.fragments.is_some() => Err(DecodeError::Protocol(
                "a new message started before the previous one ended",
            )),
            OP_BINARY if fin => whole(WsMessage::Binary(payload.freeze())),
            OP_TEXT if fin => whole(WsMessage::Text),
            OP_BINARY | OP_TEXT => {
                self.fragments = Some(Fragments {
                    text: opcode == OP_TEXT,
                    data: payload,
                });
                Ok(Step::Fragment)
            }
            OP_CONTINUATION => {
                let Some(mut message) = self.fragments.take() else {
                    return Err(DecodeError::Protocol(
                        "a continuation frame with no message",
                    ));
                };
                let len = message.data.len() + payload.len();
                if len > self.max_message {
                    return Err(DecodeError::TooLong {
                        len: len as u64,
                        max: self.max_message,
                    });
                }
                message.data.extend_from_slice(&payload);
                if !fin {
                    self.fragments = Some(message);
                    return Ok(Step::Fragment);
                }
                let message = if message.text {
                    WsMessage::Text
                } else {
                    WsMessage::Binary(message.data.freeze())
                };
                Ok(Step::Message {
                    message,
                    one_frame: false,
                })
            }
            OP_PING => {
                self.pong = Some(payload.freeze());
                whole(WsMessage::Ping)
            }
            OP_PONG => whole(WsMessage::Pong),
            OP_CLOSE => whole(WsMessage::Close),
            _ => Err(DecodeError::Protocol("unknown opcode")),
        }
    }
}

/// A frame header, checked.
struct Header {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: FrameLen,
}

/// Parses the header at the start of `buf`: `None` until it is complete; an error as soon as
/// what is there is wrong (so a hostile length is refused before anything is allocated).
fn parse_header(buf: &[u8], role: WsRole, max: usize) -> Result<Option<Header>, DecodeError> {
    let Some(&[b0, b1]) = buf.get(..2) else {
        return Ok(None);
    };
    let fin = b0 & FIN != 0;
    if b0 & 0x70 != 0 {
        return Err(DecodeError::Protocol(
            "reserved bits set (no extension was agreed)",
        ));
    }
    let opcode = b0 & 0x0f;
    let masked = b1 & 0x80 != 0;
    match (role, masked) {
        (WsRole::Server, false) => {
            return Err(DecodeError::Protocol("a client frame that is not masked"));
        }
        (WsRole::Client, true) => return Err(DecodeError::Protocol("a masked server frame")),
        _ => {}
    }
    let (len, mut header) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(b);
                (u64::from_be_bytes(be), 10)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    if opcode & 0x08 != 0 && (!fin || len > 125) {
        return Err(DecodeError::Protocol(
            "a control frame that is fragmented or longer than 125 bytes",
        ));
    }
    let payload = usize::try_from(len)
        .ok()
        .filter(|&n| n <= max)
        .ok_or(DecodeError::TooLong { len, max })?;
    let mask = if masked {
        let Some(m) = buf.get(header..header + 4) else {
            return Ok(None);
        };
        header += 4;
        Some([m[0], m[1], m[2], m[3]])
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        len: FrameLen { header, payload },
    }))
}

/// Appends the header of a frame whose first byte is `b0` (FIN and opcode) and whose payload
/// is `len` bytes, masked with `mask` if given. The payload itself follows, masked by the
/// caller ([`apply_mask`]).
pub fn encode_header(out: &mut Vec<u8>, b0: u8, len: usize, mask: Option<[u8; 4]>) {
    let mut header = [0u8; MAX_HEADER];
    header[0] = b0;
    let mut at = 1;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        header[at] = mask_bit | len as u8;
        at += 1;
    } else if let Ok(short) = u16::try_from(len) {
        header[at] = mask_bit | 126;
        header[at + 1..at + 3].copy_from_slice(&short.to_be_bytes());
        at += 3;
    } else {
        header[at] = mask_bit | 127;
        header[at + 1..at + 9].copy_from_slice(&(len as u64).to_be_bytes());
        at += 9;
    }
    if let Some(mask) = mask {
        header[at..at + 4].copy_from_slice(&mask);
        at += 4;
    }
    out.extend_from_slice(&header[..at]);
}

/// Appends a whole frame: header and payload, masked if `mask` is given.
pub fn encode_frame(out: &mut Vec<u8>, b0: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    encode_header(out, b0, payload.len(), mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask);
    }
}

/// XORs `buf` with the repeating 4-byte `mask`, 8 bytes at a time.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
    }
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Decodes everything in `bytes`, a byte at a time: messages until an error or the end.
    fn decode_all(role: WsRole, bytes: &[u8], max: usize) -> Result<Vec<WsMessage>, DecodeError> {
        let mut decoder = Decoder::new(role, max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &byte in bytes {
            buf.extend_from_slice(&[byte]);
            loop {
                match decoder.decode(&mut buf)? {
                    Step::Message { message, .. } => out.push(message),
                    Step::Fragment => {}
                    Step::Incomplete(_) => break,
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn mask_matches_the_byte_by_byte_definition() {
        let mask = [0x6d, 0xb6, 0xb2, 0x80];
        for len in [0, 1, 3, 7, 8, 9, 15, 16, 17, 100, 1027] {
            let data = pattern(len);
            let mut fast = data.clone();
            apply_mask(&mut fast, mask);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow, "length {len}");
        }
    }

    #[test]
    fn every_length_encoding_round_trips_in_both_directions() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            for (role, mask) in [(WsRole::Server, Some([1, 2, 3, 4])), (WsRole::Client, None)] {
                let mut raw = Vec::new();
                encode_frame(&mut raw, FIN | OP_BINARY, &pattern(len), mask);
                let mut buf = BytesMut::from(&raw[..]);
                let step = Decoder::new(role, 1 << 20).decode(&mut buf);
                assert_eq!(
                    step,
                    Ok(Step::Message {
                        message: WsMessage::Binary(pattern(len).into()),
                        one_frame: true
                    }),
                    "length {len}, {role:?}"
                );
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn incomplete_frames_consume_nothing_and_report_their_size() {
        let mut raw = Vec::new();
        encode_frame(&mut raw, FIN | OP_BINARY, &pattern(300), Some([9, 9, 9, 9]));
        let mut decoder = Decoder::new(WsRole::Server, 1024);
        for cut in 0..raw.len() {
            let mut buf = BytesMut::from(&raw[..cut]);
            let step = decoder.decode(&mut buf).expect("a valid prefix");
            let expected = (cut >= 8).then_some(FrameLen {
                header: 8,
                payload: 300,
            });
            assert_eq!(step, Step::Incomplete(expected), "cut at {cut}");
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn fragments_are_reassembled_around_control_frames() {
        let mask = Some([1, 2, 3, 4]);
        let mut raw = Vec::new();
        encode_frame(&mut raw, OP_BINARY, b"abc", mask);
        encode_frame(&mut raw, FIN | OP_PING, b"hi", mask);
        encode_frame(&mut raw, OP_CONTINUATION, b"def", mask);
        encode_frame(&mut raw, FIN | OP_CONTINUATION, b"g", mask);
        encode_frame(&mut raw, OP_TEXT, b"x", mask);
        encode_frame(&mut raw, FIN | OP_CONTINUATION, b"y", mask);
        let messages = decode_all(WsRole::Server, &raw, 100).expect("valid frames");
        assert_eq!(
            messages,
            [
                WsMessage::Ping,
                WsMessage::Binary(Bytes::from_static(b"abcdefg")),
                WsMessage::Text
            ]
        );
    }

    #[test]
    fn frames_a_peer_must_not_send_are_refused() {
        let m = Some([9, 8, 7, 6]);
        // (who reads, first header byte, payload length, mask, what the error must say)
        type Case = (WsRole, u8, usize, Option<[u8; 4]>, &'static str);
        let cases: [Case; 7] = [
            (WsRole::Server, 0x82, 1, None, "not masked"),
            (WsRole::Client, 0x82, 1, m, "masked server frame"),
            (WsRole::Server, 0xC2, 1, m, "reserved bits"),
            (WsRole::Server, 0x83, 1, m, "unknown opcode"),
            (
                WsRole::Server,
                0x80,
                1,
                m,
                "continuation frame with no message",
            ),
            (WsRole::Server, 0x09, 1, m, "control frame"),
            (WsRole::Server, 0x89, 126, m, "control frame"),
        ];
        for (role, b0, len, mask, expected) in cases {
            let mut raw = Vec::new();
            encode_frame(&mut raw, b0, &vec![0; len], mask);
            let error = decode_all(role, &raw, 1024).expect_err("must be refused");
            assert!(error.to_string().contains(expected), "{b0:#x}: {error}");
        }
        // A length field claiming 2^63 bytes is refused from the header alone.
        let raw = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0];
        let mut buf = BytesMut::from(&raw[..]);
        assert!(matches!(
            Decoder::new(WsRole::Server, 1024).decode(&mut buf),
            Err(DecodeError::TooLong { .. })
        ));
    }
}
