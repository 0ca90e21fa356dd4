//! The stream multiplexer: many streams over one ordered, reliable session.
//!
//! [`Mux`] is a state machine. The caller feeds it the frames that arrive
//! ([`Mux::handle_frame`]), calls [`Mux::handle_timeout`] when [`Mux::next_timeout`] passes,
//! sends what [`Mux::poll_transmit`] returns, and acts on [`Mux::poll_event`]. Applications
//! read and write streams through [`Mux::read`], [`Mux::write`], [`Mux::finish`],
//! [`Mux::reset`] and [`Mux::release`].
//!
//! # Flow control
//! Every stream has a receive window (`Settings::stream_window`) and the session has one more
//! (`Settings::session_window`). A sender may have at most that many unacknowledged bytes in
//! flight; the receiver returns credit with WINDOW once the application has consumed about half
//! of a window. So a stream's buffered bytes never exceed its window, a session's never exceed
//! the session window, and a stream nobody reads stalls only itself. Bytes for streams that are
//! already gone are dropped and their session credit returned at once.
//!
//! A stream's receive window grows when it is what limits the stream (auto-tuning, as QUIC
//! stacks do): if a stream's credit is returned twice within [`GROW_INTERVAL`] (or two
//! heartbeat round trips, if longer), the window doubles, up to [`GROWN_WINDOW`]. The growth of
//! all streams of a session together is capped at a quarter of the session window, so streams
//! that read fast and then stall can never hold the whole session window between them; a
//! released stream gives its growth back. The sender sees only larger WINDOW increments.
//!
//! Outgoing frames are queued in encoded form and handed out in batches of at most
//! [`OUT_HIGH_WATER`] bytes plus one frame, so one WebSocket message (and one flush) carries
//! many small frames. Writes stop being accepted while the queue is above the high-water mark:
//! the socket's own backpressure reaches every stream.
//!
//! # Memory
//! Received DATA payloads are slices of the message they arrived in (no copy), and one message
//! carries frames of many streams. A stream whose reader stopped would keep whole messages
//! alive for the few bytes of its own in them, so a stalled stream could hold several times
//! its window. Bytes left unread for [`COMPACT_AFTER`] are therefore copied into one buffer of
//! the stream's own (`Mux::compact_unread`, run from `handle_timeout`): a stream that is read
//! promptly is never copied; one that stalls holds its window and no more.
//!
//! # Layout
//! - this file: the session state: ids, windows, the outgoing queue, events, heartbeats.
//! - `stream.rs`: one stream's state and the application-facing read/write operations.
//! - `inbound.rs`: what each received frame does.

mod inbound;
mod stream;

use crate::error::GoAwayCode;
use crate::frame::{Frame, HEADER_LEN, MAX_DATA_CHUNK};
use crate::ids::{StreamId, TunnelId};
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use stream::StreamState;

pub use stream::{Read, StreamError};

/// A map keyed by stream: several lookups per frame, so a fast keyed hash (foldhash, seeded
/// per map) instead of SipHash (~2 % of the edge's and ~5 % of the agent's instructions per
/// small request). Peer-chosen ids are bounded by the stream limit and increase, and the seed
/// is random, so collisions cannot be forced cheaply.
pub type StreamMap<V> = HashMap<StreamId, V, foldhash::fast::RandomState>;

/// Queued outgoing bytes above which writes are refused until the socket drains.
pub const OUT_HIGH_WATER: usize = 256 * 1024;
/// Room for a full batch: the high-water mark plus the largest frame that can cross it.
const FULL_BATCH: usize = OUT_HIGH_WATER + HEADER_LEN + MAX_DATA_CHUNK;
/// Batches from this size on leave with their own allocation (see `Mux::take_batch`).
const OWNED_BATCH: usize = 16 * 1024;
/// Queued outgoing bytes below which blocked writers are woken again.
pub const OUT_LOW_WATER: usize = 64 * 1024;
/// The DATA frame kind (see `frame.rs`); `queue_data` encodes DATA without a `Frame`.
const KIND_DATA: u8 = 0x00;
/// A peer that grants more than this much credit is broken.
const MAX_CREDIT: u64 = 1 << 32;
/// Largest receive window a stream grows to (see "Flow control" above). One 256 KiB window per
/// round trip capped a single download at ~0.7 GiB/s on loopback; 4 MiB lets it run at what the
/// copies cost (docs/performance.md, 2026-12-05 evening).
pub const GROWN_WINDOW: u32 = 4 * 1024 * 1024;
/// Credit returned twice within this long (or two round trips, if longer) means the window is
/// what limits the stream: it grows.
pub const GROW_INTERVAL: Duration = Duration::from_millis(2);
/// Bytes a stream's reader has left unread for this long are copied out of the received
/// messages they arrived in (see "Memory" above).
pub const COMPACT_AFTER: Duration = Duration::from_millis(250);

/// Which end of the session this is. The edge opens odd stream ids, the agent even ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Edge,
    Agent,
}

impl Role {
    fn first_id(self) -> u32 {
        match self {
            Role::Edge => 1,
            Role::Agent => 2,
        }
    }

    fn owns(self, id: StreamId) -> bool {
        (id.0 % 2 == 1) == (self == Role::Edge)
    }
}

/// What one side accepts: exchanged in the handshake (`Hello` and `Welcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Bytes the peer may send on one stream before waiting for a WINDOW.
    pub stream_window: u32,
    /// Bytes the peer may send on all streams together before waiting for a WINDOW.
    pub session_window: u32,
    /// Streams the peer may have open towards us at once; more are refused with RST.
    pub max_streams: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            stream_window: 256 * 1024,
            session_window: 64 * 1024 * 1024,
            max_streams: 10_000,
        }
    }
}

impl Settings {
    /// Smallest windows a peer may announce: below one data chunk nothing useful flows.
    pub const MIN_WINDOW: u32 = MAX_DATA_CHUNK as u32;

    /// Checks settings received from a peer.
    pub fn validate(&self) -> Result<(), BadSettings> {
        if self.stream_window < Self::MIN_WINDOW {
            return Err(BadSettings::StreamWindowTooSmall {
                got: self.stream_window,
                min: Self::MIN_WINDOW,
            });
        }
        if self.session_window < self.stream_window {
            return Err(BadSettings::SessionWindowBelowStreamWindow);
        }
        if self.max_streams == 0 {
            return Err(BadSettings::NoStreams);
        }
        Ok(())
    }
}

/// Settings a peer may not announce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSettings {
    #[error("stream_window {got} is below the minimum of {min}")]
    StreamWindowTooSmall { got: u32, min: u32 },
    #[error("session_window must be at least stream_window")]
    SessionWindowBelowStreamWindow,
    #[error("max_streams must be at least 1")]
    NoStreams,
}

/// Something the runtime must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer opened a stream for a tunnel.
    Opened { stream: StreamId, tunnel: TunnelId },
    /// Data, FIN or RST arrived: a blocked reader may proceed.
    Readable(StreamId),
    /// Credit or queue space arrived, or the stream was reset: a blocked writer may proceed.
    Writable(StreamId),
    /// The peer is going away: open no new streams.
    GoAway { code: GoAwayCode, message: String },
    /// A control message arrived.
    Message(crate::control::Event),
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the session is going away")]
    GoingAway,
    #[error("the peer's limit of {0} concurrent streams is reached")]
    TooManyStreams(u32),
    #[error("the session has used up its stream ids; it must be re-established")]
    IdsExhausted,
    #[error("the session is closed")]
    Closed,
}

/// Heartbeat timing, from the edge's `Welcome`.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
        }
    }
}

/// The multiplexer state of one session. See the module docs.
#[derive(Debug)]
pub struct Mux {
    role: Role,
    local: Settings,
    peer: Settings,
    streams: StreamMap<StreamState>,
    next_local_id: u32,
    last_peer_id: u32,
    /// Streams opened by the peer that are still in `streams`.
    peer_streams: u32,
    /// Session-level credit: bytes we may still send.
    send_credit: u64,
    /// Session-level window: bytes the peer may still send us.
    recv_allowed: u64,
    /// Session-level bytes consumed (or dropped) but not yet returned with WINDOW.
    recv_unacked: u64,
    /// Receive-window growth of the live streams together, beyond `local.stream_window` each.
    grown: u64,
    out: BytesMut,
    sealed: VecDeque<Bytes>,
    queued: usize,
    events: VecDeque<Event>,
    blocked: Vec<StreamId>,
    local_goaway: bool,
    peer_goaway: bool,
    closed: bool,
    heartbeat: Heartbeat,
    last_recv: Instant,
    last_ping: Instant,
    ping_nonce: u64,
    ping_sent_at: Option<(u64, Instant)>,
    rtt: Option<Duration>,
    /// When to look for streams whose unread bytes keep shared messages alive (set while
    /// some may).
    compact_at: Option<Instant>,
}

impl Mux {
    /// A multiplexer for a session whose handshake has completed.
    pub fn new(
        role: Role,
        local: Settings,
        peer: Settings,
        heartbeat: Heartbeat,
        now: Instant,
    ) -> Mux {
        Mux {
            role,
            local,
            peer,
            streams: StreamMap::default(),
            next_local_id: role.first_id(),
            last_peer_id: 0,
            peer_streams: 0,
            send_credit: u64::from(peer.session_window),
            recv_allowed: u64::from(local.session_window),
            recv_unacked: 0,
            grown: 0,
            out: BytesMut::new(),
            sealed: VecDeque::new(),
            queued: 0,
            events: VecDeque::new(),
            blocked: Vec::new(),
            local_goaway: false,
            peer_goaway: false,
            closed: false,
            heartbeat,
            last_recv: now,
            last_ping: now,
            ping_nonce: 0,
            ping_sent_at: None,
            rtt: None,
            compact_at: None,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Opens a stream for `tunnel`. Data may be written at once (no round trip).
    pub fn open(&mut self, tunnel: TunnelId) -> Result<StreamId, OpenError> {
        if self.closed {
            return Err(OpenError::Closed);
        }
        if self.local_goaway || self.peer_goaway {
            return Err(OpenError::GoingAway);
        }
        let local_streams = self.streams.len() as u32 - self.peer_streams;
        if local_streams >= self.peer.max_streams {
            return Err(OpenError::TooManyStreams(self.peer.max_streams));
        }
        let id = StreamId(self.next_local_id);
        self.next_local_id = self
            .next_local_id
            .checked_add(2)
            .ok_or(OpenError::IdsExhausted)?;
        let state = StreamState::new(tunnel, &self.local, &self.peer);
        self.streams.insert(id, state);
        self.queue(&Frame::Open { stream: id, tunnel });
        Ok(id)
    }

    /// Starts draining: tells the peer to open nothing new. Existing streams may finish.
    pub fn go_away(&mut self, code: GoAwayCode, message: &str) {
        if self.local_goaway || self.closed {
            return;
        }
        self.local_goaway = true;
        self.queue(&Frame::GoAway {
            code,
            message: message.to_string(),
        });
    }

    /// Queues a control message for the peer.
    pub fn send_message(&mut self, message: &crate::control::Event) {
        if !self.closed {
            self.queue(&message.into_frame());
        }
    }

    /// Queues an EVENT whose body is already encoded (compact request logs,
    /// [`crate::request_logs`]).
    pub fn send_event_body(&mut self, body: Bytes) {
        if !self.closed {
            self.queue(&Frame::Event { body });
        }
    }

    /// Marks the session dead (transport lost or protocol error): every stream fails.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            self.events.push_back(Event::Readable(id));
            self.events.push_back(Event::Writable(id));
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True once either side sent GOAWAY.
    pub fn is_going_away(&self) -> bool {
        self.local_goaway || self.peer_goaway
    }

    /// Streams currently open (in any state the application still sees).
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The tunnel a stream belongs to.
    pub fn tunnel_of(&self, id: StreamId) -> Option<TunnelId> {
        self.streams.get(&id).map(|s| s.tunnel)
    }

    /// Round-trip time measured by the last heartbeat, if any.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Bytes queued for the transport.
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// The next batch of encoded frames to send as one message, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        let batch = match self.sealed.pop_front() {
            Some(batch) => batch,
            None if !self.out.is_empty() => self.take_batch(),
            None => return None,
        };
        self.queued -= batch.len();
        if self.queued < OUT_LOW_WATER {
            self.wake_blocked();
        }
        Some(batch)
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Mux::handle_timeout`] must next be called.
    pub fn next_timeout(&self) -> Instant {
        let ping = self.last_ping + self.heartbeat.interval;
        let dead = self.last_recv + self.heartbeat.timeout;
        let next = ping.min(dead);
        self.compact_at.map_or(next, |at| at.min(next))
    }

    /// Sends heartbeats, detects a silent peer, and compacts what slow readers left unread.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), crate::ProtoError> {
        if now.saturating_duration_since(self.last_recv) >= self.heartbeat.timeout {
            let ms = self.heartbeat.timeout.as_millis() as u64;
            return Err(crate::ProtoError::HeartbeatTimeout(ms));
        }
        if self.compact_at.is_some_and(|at| at <= now) {
            self.compact_unread(now);
        }
        if now.saturating_duration_since(self.last_ping) >= self.heartbeat.interval {
            self.last_ping = now;
            self.ping_nonce = self.ping_nonce.wrapping_add(1);
            self.ping_sent_at = Some((self.ping_nonce, now));
            self.queue(&Frame::Ping {
                nonce: self.ping_nonce,
            });
        }
        Ok(())
    }

    /// Copies the unread bytes of every stream whose reader left them for [`COMPACT_AFTER`]
    /// into a buffer of the stream's own; looks again later while younger ones remain.
    fn compact_unread(&mut self, now: Instant) {
        let mut younger = false;
        for stream in self.streams.values_mut() {
            let Some(since) = stream.unread_since.filter(|_| stream.shares_buffers) else {
                continue;
            };
            if now.saturating_duration_since(since) >= COMPACT_AFTER {
                stream.compact_unread();
            } else {
                younger = true;
            }
        }
        self.compact_at = younger.then(|| now + COMPACT_AFTER);
    }

    fn queue(&mut self, frame: &Frame) {
        self.seal_if_full();
        let before = self.out.len();
        frame.encode(&mut self.out);
        self.queued += self.out.len() - before;
    }

    /// Queues a DATA frame encoded straight from `payload`: the bytes `Frame::Data` encodes
    /// to, without building an intermediate `Bytes` (one allocation and one copy per chunk).
    fn queue_data(&mut self, id: StreamId, payload: &[u8]) {
        debug_assert!(payload.len() <= MAX_DATA_CHUNK);
        self.seal_if_full();
        self.out.reserve(HEADER_LEN + payload.len());
        // At most MAX_DATA_CHUNK (64 KiB): fits a u32.
        self.out.put_u32(payload.len() as u32);
        self.out.put_u8(KIND_DATA);
        self.out.put_u32(id.0);
        self.out.put_slice(payload);
        self.queued += HEADER_LEN + payload.len();
    }

    /// Starts a new batch once the current one reaches the high-water mark.
    fn seal_if_full(&mut self) {
        if self.out.len() >= OUT_HIGH_WATER {
            let batch = self.take_batch();
            self.sealed.push_back(batch);
        }
    }

    /// Everything queued, as one batch. A large batch (bulk data) leaves with its whole
    /// allocation and the queue continues in a fresh buffer, so whoever sends it usually holds
    /// the only reference and may change it in place (the agent masks it there instead of
    /// copying it: `session/src/ws.rs`). Small batches share the buffer's tail, which keeps
    /// them free of allocations.
    fn take_batch(&mut self) -> Bytes {
        if self.out.len() >= OWNED_BATCH {
            let fresh = BytesMut::with_capacity(FULL_BATCH);
            std::mem::replace(&mut self.out, fresh).freeze()
        } else {
            self.out.split().freeze()
        }
    }

    fn wake_blocked(&mut self) {
        for id in self.blocked.drain(..) {
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.blocked = false;
                self.events.push_back(Event::Writable(id));
            }
        }
    }

    /// Returns session-level credit for `n` bytes consumed or dropped.
    fn consumed_session(&mut self, n: usize) {
        self.recv_unacked += n as u64;
        // Returned at a quarter (not half, as for streams): small, frequent returns keep the
        // session flowing.
        if self.recv_unacked >= u64::from(self.local.session_window / 4) {
            let increment = self.recv_unacked;
            self.recv_unacked = 0;
            self.recv_allowed += increment;
            // Never more than session_window, which is a u32.
            self.queue(&Frame::Window {
                stream: StreamId::SESSION,
                increment: increment as u32,
            });
        }
    }

    /// Whether `id` was opened at some point (by either side) and is now gone.
    fn was_opened(&self, id: StreamId) -> bool {
        if self.role.owns(id) {
            id.0 < self.next_local_id
        } else {
            id.0 <= self.last_peer_id
        }
    }
}

#[cfg(test)]
mod tests;
