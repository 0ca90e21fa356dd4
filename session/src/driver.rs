//! The two tasks that move a session's frames: the reader (WebSocket → multiplexer, plus
//! heartbeat deadlines) and the writer (multiplexer → WebSocket, in batches, one flush each).

use crate::session::{Incoming, Session, SessionEnd, SessionEvent, Shared};
use crate::ws::{WebSocket, WsMessage, WsReader, WsWriter};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::Instrument;
use warren_proto::frame::MAX_MESSAGE;
use warren_proto::{Frame, Mux, ProtoError};

/// How long one batch may take to reach the socket before the peer counts as gone.
const WRITE_STALL: Duration = Duration::from_secs(30);
/// How long a closing session may spend saying goodbye.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// tungstenite's read window per socket read during the agent's upgrade (see [`ws_config`]).
const READ_BUFFER: usize = 16 * 1024;
/// Control events buffered for the application before new ones are dropped.
const EVENT_QUEUE: usize = 256;

/// tungstenite's limits for the agent's upgrade handshake (after it, `ws.rs` frames the
/// session): messages are capped at the protocol's maximum, and the read window is 16 KiB,
/// not tungstenite's 128 KiB.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .write_buffer_size(128 * 1024)
        .max_write_buffer_size(4 * MAX_MESSAGE)
}

/// Starts the reader and writer tasks for a session whose handshake is done. Streams the peer
/// opens arrive on [`Incoming`]; GOAWAY and control messages on the event receiver. Both tasks
/// run in `span`.
pub fn spawn<S>(
    ws: WebSocket<S>,
    mux: Mux,
    span: tracing::Span,
) -> (Session, Incoming, mpsc::Receiver<SessionEvent>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (session, incoming, events, unstarted) = prepare(mux);
    unstarted.start(ws, span);
    (session, incoming, events)
}

/// Like [`spawn`] in two steps: the session exists (streams can be opened, the handle can be
/// registered) before its tasks run, so the caller can still write the last handshake message
/// on the WebSocket itself. Frames queued meanwhile are sent after it. The edge uses this to
/// make a session's tunnels routable before the agent learns its URLs from WELCOME.
pub fn prepare(mux: Mux) -> (Session, Incoming, mpsc::Receiver<SessionEvent>, Unstarted) {
    let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let shared = Arc::new(Shared::new(mux, incoming_tx, events_tx));
    let unstarted = Unstarted {
        shared: Some(shared.clone()),
    };
    (
        Session { shared },
        Incoming(incoming_rx),
        events_rx,
        unstarted,
    )
}

/// A session from [`prepare`] whose tasks have not started. Dropping it unstarted ends the
/// session, so nothing waits on a session that will never run.
pub struct Unstarted {
    shared: Option<Arc<Shared>>,
}

impl Unstarted {
    /// Starts the reader and writer tasks on `ws`, both in `span`.
    pub fn start<S>(mut self, ws: WebSocket<S>, span: tracing::Span)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let Some(shared) = self.shared.take() else {
            return;
        };
        let WebSocket { reader, writer } = ws;
        let pong = Arc::new(Mutex::new(None));
        tokio::spawn(read_loop(shared.clone(), reader, pong.clone()).instrument(span.clone()));
        tokio::spawn(write_loop(shared, writer, pong).instrument(span));
    }
}

impl Drop for Unstarted {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.end(SessionEnd::Transport(
                "the session was never started".into(),
            ));
        }
    }
}

/// A pong the reader owes the peer, for the writer to send.
type PendingPong = Arc<Mutex<Option<Bytes>>>;

async fn read_loop<S>(shared: Arc<Shared>, mut source: WsReader<ReadHalf<S>>, pong: PendingPong)
where
    S: AsyncRead + AsyncWrite,
{
    let mut deadline = shared.lock().mux.next_timeout();
    let sleep = tokio::time::sleep_until(deadline.into());
    tokio::pin!(sleep);
    let end = loop {
        // Only this task moves the deadline (frames in, heartbeats out), and it reads the next
        // one under the lock it already holds.
        let next = tokio::select! {
            biased;
            _ = shared.ended.cancelled() => return,
            message = source.read() => match message {
                Ok(Some(WsMessage::Binary(data))) => match on_message(&shared, data) {
                    Ok(next) => next,
                    Err(e) => break protocol_failure(&shared, e),
                },
                Ok(Some(WsMessage::Text)) => {
                    break protocol_failure(&shared, ProtoError::UnexpectedFrame("text message"));
                }
                Ok(Some(WsMessage::Close) | None) => {
                    break SessionEnd::PeerClosed(shared.lock().peer_goaway());
                }
                // WebSocket-level pings (from a proxy, say) are answered; liveness is our PING.
                Ok(Some(WsMessage::Ping)) => {
                    if let Some(payload) = source.take_pong() {
                        if let Ok(mut slot) = pong.lock() {
                            *slot = Some(payload);
                        }
                        shared.writer.notify_one();
                    }
                    continue;
                }
                Ok(Some(WsMessage::Pong)) => continue,
                Err(e) => break SessionEnd::Transport(e.to_string()),
            },
            () = &mut sleep => {
                source.release_spare();
                let now = tokio::time::Instant::now().into_std();
                let timeout = shared.with_mux(|inner| {
                    inner.mux.handle_timeout(now).map(|()| inner.mux.next_timeout())
                });
                match timeout {
                    Ok(next) => next,
                    Err(e) => break protocol_failure(&shared, e),
                }
            }
        };
        if next != deadline {
            deadline = next;
            sleep.as_mut().reset(deadline.into());
        }
    };
    shared.end(end);
}

/// Applies every frame of one message under one lock; returns the next heartbeat deadline.
fn on_message(shared: &Arc<Shared>, mut data: Bytes) -> Result<Instant, ProtoError> {
    let now = tokio::time::Instant::now().into_std();
    if data.len() > MAX_MESSAGE {
        return Err(warren_proto::FrameError::Oversized {
            len: data.len(),
            max: MAX_MESSAGE,
        }
        .into());
    }
    shared.with_mux(|inner| {
        while !data.is_empty() {
            match Frame::decode(&mut data)? {
                Some(frame) => inner.mux.handle_frame(frame, now)?,
                None => return Err(warren_proto::FrameError::Truncated(data.len()).into()),
            }
        }
        Ok(inner.mux.next_timeout())
    })
}

/// Tells the peer why the session is closing, then reports the error as the end reason.
fn protocol_failure(shared: &Arc<Shared>, error: ProtoError) -> SessionEnd {
    tracing::warn!(%error, "closing tunnel session");
    let message = error.to_string();
    shared.with_mux(|inner| inner.mux.go_away(error.goaway_code(), &message));
    SessionEnd::Protocol(error)
}

async fn write_loop<S>(shared: Arc<Shared>, mut sink: WsWriter<WriteHalf<S>>, pong: PendingPong)
where
    S: AsyncRead + AsyncWrite,
{
    // However this task ends, `drain` learns that the writing is over.
    let _flushed = shared.flushed.clone().drop_guard();
    let mut batches: Vec<Bytes> = Vec::new();
    loop {
        shared.with_mux(|inner| {
            while let Some(batch) = inner.mux.poll_transmit() {
                batches.push(batch);
            }
        });
        let owed = pong.lock().ok().and_then(|mut slot| slot.take());
        if batches.is_empty() && owed.is_none() {
            if shared.ended.is_cancelled() {
                break;
            }
            shared.writer.notified().await;
            // Let the other tasks that are ready run first, and the I/O driver be polled once,
            // so frames of requests arriving together leave in one batch (one socket write)
            // instead of one write each: woken from a worker thread, this task would otherwise
            // run next, right after the first frame was queued.
            tokio::task::yield_now().await;
            continue;
        }
        let write = async {
            if let Some(payload) = owed {
                sink.pong(payload).await?;
            }
            sink.send(batches.drain(..)).await
        };
        match tokio::time::timeout(WRITE_STALL, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                shared.end(SessionEnd::Transport(e.to_string()));
                return;
            }
            Err(_) => {
                shared.end(SessionEnd::Transport(format!(
                    "the peer read nothing for {} s",
                    WRITE_STALL.as_secs()
                )));
                return;
            }
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
}
