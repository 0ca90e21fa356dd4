//! RFC 6455 framing for a tunnel session after its HTTP upgrade.
//!
//! The upgrade itself (request, `101`, accept key) is done by hyper on the edge and by
//! tokio-tungstenite on the agent; from then on the session's bytes go through this module
//! instead of tungstenite. Why (docs/performance.md, "WebSocket framing"): tungstenite
//! zero-fills its whole read window before every socket read (21 % of the agent's and 4 % of
//! the edge's instructions on small requests), masks in a second pass over its copy of the
//! payload, and wraps every message in its own types. Here a read goes into the spare capacity
//! of one buffer without filling it first, payloads leave that buffer as [`Bytes`] without a
//! copy, and the sender masks while it copies.
//!
//! What is supported is what a session needs, checked as a WebSocket peer must check it:
//! binary messages (fragmented or not), pings answered with pongs, pongs ignored, close frames,
//! masking by role (a client must mask, a server must not), no extensions (RSV bits set are an
//! error) and a size cap on every message. Text messages are reported so the session can refuse
//! them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use warren_proto::frame::MAX_MESSAGE;

/// Which end of the WebSocket this is: the client (agent) masks what it sends, the server
/// (edge) does not, and each refuses frames masked the other way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsRole {
    Client,
    Server,
}

/// Spare room made in the read buffer before a socket read when no larger frame is pending.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes gathered before the writer hands them to the socket; bounds a session's write
/// buffer whatever the size of a batch.
const WRITE_CHUNK: usize = 128 * 1024;
/// Payloads written straight from their buffer (see [`WsWriter::direct`]).
const DIRECT_WRITE: usize = 16 * 1024;
/// Longest frame header: 2 bytes, 8 bytes of extended length, 4 bytes of mask.
const MAX_HEADER: usize = 14;
/// Frames from this size on are read into a buffer of their own, which is kept after its
/// payload is handed out and reused once every piece of that payload has been dropped.
const RECYCLE_FROM: usize = 64 * 1024;
/// Such buffers kept per session (a full batch is ~330 KiB, in a 512 KiB buffer): enough for
/// the batches still in flight to many streams. Spare ones go at a quiet heartbeat.
const RECYCLE_KEEP: usize = 32;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// What went wrong on the WebSocket; the message says what the peer did.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("WebSocket message of {len} bytes is over the {max}-byte limit")]
    TooLong { len: u64, max: usize },
    #[error("the connection ended in the middle of a WebSocket frame")]
    Truncated,
}

/// One complete message from the peer.
#[derive(Debug, PartialEq, Eq)]
pub enum WsMessage {
    Binary(Bytes),
    /// A text message (its content is not needed: sessions refuse them).
    Text,
    /// Already answered: the reader queues the pong for the writer ([`WsReader::take_pong`]).
    Ping,
    Pong,
    Close,
}

/// A WebSocket whose upgrade is done, split into its two directions.
pub struct WebSocket<S> {
    pub reader: WsReader<ReadHalf<S>>,
    pub writer: WsWriter<WriteHalf<S>>,
}

impl<S: AsyncRead + AsyncWrite> WebSocket<S> {
    /// Frames `io`, whose upgrade is complete and none of whose bytes have been read past it.
    /// Messages are capped at the tunnel protocol's [`MAX_MESSAGE`].
    pub fn new(io: S, role: WsRole) -> WebSocket<S> {
        let (read, write) = tokio::io::split(io);
        WebSocket {
            reader: WsReader::new(read, role, MAX_MESSAGE),
            writer: WsWriter::new(write, role),
        }
    }

    /// The agent's side of a tokio-tungstenite client handshake. Safe to take over because an
    /// edge says nothing after `101 Switching Protocols` until it has the agent's HELLO, so
    /// tungstenite holds no bytes of the session yet.
    pub fn from_client_handshake(ws: tokio_tungstenite::WebSocketStream<S>) -> WebSocket<S> {
        WebSocket::new(ws.into_inner(), WsRole::Client)
    }

    /// Reads the next message, answering pings on the way.
    pub async fn read(&mut self) -> Result<Option<WsMessage>, WsError> {
        loop {
            let message = self.reader.read().await?;
            if let Some(payload) = self.reader.take_pong() {
                self.writer.pong(payload).await?;
            }
            if message != Some(WsMessage::Ping) {
                return Ok(message);
            }
        }
    }

    /// Sends one binary message and flushes it.
    pub async fn send(&mut self, payload: Bytes) -> Result<(), WsError> {
        self.writer.send(std::iter::once(payload)).await
    }

    /// Sends a close frame (normal closure) and shuts the connection down.
    pub async fn close(&mut self) -> Result<(), WsError> {
        self.writer.close().await
    }
}

/// The receiving half: frames in, messages out.
pub struct WsReader<R> {
    io: R,
    role: WsRole,
    max_message: usize,
    buf: BytesMut,
    /// The message being reassembled from fragments, if one is.
    fragments: Option<Fragments>,
    /// The payload of the last ping, to be echoed in a pong.
    pong: Option<Bytes>,
    /// Payloads of large frames handed out, each with the capacity of the buffer it starts,
    /// kept to reuse those buffers (see [`RECYCLE_FROM`]).
    recycled: Vec<(Bytes, usize)>,
    /// Set when `buf` was just made for the large frame at its start: that frame's payload,
    /// once split out, is what keeps the buffer (capacity given) for reuse.
    fresh: Option<usize>,
    /// Where the large frame being read ends in `buf` (0 if none): reads stop there, so the
    /// next frame starts in a buffer of its own instead of being copied out of this one.
    large_end: usize,
    /// A large frame arrived since the last [`WsReader::release_spare`].
    large_since_release: bool,
}

impl<R: AsyncRead + Unpin> WsReader<R> {
    pub fn new(io: R, role: WsRole, max_message: usize) -> WsReader<R> {
        WsReader {
            io,
            role,
            max_message,
            buf: BytesMut::new(),
            fragments: None,
            pong: None,
            recycled: Vec::new(),
            fresh: None,
            large_end: 0,
            large_since_release: false,
        }
    }

    /// Lets go of the buffers kept for reuse if no large frame arrived since the last call, so
    /// a session that is done with bulk transfers keeps no spare memory. Called on every
    /// heartbeat deadline.
    pub fn release_spare(&mut self) {
        if !self.large_since_release {
            self.recycled = Vec::new();
        }
        self.large_since_release = false;
    }

    /// A kept buffer nothing else refers to any more, emptied, with room for `need` bytes.
    ///
    /// Why: payloads of large frames are handed out without a copy, so each one needs a buffer
    /// of its own while it is in flight. Allocating a fresh ~330 KiB buffer per frame made
    /// glibc hand the freed ones back to the kernel (heap trimming, `madvise(MADV_DONTNEED)` of
    /// 1-4 MiB) and fault new pages in for the next: 40-130 page faults per 1 MiB response on
    /// the edge, a quarter of its CPU (docs/performance.md, "2026-12-04 evening").
    fn take_recycled(&mut self, need: usize) -> Option<BytesMut> {
        let at = (self.recycled.iter())
            .position(|(b, cap)| *cap >= need && b.is_unique())
            .or_else(|| self.recycled.iter().position(|(b, _)| b.is_unique()))?;
        let mut buf = self.recycled.swap_remove(at).0.try_into_mut().ok()?;
        buf.clear();
        buf.reserve(size_class(need));
        Some(buf)
    }

    /// Keeps the buffer behind a large payload (of `capacity` bytes) for reuse.
    fn keep(&mut self, payload: &Bytes, capacity: usize) {
        self.large_since_release = true;
        if self.recycled.len() < RECYCLE_KEEP {
            self.recycled.push((payload.clone(), capacity));
        }
    }

    /// The pong owed for the latest ping, if any (the reader cannot write; whoever owns the
    /// writer sends it).
    pub fn take_pong(&mut self) -> Option<Bytes> {
        self.pong.take()
    }

    /// Reads the next message; `None` when the peer closed the connection between messages.
    /// Cancel-safe: a message read partly stays in the buffer for the next call.
    pub async fn read(&mut self) -> Result<Option<WsMessage>, WsError> {
        loop {
            if let Some(message) = self.parse()? {
                return Ok(Some(message));
            }
            if self.buf.is_empty() && self.buf.capacity() > 4 * READ_CHUNK {
                // Between large messages: an idle session keeps no large buffer.
                self.buf = BytesMut::new();
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            let read = if self.large_end > self.buf.len() {
                let room = self.large_end - self.buf.len();
                self.io.read_buf(&mut (&mut self.buf).limit(room)).await?
            } else {
                self.io.read_buf(&mut self.buf).await?
            };
            if read == 0 {
                return if self.buf.is_empty() && self.fragments.is_none() {
                    Ok(None)
                } else {
                    Err(WsError::Truncated)
                };
            }
        }
    }

    /// Takes one message out of the buffer if a whole one is there. Control frames between
    /// fragments are returned at once, as RFC 6455 allows them there.
    fn parse(&mut self) -> Result<Option<WsMessage>, WsError> {
        loop {
            let Some(frame) = self.parse_frame()? else {
                return Ok(None);
            };
            // The buffer made for this frame, if one was: only a whole message keeps it.
            let fresh = self.fresh.take();
            let Frame {
                fin,
                opcode,
                payload,
            } = frame;
            match opcode {
                OP_BINARY | OP_TEXT if self.fragments.is_some() => {
                    return Err(WsError::Protocol(
                        "a new message started before the previous one ended",
                    ));
                }
                OP_BINARY if fin => {
                    let payload = payload.freeze();
                    if let Some(capacity) = fresh {
                        self.keep(&payload, capacity);
                    }
                    return Ok(Some(WsMessage::Binary(payload)));
                }
                OP_BINARY => {
                    self.fragments = Some(Fragments {
                        text: false,
                        data: payload,
                    })
                }
                OP_TEXT if fin => return Ok(Some(WsMessage::Text)),
                OP_TEXT => {
                    self.fragments = Some(Fragments {
                        text: true,
                        data: payload,
                    })
                }
                OP_CONTINUATION => {
                    let Some(mut message) = self.fragments.take() else {
                        return Err(WsError::Protocol("a continuation frame with no message"));
                    };
                    let len = message.data.len() + payload.len();
                    if len > self.max_message {
                        return Err(WsError::TooLong {
                            len: len as u64,
                            max: self.max_message,
                        });
                    }
                    message.data.extend_from_slice(&payload);
                    if !fin {
                        self.fragments = Some(message);
                    } else if message.text {
                        return Ok(Some(WsMessage::Text));
                    } else {
                        return Ok(Some(WsMessage::Binary(message.data.freeze())));
                    }
                }
                OP_PING => {
                    self.pong = Some(payload.freeze());
                    return Ok(Some(WsMessage::Ping));
                }
                OP_PONG => return Ok(Some(WsMessage::Pong)),
                OP_CLOSE => return Ok(Some(WsMessage::Close)),
                _ => return Err(WsError::Protocol("unknown opcode")),
            }
        }
    }

    /// Takes one frame out of the buffer if a whole one is there, unmasked; makes room for the
    /// rest of it otherwise.
    fn parse_frame(&mut self) -> Result<Option<Frame>, WsError> {
        let Some(&[b0, b1]) = self.buf.get(..2) else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(WsError::Protocol(
                "reserved bits set (no extension was agreed)",
            ));
        }
        let opcode = b0 & 0x0f;
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (WsRole::Server, false) => {
                return Err(WsError::Protocol("a client frame that is not masked"));
            }
            (WsRole::Client, true) => return Err(WsError::Protocol("a masked server frame")),
            _ => {}
        }
        let (len, mut header) = match b1 & 0x7f {
            126 => match self.buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match self.buf.get(2..10) {
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
            return Err(WsError::Protocol(
                "a control frame that is fragmented or longer than 125 bytes",
            ));
        }
        if len > self.max_message as u64 {
            return Err(WsError::TooLong {
                len,
                max: self.max_message,
            });
        }
        // Below `max_message`, so it fits in usize.
        let len = len as usize;
        let mask = if masked {
            let Some(m) = self.buf.get(header..header + 4) else {
                return Ok(None);
            };
            let mask = [m[0], m[1], m[2], m[3]];
            header += 4;
            Some(mask)
        } else {
            None
        };
        if self.buf.len() < header + len {
            // Room for the whole frame at once: one allocation (or a reused one), and reads as
            // large as the kernel has bytes for.
            let need = header + len;
            if len >= RECYCLE_FROM {
                self.large_end = need;
            }
            if len >= RECYCLE_FROM && self.buf.capacity() < need {
                let mut fresh = (self.take_recycled(need))
                    .unwrap_or_else(|| BytesMut::with_capacity(size_class(need)));
                fresh.extend_from_slice(&self.buf);
                self.fresh = Some(fresh.capacity());
                self.buf = fresh;
                return Ok(None);
            }
            self.buf.reserve(need - self.buf.len());
            return Ok(None);
        }
        self.large_end = 0;
        self.buf.advance(header);
        let mut payload = self.buf.split_to(len);
        if let Some(mask) = mask {
            apply_mask(&mut payload, mask);
        }
        Ok(Some(Frame {
            fin,
            opcode,
            payload,
        }))
    }
}

/// The capacity given to a buffer for a large frame of `need` bytes: the next power of two,
/// so that buffers kept for reuse fit the frames that follow (batches vary in size).
fn size_class(need: usize) -> usize {
    need.checked_next_power_of_two().unwrap_or(need)
}

/// A message whose first fragments have arrived.
struct Fragments {
    text: bool,
    data: BytesMut,
}

struct Frame {
    fin: bool,
    opcode: u8,
    payload: BytesMut,
}

/// The sending half: binary messages in batches, one flush per batch.
pub struct WsWriter<W> {
    io: W,
    role: WsRole,
    out: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> WsWriter<W> {
    pub fn new(io: W, role: WsRole) -> WsWriter<W> {
        WsWriter {
            io,
            role,
            out: Vec::new(),
        }
    }

    /// Sends each payload as one binary message, then flushes.
    pub async fn send(&mut self, payloads: impl IntoIterator<Item = Bytes>) -> Result<(), WsError> {
        for payload in payloads {
            if payload.len() < DIRECT_WRITE {
                self.frame(OP_BINARY, &payload).await?;
                continue;
            }
            match self.role {
                WsRole::Server => self.direct(&payload, None).await?,
                // The client must mask: in place if this is the only reference to the payload
                // (full batches from the multiplexer are), else while copying it.
                WsRole::Client => match payload.try_into_mut() {
                    Ok(mut owned) => {
                        let mask = rand::random::<[u8; 4]>();
                        apply_mask(&mut owned, mask);
                        self.direct(&owned, Some(mask)).await?;
                    }
                    Err(shared) => self.frame(OP_BINARY, &shared).await?,
                },
            }
        }
        self.flush().await
    }

    /// Answers a ping.
    pub async fn pong(&mut self, payload: Bytes) -> Result<(), WsError> {
        self.frame(OP_PONG, &payload).await?;
        self.flush().await
    }

    /// Sends a close frame (1000, normal closure), flushes and shuts the connection down.
    pub async fn close(&mut self) -> Result<(), WsError> {
        self.frame(OP_CLOSE, &1000u16.to_be_bytes()).await?;
        self.flush().await?;
        self.io.shutdown().await?;
        Ok(())
    }

    /// Appends one frame to the write buffer, masking the payload as it is copied when this is
    /// the client; hands full chunks to the socket on the way.
    async fn frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), WsError> {
        let mask = match self.role {
            WsRole::Client => Some(rand::random::<[u8; 4]>()),
            WsRole::Server => None,
        };
        self.header(opcode, payload.len(), mask);
        // The mask continues across chunks: byte i of the payload is masked with mask[i % 4],
        // and every chunk but the last is a multiple of 4 bytes long.
        for chunk in payload.chunks(WRITE_CHUNK) {
            let start = self.out.len();
            self.out.extend_from_slice(chunk);
            if let Some(mask) = mask {
                apply_mask(&mut self.out[start..], mask);
            }
            if self.out.len() >= WRITE_CHUNK {
                self.write_out().await?;
            }
        }
        Ok(())
    }

    /// A large payload, already masked with `mask` if this is the client: what is buffered,
    /// the frame header and the payload go to the socket in one vectored write, without
    /// copying the payload.
    async fn direct(&mut self, payload: &[u8], mask: Option<[u8; 4]>) -> Result<(), WsError> {
        self.header(OP_BINARY, payload.len(), mask);
        let mut buf = Buf::chain(&self.out[..], payload);
        self.io.write_all_buf(&mut buf).await?;
        self.out.clear();
        Ok(())
    }

    /// Appends a frame header to the write buffer.
    fn header(&mut self, opcode: u8, len: usize, mask: Option<[u8; 4]>) {
        let mut header = [0u8; MAX_HEADER];
        let mut at = 0;
        header[at] = 0x80 | opcode;
        at += 1;
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
        self.out.extend_from_slice(&header[..at]);
    }

    async fn write_out(&mut self) -> Result<(), WsError> {
        self.io.write_all(&self.out).await?;
        self.out.clear();
        if self.out.capacity() > 2 * WRITE_CHUNK {
            self.out = Vec::new();
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), WsError> {
        if !self.out.is_empty() {
            self.write_out().await?;
        }
        self.io.flush().await?;
        Ok(())
    }
}

/// XORs `buf` with the repeating 4-byte `mask`, 8 bytes at a time.
fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
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

/// Puts one already-framed message into `out` (tests build hostile frames with this).
#[cfg(test)]
fn raw_frame(out: &mut Vec<u8>, b0: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(b0);
    if payload.len() < 126 {
        out.push(mask_bit | payload.len() as u8);
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    }
    let start = out.len();
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
    let body = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        debug_assert_eq!(body - start, 4);
        apply_mask(&mut out[body..], mask);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::duplex;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    const MAX: usize = 1024 * 1024;

    fn pattern(len: usize) -> Bytes {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn mask_matches_the_byte_by_byte_definition() {
        let mask = [0x6d, 0xb6, 0xb2, 0x80];
        for len in [0, 1, 3, 7, 8, 9, 15, 16, 17, 100, 1027] {
            let data = pattern(len);
            let mut fast = data.to_vec();
            apply_mask(&mut fast, mask);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow, "length {len}");
        }
    }

    /// Our client to tungstenite's server and back, across every length encoding and a
    /// payload larger than one write chunk.
    #[tokio::test]
    async fn a_client_and_a_tungstenite_server_understand_each_other() {
        let (a, b) = duplex(64 * 1024);
        let mut ours = WebSocket::new(a, WsRole::Client);
        let mut theirs = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
        let sizes = [0, 1, 125, 126, 65_535, 65_536, 300_000];
        let echo = tokio::spawn(async move {
            while let Some(Ok(message)) = theirs.next().await {
                if let Message::Binary(data) = message {
                    theirs.send(Message::Binary(data)).await.expect("test step");
                }
            }
        });
        for size in sizes {
            ours.send(pattern(size)).await.expect("test step");
            assert_eq!(
                ours.read().await.expect("test step"),
                Some(WsMessage::Binary(pattern(size))),
                "size {size}"
            );
        }
        // Large payloads the client owns alone are masked in place; one still shared elsewhere
        // is masked in a copy and left as it was.
        let shared = pattern(100_000);
        ours.send(shared.clone()).await.expect("test step");
        assert_eq!(shared, pattern(100_000), "a shared payload was changed");
        assert_eq!(
            ours.read().await.expect("test step"),
            Some(WsMessage::Binary(pattern(100_000)))
        );
        ours.close().await.expect("test step");
        assert!(matches!(
            ours.read().await,
            Ok(Some(WsMessage::Close)) | Ok(None)
        ));
        echo.await.expect("test step");
    }

    /// tungstenite's client to our server: masked frames in, unmasked out, and several
    /// messages in one batch.
    #[tokio::test]
    async fn a_server_and_a_tungstenite_client_understand_each_other() {
        // Room for every message at once: this test reads and writes from one task.
        let (a, b) = duplex(1024 * 1024);
        let mut ours = WebSocket::new(a, WsRole::Server);
        let mut theirs = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        for size in [0, 5, 200, 70_000] {
            theirs
                .send(Message::Binary(pattern(size)))
                .await
                .expect("test step");
            assert_eq!(
                ours.read().await.expect("test step"),
                Some(WsMessage::Binary(pattern(size)))
            );
        }
        ours.writer
            .send([pattern(3), pattern(130_000), pattern(1)])
            .await
            .expect("test step");
        for size in [3, 130_000, 1] {
            match theirs.next().await {
                Some(Ok(Message::Binary(data))) => assert_eq!(data, pattern(size)),
                other => panic!("expected {size} bytes, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn pings_are_answered_and_fragments_reassembled() {
        let (a, b) = duplex(64 * 1024);
        let mut ours = WebSocket::new(a, WsRole::Server);
        let mut theirs = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        theirs
            .send(Message::Ping(Bytes::from_static(b"hi")))
            .await
            .expect("test step");
        theirs
            .send(Message::Binary(pattern(10)))
            .await
            .expect("test step");
        assert_eq!(
            ours.read().await.expect("test step"),
            Some(WsMessage::Binary(pattern(10)))
        );
        ours.send(pattern(2)).await.expect("test step");
        // tungstenite reports the pong we sent before the message that followed it.
        match theirs.next().await {
            Some(Ok(Message::Pong(data))) => assert_eq!(&data[..], b"hi"),
            other => panic!("expected the pong, got {other:?}"),
        }

        let mask = Some([1, 2, 3, 4]);
        let mut raw = Vec::new();
        raw_frame(&mut raw, OP_BINARY, b"abc", mask);
        raw_frame(&mut raw, 0x80 | OP_PING, b"", mask);
        raw_frame(&mut raw, OP_CONTINUATION, b"def", mask);
        raw_frame(&mut raw, 0x80 | OP_CONTINUATION, b"g", mask);
        let (a, mut b) = duplex(64 * 1024);
        let mut ours = WebSocket::new(a, WsRole::Server);
        // One byte at a time: every partial header and payload is waited for.
        let feed = tokio::spawn(async move {
            for byte in raw {
                b.write_all(&[byte]).await.expect("test step");
            }
            b
        });
        assert_eq!(
            ours.read().await.expect("test step"),
            Some(WsMessage::Binary(Bytes::from_static(b"abcdefg")))
        );
        let _b = feed.await.expect("test step");
    }

    /// Large payloads are read into buffers that are reused once every piece of an earlier
    /// payload is dropped, never while one is still held; the spare ones are let go after a
    /// heartbeat with no large frame.
    #[tokio::test]
    async fn large_frames_reuse_buffers_only_when_free() {
        let (size, count) = (300_000, 8u8);
        let mut raw = Vec::new();
        for n in 0..count {
            let mut payload = pattern(size).to_vec();
            payload[0] = n;
            raw_frame(&mut raw, 0x80 | OP_BINARY, &payload, None);
        }
        let (a, mut b) = duplex(64 * 1024);
        let feed = tokio::spawn(async move {
            b.write_all(&raw).await.expect("test step");
            b
        });
        let mut reader = WsReader::new(a, WsRole::Client, MAX);
        let mut starts = Vec::new();
        let mut held = None;
        for n in 0..count {
            let data = match reader.read().await.expect("test step") {
                Some(WsMessage::Binary(data)) => data,
                other => panic!("expected a binary message, got {other:?}"),
            };
            assert_eq!(data[0], n);
            assert_eq!(&data[1..], &pattern(size)[1..], "message {n}");
            starts.push(data.as_ptr() as usize);
            if n == 0 {
                // Held to the end: its buffer must not be written again.
                held = Some(data.slice(1..));
            }
        }
        let first = starts[0];
        assert!(
            starts[1..].iter().all(|&at| at.abs_diff(first) >= size),
            "the buffer of a payload still held was reused"
        );
        let mut buffers: Vec<usize> = Vec::new();
        for at in starts {
            if !buffers.iter().any(|&b| b.abs_diff(at) < 64) {
                buffers.push(at);
            }
        }
        assert!(
            buffers.len() <= 4,
            "{count} messages used {} buffers",
            buffers.len()
        );
        assert_eq!(held.as_deref(), Some(&pattern(size)[1..]));
        reader.release_spare();
        assert!(
            !reader.recycled.is_empty(),
            "released right after a large frame"
        );
        reader.release_spare();
        assert!(reader.recycled.is_empty(), "kept after a quiet heartbeat");
        let _b = feed.await.expect("test step");
    }

    async fn read_raw(
        role: WsRole,
        raw: Vec<u8>,
        max: usize,
    ) -> Result<Option<WsMessage>, WsError> {
        let (a, mut b) = duplex(64 * 1024);
        b.write_all(&raw).await.expect("test step");
        drop(b);
        let mut reader = WsReader::new(a, role, max);
        reader.read().await
    }

    #[tokio::test]
    async fn frames_a_peer_must_not_send_are_refused() {
        let m = Some([9, 8, 7, 6]);
        // (who reads, first header byte, payload, mask, what the error must say)
        type Case = (WsRole, u8, Vec<u8>, Option<[u8; 4]>, &'static str);
        let cases: Vec<Case> = vec![
            (WsRole::Server, 0x82, b"x".to_vec(), None, "not masked"),
            (
                WsRole::Client,
                0x82,
                b"x".to_vec(),
                m,
                "masked server frame",
            ),
            (WsRole::Server, 0xC2, b"x".to_vec(), m, "reserved bits"),
            (WsRole::Server, 0x83, b"x".to_vec(), m, "unknown opcode"),
            (
                WsRole::Server,
                0x80,
                b"x".to_vec(),
                m,
                "continuation frame with no message",
            ),
            (WsRole::Server, 0x09, b"x".to_vec(), m, "control frame"),
            (WsRole::Server, 0x89, vec![0; 126], m, "control frame"),
        ];
        for (role, b0, payload, mask, expected) in cases {
            let mut raw = Vec::new();
            raw_frame(&mut raw, b0, &payload, mask);
            let error = read_raw(role, raw, MAX)
                .await
                .expect_err("must be refused")
                .to_string();
            assert!(error.contains(expected), "{b0:#x}: {error}");
        }

        let mut raw = Vec::new();
        raw_frame(&mut raw, 0x02, b"ab", m);
        raw_frame(&mut raw, 0x82, b"cd", m);
        let error = read_raw(WsRole::Server, raw, MAX)
            .await
            .expect_err("must be refused");
        assert!(
            error.to_string().contains("before the previous one ended"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn oversized_and_truncated_messages_are_errors() {
        let m = Some([9, 8, 7, 6]);
        let mut raw = Vec::new();
        raw_frame(&mut raw, 0x82, &[0; 200], m);
        let error = read_raw(WsRole::Server, raw, 100)
            .await
            .expect_err("must be refused");
        assert!(
            matches!(error, WsError::TooLong { len: 200, max: 100 }),
            "{error}"
        );

        // A length field claiming 2^63 bytes is refused before anything is allocated.
        let raw = vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0];
        let error = read_raw(WsRole::Server, raw, MAX)
            .await
            .expect_err("must be refused");
        assert!(matches!(error, WsError::TooLong { .. }), "{error}");

        let mut raw = Vec::new();
        raw_frame(&mut raw, 0x02, &[0; 60], m);
        raw_frame(&mut raw, 0x80, &[0; 60], m);
        let error = read_raw(WsRole::Server, raw, 100)
            .await
            .expect_err("must be refused");
        assert!(
            matches!(error, WsError::TooLong { len: 120, max: 100 }),
            "{error}"
        );

        let mut raw = Vec::new();
        raw_frame(&mut raw, 0x82, &[0; 50], m);
        raw.truncate(30);
        let error = read_raw(WsRole::Server, raw, MAX)
            .await
            .expect_err("must be refused");
        assert!(matches!(error, WsError::Truncated), "{error}");

        assert!(
            read_raw(WsRole::Server, Vec::new(), MAX)
                .await
                .expect("test step")
                .is_none()
        );
    }
}
