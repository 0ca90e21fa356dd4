//! The state a session's tasks and streams share, and the [`Session`] handle.

use crate::stream::Stream;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use warren_proto::error::GoAwayCode;
use warren_proto::mux::{Event, OpenError, StreamMap};
use warren_proto::{Mux, ProtoError, StreamId, TunnelId, control};

/// Something the application may want to know about, besides streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The peer is going away; open no new streams on this session.
    GoAway { code: GoAwayCode, message: String },
    /// A control message from the peer.
    Message(control::Event),
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// Closed on this side ([`Session::close`], drain, shutdown).
    Closed,
    /// The peer closed the WebSocket (after a GOAWAY, if it sent one).
    PeerClosed(Option<(GoAwayCode, String)>),
    /// The connection failed (reset, EOF without close, write stall).
    Transport(String),
    /// The peer broke the protocol; it was told with GOAWAY.
    Protocol(ProtoError),
}

impl fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionEnd::Closed => f.write_str("closed locally"),
            SessionEnd::PeerClosed(None) => f.write_str("closed by the peer"),
            SessionEnd::PeerClosed(Some((code, message))) => {
                write!(f, "closed by the peer ({code:?}: {message})")
            }
            SessionEnd::Transport(e) => write!(f, "connection lost: {e}"),
            SessionEnd::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

/// Longest [`Session::drain`] waits for the GOAWAY and the close to be written.
const FLUSH_ON_CLOSE: Duration = Duration::from_secs(2);

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Frames were queued: the writer task has work.
    pub(crate) writer: Notify,
    /// The last stream went away (for draining).
    pub(crate) idle: Notify,
    /// Cancelled when the session ends, for any reason.
    pub(crate) ended: CancellationToken,
    /// Cancelled when the writer task has stopped: what was queued went out and the
    /// WebSocket was closed (or the transport failed).
    pub(crate) flushed: CancellationToken,
}

pub(crate) struct Inner {
    pub(crate) mux: Mux,
    readers: StreamMap<Waker>,
    writers: StreamMap<Waker>,
    incoming: Option<mpsc::UnboundedSender<Stream>>,
    events: Option<mpsc::Sender<SessionEvent>>,
    end: Option<SessionEnd>,
    peer_goaway: Option<(GoAwayCode, String)>,
}

/// Work found under the lock that must happen after it is released: waking tasks, and
/// dropping streams nobody accepted (their `Drop` takes the lock).
#[derive(Default)]
pub(crate) struct Deferred {
    wake: Wakers,
    unaccepted: Vec<Stream>,
    notify_writer: bool,
    notify_idle: bool,
}

impl Deferred {
    pub(crate) fn run(self, shared: &Shared) {
        self.wake.wake_all();
        if self.notify_writer {
            shared.writer.notify_one();
        }
        if self.notify_idle {
            shared.idle.notify_waiters();
        }
        drop(self.unaccepted);
    }
}

/// Tasks to wake. Almost always none or one per lock, so the first is kept inline: a `Vec`
/// would allocate (and free) on every wake-up.
#[derive(Default)]
struct Wakers {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl Wakers {
    fn push(&mut self, waker: Option<Waker>) {
        let Some(waker) = waker else { return };
        if self.first.is_none() {
            self.first = Some(waker);
        } else {
            self.rest.push(waker);
        }
    }

    fn wake_all(self) {
        if let Some(waker) = self.first {
            waker.wake();
        }
        for waker in self.rest {
            waker.wake();
        }
    }
}

impl Shared {
    pub(crate) fn new(
        mux: Mux,
        incoming: mpsc::UnboundedSender<Stream>,
        events: mpsc::Sender<SessionEvent>,
    ) -> Shared {
        Shared {
            inner: Mutex::new(Inner {
                mux,
                readers: StreamMap::default(),
                writers: StreamMap::default(),
                incoming: Some(incoming),
                events: Some(events),
                end: None,
                peer_goaway: None,
            }),
            writer: Notify::new(),
            idle: Notify::new(),
            flushed: CancellationToken::new(),
            ended: CancellationToken::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock is a bug in this crate; the state is still usable
        // for shutting down, so recover the guard rather than cascade the panic.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the multiplexer, then handles every event it produced.
    pub(crate) fn with_mux<T>(self: &Arc<Self>, f: impl FnOnce(&mut Inner) -> T) -> T {
        let (value, deferred) = {
            let mut inner = self.lock();
            let value = f(&mut inner);
            let deferred = inner.dispatch(self);
            (value, deferred)
        };
        deferred.run(self);
        value
    }

    /// Ends the session (first reason wins) and fails every stream.
    pub(crate) fn end(self: &Arc<Self>, reason: SessionEnd) {
        self.with_mux(|inner| {
            if inner.end.is_none() {
                tracing::debug!(%reason, "session ended");
                inner.end = Some(reason);
            }
            inner.mux.close();
            inner.incoming = None;
            inner.events = None;
        });
        self.ended.cancel();
        self.writer.notify_one();
        self.idle.notify_waiters();
    }
}

impl Inner {
    pub(crate) fn register_reader(&mut self, id: StreamId, waker: &Waker) {
        register(&mut self.readers, id, waker);
    }

    pub(crate) fn register_writer(&mut self, id: StreamId, waker: &Waker) {
        register(&mut self.writers, id, waker);
    }

    pub(crate) fn forget(&mut self, id: StreamId) {
        self.readers.remove(&id);
        self.writers.remove(&id);
    }

    pub(crate) fn peer_goaway(&self) -> Option<(GoAwayCode, String)> {
        self.peer_goaway.clone()
    }

    pub(crate) fn dispatch(&mut self, shared: &Arc<Shared>) -> Deferred {
        let mut deferred = Deferred::default();
        while let Some(event) = self.mux.poll_event() {
            match event {
                Event::Readable(id) => deferred.wake.push(self.readers.remove(&id)),
                Event::Writable(id) => deferred.wake.push(self.writers.remove(&id)),
                Event::Opened { stream, tunnel } => {
                    let stream = Stream::new(stream, tunnel, shared.clone());
                    match &self.incoming {
                        Some(tx) => {
                            if let Err(rejected) = tx.send(stream) {
                                deferred.unaccepted.push(rejected.0);
                            }
                        }
                        None => deferred.unaccepted.push(stream),
                    }
                }
                Event::GoAway { code, message } => {
                    self.peer_goaway = Some((code, message.clone()));
                    self.emit(SessionEvent::GoAway { code, message });
                }
                Event::Message(message) => self.emit(SessionEvent::Message(message)),
            }
        }
        deferred.notify_writer = self.mux.queued_bytes() > 0;
        deferred.notify_idle = self.mux.stream_count() == 0;
        deferred
    }

    fn emit(&mut self, event: SessionEvent) {
        if let Some(tx) = &self.events
            && tx.try_send(event).is_err()
        {
            tracing::debug!("session event dropped: nobody is reading events fast enough");
        }
    }
}

fn register(map: &mut StreamMap<Waker>, id: StreamId, waker: &Waker) {
    match map.get_mut(&id) {
        Some(existing) if existing.will_wake(waker) => {}
        Some(existing) => existing.clone_from(waker),
        None => {
            map.insert(id, waker.clone());
        }
    }
}

/// A handle to a running session. Cheap to clone; the session lives until it ends, not until
/// the last handle is dropped (call [`Session::close`] to end it).
#[derive(Clone)]
pub struct Session {
    pub(crate) shared: Arc<Shared>,
}

/// Streams opened by the peer, in the order they arrived.
pub struct Incoming(pub(crate) mpsc::UnboundedReceiver<Stream>);

impl Incoming {
    /// The next stream the peer opened, or `None` once the session has ended.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.0.recv().await
    }
}

impl Session {
    /// Opens a stream for `tunnel`; bytes may be written at once.
    pub fn open(&self, tunnel: TunnelId) -> Result<Stream, OpenError> {
        let id = self.shared.with_mux(|inner| inner.mux.open(tunnel))?;
        Ok(Stream::new(id, tunnel, self.shared.clone()))
    }

    /// Sends a control message to the peer.
    pub fn send_message(&self, message: &control::Event) {
        self.shared
            .with_mux(|inner| inner.mux.send_message(message));
    }

    /// Sends an EVENT whose body is already encoded (compact request logs).
    pub fn send_event_body(&self, body: bytes::Bytes) {
        self.shared
            .with_mux(|inner| inner.mux.send_event_body(body));
    }

    /// Sends GOAWAY: the peer must open nothing new. Existing streams carry on.
    pub fn go_away(&self, code: GoAwayCode, message: &str) {
        self.shared
            .with_mux(|inner| inner.mux.go_away(code, message));
    }

    /// Sends GOAWAY, waits up to `grace` for open streams to finish, then closes.
    pub async fn drain(&self, code: GoAwayCode, message: &str, grace: Duration) {
        self.go_away(code, message);
        let _ = tokio::time::timeout(grace, self.idle()).await;
        self.close();
        // The GOAWAY must reach the peer before the caller (a process about to exit, say)
        // goes on: without it the peer takes the close for a lost connection and holds the
        // session's visitors for a reconnect.
        let _ = tokio::time::timeout(FLUSH_ON_CLOSE, self.shared.flushed.cancelled()).await;
    }

    /// Resolves once no stream is open.
    pub async fn idle(&self) {
        loop {
            let notified = self.shared.idle.notified();
            if self.stream_count() == 0 || self.is_ended() {
                return;
            }
            notified.await;
        }
    }

    /// Ends the session now: open streams fail, the peer sees the WebSocket close.
    pub fn close(&self) {
        self.shared.end(SessionEnd::Closed);
    }

    /// Resolves when the session has ended, with the reason.
    pub async fn ended(&self) -> SessionEnd {
        self.shared.ended.cancelled().await;
        self.end_reason().unwrap_or(SessionEnd::Closed)
    }

    pub fn is_ended(&self) -> bool {
        self.shared.ended.is_cancelled()
    }

    pub fn end_reason(&self) -> Option<SessionEnd> {
        self.shared.lock().end.clone()
    }

    /// True once either side sent GOAWAY or the session ended: open streams elsewhere.
    pub fn is_going_away(&self) -> bool {
        let inner = self.shared.lock();
        inner.mux.is_going_away() || inner.mux.is_closed()
    }

    /// The GOAWAY the peer sent, if any.
    pub fn peer_goaway(&self) -> Option<(GoAwayCode, String)> {
        self.shared.lock().peer_goaway()
    }

    pub fn stream_count(&self) -> usize {
        self.shared.lock().mux.stream_count()
    }

    /// Round-trip time from the last heartbeat.
    pub fn rtt(&self) -> Option<Duration> {
        self.shared.lock().mux.rtt()
    }
}
