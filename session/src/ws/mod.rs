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

//!
//! # Layout
//! - [`frame`]: the frames themselves, without I/O: a decoder of received bytes into
//!   messages, and the encoding (fuzzed: `fuzz/`).
//! - `fuzzing.rs`: the fuzz harness of the decoder, and the replay of its corpus.
//! - `pool.rs`: the buffers large frames are read into, reused once their payload is dropped.
//! - here: [`WsReader`] and [`WsWriter`], the two directions over a socket.

pub mod frame;
#[cfg(test)]
mod fuzzing;
mod pool;

pub use frame::{DecodeError, WsMessage, WsRole};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use frame::{Decoder, FIN, FrameLen, OP_BINARY, OP_CLOSE, OP_PONG, Step, apply_mask};
use pool::{BufferPool, RECYCLE_FROM};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use warren_proto::frame::MAX_MESSAGE;

/// Spare room made in the read buffer before a socket read when no larger frame is pending.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes gathered before the writer hands them to the socket; bounds a session's write
/// buffer whatever the size of a batch.
const WRITE_CHUNK: usize = 128 * 1024;
/// Payloads written straight from their buffer (see [`WsWriter::direct`]).
const DIRECT_WRITE: usize = 16 * 1024;

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

impl From<DecodeError> for WsError {
    fn from(e: DecodeError) -> WsError {
        match e {
            DecodeError::Protocol(what) => WsError::Protocol(what),
            DecodeError::TooLong { len, max } => WsError::TooLong { len, max },
        }
    }
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

/// The receiving half: bytes in, messages out ([`frame::Decoder`]), large frames read into
/// buffers of their own ([`pool`]).
pub struct WsReader<R> {
    io: R,
    decoder: Decoder,
    buf: BytesMut,
    /// Buffers for large frames, reused once their payloads are dropped.
    pool: BufferPool,
    /// Set when `buf` was just taken from the pool for the large frame at its start: that
    /// frame's payload, once split out, is what keeps the buffer (capacity given) for reuse.
    fresh: Option<usize>,
    /// Where the large frame being read ends in `buf` (0 if none): reads stop there, so the
    /// next frame starts in a buffer of its own instead of being copied out of this one.
    large_end: usize,
}

impl<R: AsyncRead + Unpin> WsReader<R> {
    pub fn new(io: R, role: WsRole, max_message: usize) -> WsReader<R> {
        WsReader {
            io,
            decoder: Decoder::new(role, max_message),
            buf: BytesMut::new(),
            pool: BufferPool::default(),
            fresh: None,
            large_end: 0,
        }
    }

    /// Lets go of the buffers kept for reuse if no large frame arrived since the last call, so
    /// a session that is done with bulk transfers keeps no spare memory. Called on every
    /// heartbeat deadline.
    pub fn release_spare(&mut self) {
        self.pool.release_spare();
    }

    /// The pong owed for the latest ping, if any (the reader cannot write; whoever owns the
    /// writer sends it).
    pub fn take_pong(&mut self) -> Option<Bytes> {
        self.decoder.take_pong()
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
                return if self.buf.is_empty() && !self.decoder.in_message() {
                    Ok(None)
                } else {
                    Err(WsError::Truncated)
                };
            }
        }
    }

    /// Takes one message out of the buffer if a whole one is there; makes room for the rest
    /// of the frame at its start otherwise.
    fn parse(&mut self) -> Result<Option<WsMessage>, WsError> {
        loop {
            let step = self.decoder.decode(&mut self.buf)?;
            if !matches!(step, Step::Incomplete(_)) {
                self.large_end = 0;
            }
            // The buffer taken for this frame, if one was: only a one-frame message keeps it.
            let fresh = match step {
                Step::Incomplete(_) => None,
                _ => self.fresh.take(),
            };
            match step {
                Step::Message {
                    message: WsMessage::Binary(payload),
                    one_frame,
                } => {
                    if let (true, Some(capacity)) = (one_frame, fresh) {
                        self.pool.keep(&payload, capacity);
                    }
                    return Ok(Some(WsMessage::Binary(payload)));
                }
                Step::Message { message, .. } => return Ok(Some(message)),
                Step::Fragment => {}
                Step::Incomplete(None) => return Ok(None),
                Step::Incomplete(Some(len)) => {
                    self.make_room(len);
                    return Ok(None);
                }
            }
        }
    }

    /// Room for the whole frame at once: one allocation (or a reused one), and reads as large
    /// as the kernel has bytes for.
    fn make_room(&mut self, len: FrameLen) {
        let need = len.header + len.payload;
        if len.payload >= RECYCLE_FROM {
            self.large_end = need;
            if self.buf.capacity() < need {
                let mut fresh = self.pool.take(need);
                fresh.extend_from_slice(&self.buf);
                self.fresh = Some(fresh.capacity());
                self.buf = fresh;
                return;
            }
        }
        self.buf.reserve(need - self.buf.len());
    }
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
        frame::encode_header(&mut self.out, FIN | opcode, len, mask);
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

#[cfg(test)]
mod tests {
    use super::*;
    use frame::{OP_CONTINUATION, OP_PING, encode_frame};
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::duplex;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    const MAX: usize = 1024 * 1024;

    fn pattern(len: usize) -> Bytes {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
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
        encode_frame(&mut raw, OP_BINARY, b"abc", mask);
        encode_frame(&mut raw, 0x80 | OP_PING, b"", mask);
        encode_frame(&mut raw, OP_CONTINUATION, b"def", mask);
        encode_frame(&mut raw, 0x80 | OP_CONTINUATION, b"g", mask);
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
            encode_frame(&mut raw, 0x80 | OP_BINARY, &payload, None);
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
            !reader.pool.is_empty(),
            "released right after a large frame"
        );
        reader.release_spare();
        assert!(reader.pool.is_empty(), "kept after a quiet heartbeat");
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
            encode_frame(&mut raw, b0, &payload, mask);
            let error = read_raw(role, raw, MAX)
                .await
                .expect_err("must be refused")
                .to_string();
            assert!(error.contains(expected), "{b0:#x}: {error}");
        }

        let mut raw = Vec::new();
        encode_frame(&mut raw, 0x02, b"ab", m);
        encode_frame(&mut raw, 0x82, b"cd", m);
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
        encode_frame(&mut raw, 0x82, &[0; 200], m);
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
        encode_frame(&mut raw, 0x02, &[0; 60], m);
        encode_frame(&mut raw, 0x80, &[0; 60], m);
        let error = read_raw(WsRole::Server, raw, 100)
            .await
            .expect_err("must be refused");
        assert!(
            matches!(error, WsError::TooLong { len: 120, max: 100 }),
            "{error}"
        );

        let mut raw = Vec::new();
        encode_frame(&mut raw, 0x82, &[0; 50], m);
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
