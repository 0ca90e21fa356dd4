//! One stream's state, and the operations the application performs on streams.

use super::{Event, GROW_INTERVAL, GROWN_WINDOW, MAX_CREDIT, Mux, OUT_HIGH_WATER, Settings};
use crate::error::ResetCode;
use crate::frame::{Frame, MAX_DATA_CHUNK};
use crate::ids::{StreamId, TunnelId};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::Instant;

/// What a read produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// This many bytes were copied.
    Data(usize),
    /// Nothing buffered yet; wait for [`Event::Readable`].
    Blocked,
    /// The peer finished sending (FIN) and everything was read.
    Eof,
}

/// Why a stream operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("stream reset: {0}")]
    Reset(ResetCode),
    #[error("stream already finished or released")]
    Closed,
    #[error("the tunnel session is closed")]
    SessionClosed,
}

#[derive(Debug)]
pub(super) struct StreamState {
    pub(super) tunnel: TunnelId,
    /// Bytes we may still send on this stream.
    pub(super) send_credit: u64,
    /// We sent FIN.
    pub(super) fin_sent: bool,
    /// Received bytes not yet read by the application.
    pub(super) recv_buf: VecDeque<Bytes>,
    /// Since when `recv_buf` has held bytes (it was last empty just before).
    pub(super) unread_since: Option<Instant>,
    /// `recv_buf` may hold slices of a received message shared with other streams (see
    /// `Mux::compact_unread`).
    pub(super) shares_buffers: bool,
    /// Bytes the peer may still send on this stream.
    pub(super) recv_allowed: u64,
    /// Bytes read but not yet returned to the peer with WINDOW.
    pub(super) recv_unacked: u64,
    /// This stream's receive window: `stream_window`, more once grown (see `Mux::consumed`).
    pub(super) window: u32,
    /// When credit was last returned for this stream (the last frame's arrival time then).
    pub(super) credit_returned_at: Option<Instant>,
    /// The peer sent FIN.
    pub(super) fin_received: bool,
    /// Reset by either side, with the reason.
    pub(super) reset: Option<ResetCode>,
    /// Waiting in `Mux::blocked` for capacity.
    pub(super) blocked: bool,
    pub(super) opened_by_peer: bool,
}

impl StreamState {
    pub(super) fn new(tunnel: TunnelId, local: &Settings, peer: &Settings) -> StreamState {
        StreamState {
            tunnel,
            send_credit: u64::from(peer.stream_window),
            fin_sent: false,
            recv_buf: VecDeque::new(),
            unread_since: None,
            shares_buffers: false,
            recv_allowed: u64::from(local.stream_window),
            recv_unacked: 0,
            window: local.stream_window,
            credit_returned_at: None,
            fin_received: false,
            reset: None,
            blocked: false,
            opened_by_peer: false,
        }
    }

    /// Forgets when unread bytes arrived once the application has read them all.
    fn note_if_drained(&mut self) {
        if self.recv_buf.is_empty() {
            self.unread_since = None;
            self.shares_buffers = false;
        }
    }

    /// Copies the unread bytes into one buffer of this stream's own, so they no longer keep
    /// the (larger, shared) received messages they arrived in alive.
    pub(super) fn compact_unread(&mut self) {
        let total = self.recv_buf.iter().map(Bytes::len).sum();
        let mut own = BytesMut::with_capacity(total);
        for piece in self.recv_buf.drain(..) {
            own.extend_from_slice(&piece);
        }
        if !own.is_empty() {
            self.recv_buf.push_back(own.freeze());
        }
        self.shares_buffers = false;
    }

    #[cfg(test)]
    pub(super) fn buffered(&self) -> usize {
        self.recv_buf.iter().map(Bytes::len).sum()
    }
}

impl Mux {
    /// Copies buffered bytes of `id` into `dst`.
    pub fn read(&mut self, id: StreamId, dst: &mut [u8]) -> Result<Read, StreamError> {
        let stream = self.live_stream(id)?;
        if let Some(code) = stream.reset {
            return Err(StreamError::Reset(code));
        }
        if stream.recv_buf.is_empty() {
            return Ok(if stream.fin_received {
                Read::Eof
            } else {
                Read::Blocked
            });
        }
        let mut copied = 0;
        while copied < dst.len() {
            let Some(front) = stream.recv_buf.front_mut() else {
                break;
            };
            let n = front.len().min(dst.len() - copied);
            dst[copied..copied + n].copy_from_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                stream.recv_buf.pop_front();
            }
            copied += n;
        }
        stream.note_if_drained();
        self.consumed(id, copied);
        Ok(Read::Data(copied))
    }

    /// Takes the next buffered chunk of `id` (up to `max` bytes) without copying.
    pub fn read_chunk(&mut self, id: StreamId, max: usize) -> Result<Option<Bytes>, StreamError> {
        let stream = self.live_stream(id)?;
        if let Some(code) = stream.reset {
            return Err(StreamError::Reset(code));
        }
        let Some(front) = stream.recv_buf.front_mut() else {
            return Ok(None);
        };
        let chunk = if front.len() <= max {
            stream.recv_buf.pop_front().unwrap_or_default()
        } else {
            front.split_to(max)
        };
        stream.note_if_drained();
        self.consumed(id, chunk.len());
        Ok(Some(chunk))
    }

    /// True if the peer finished sending and everything was read.
    pub fn is_eof(&self, id: StreamId) -> bool {
        self.streams
            .get(&id)
            .is_some_and(|s| s.fin_received && s.recv_buf.is_empty())
    }

    /// Queues as much of `data` as the windows and the outgoing queue allow. `Ok(0)` for a
    /// non-empty `data` means blocked: wait for [`Event::Writable`].
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, StreamError> {
        let session_credit = self.send_credit;
        let room = OUT_HIGH_WATER.saturating_sub(self.queued);
        let stream = self.live_stream(id)?;
        if let Some(code) = stream.reset {
            return Err(StreamError::Reset(code));
        }
        if stream.fin_sent {
            return Err(StreamError::Closed);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let allowed = (data.len() as u64)
            .min(stream.send_credit)
            .min(session_credit)
            .min(room as u64) as usize;
        if allowed == 0 {
            if !stream.blocked {
                stream.blocked = true;
                // Out of its own credit, the stream waits for its own WINDOW
                // (`add_send_credit`). Only streams that wait on the session (its credit, or
                // room in the outgoing queue) join the list `wake_blocked` wakes: thousands of
                // streams whose readers stopped would otherwise all be woken, to block again,
                // every time the queue drains.
                if stream.send_credit > 0 {
                    self.blocked.push(id);
                }
            }
            return Ok(0);
        }
        stream.send_credit -= allowed as u64;
        self.send_credit -= allowed as u64;
        for chunk in data[..allowed].chunks(MAX_DATA_CHUNK) {
            self.queue_data(id, chunk);
        }
        Ok(allowed)
    }

    /// Half-closes `id`: queues FIN. Reading continues until the peer finishes too.
    pub fn finish(&mut self, id: StreamId) -> Result<(), StreamError> {
        let stream = self.live_stream(id)?;
        if let Some(code) = stream.reset {
            return Err(StreamError::Reset(code));
        }
        if stream.fin_sent {
            return Ok(());
        }
        stream.fin_sent = true;
        self.queue(&Frame::Fin { stream: id });
        Ok(())
    }

    /// Abandons `id` in both directions and tells the peer why.
    pub fn reset(&mut self, id: StreamId, code: ResetCode) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.reset.is_some() {
            return;
        }
        stream.reset = Some(code);
        stream.recv_buf.clear();
        stream.note_if_drained();
        let done = stream.fin_sent && stream.fin_received;
        if !self.closed && !done {
            self.queue(&Frame::Rst { stream: id, code });
        }
        // The dropped bytes' session credit came back when they arrived.
    }

    /// The application is done with `id` (its handle was dropped). Like closing a TCP socket:
    /// if the peer may still send, or sent bytes nobody read, the stream is reset; otherwise a
    /// FIN is sent if it was not yet. The stream is forgotten either way.
    pub fn release(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get(&id) else {
            return;
        };
        let unread = !stream.fin_received || !stream.recv_buf.is_empty();
        if stream.reset.is_none() {
            if unread {
                self.reset(id, ResetCode::Cancel);
            } else if !stream.fin_sent && !self.closed {
                self.queue(&Frame::Fin { stream: id });
            }
        }
        if let Some(stream) = self.streams.remove(&id) {
            if stream.opened_by_peer {
                self.peer_streams -= 1;
            }
            let growth = stream.window.saturating_sub(self.local.stream_window);
            self.grown = self.grown.saturating_sub(u64::from(growth));
        }
    }

    fn live_stream(&mut self, id: StreamId) -> Result<&mut StreamState, StreamError> {
        if self.closed {
            return Err(StreamError::SessionClosed);
        }
        self.streams.get_mut(&id).ok_or(StreamError::Closed)
    }

    /// Returns stream and session credit for `n` bytes the application consumed.
    /// Credit goes back once half the stream's window was consumed; if that happens twice
    /// within the grow interval, the window was what limited the stream, and it grows (within
    /// the session's budget for growth): the extra is added to the same WINDOW frame.
    fn consumed(&mut self, id: StreamId, n: usize) {
        let now = self.last_recv;
        let grow_within = self
            .rtt
            .map_or(GROW_INTERVAL, |rtt| (rtt * 2).max(GROW_INTERVAL));
        let budget = u64::from(self.local.session_window / 4).saturating_sub(self.grown);
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.recv_unacked += n as u64;
            if stream.recv_unacked >= u64::from(stream.window / 2) && !stream.fin_received {
                let limiting = stream
                    .credit_returned_at
                    .is_some_and(|at| now.saturating_duration_since(at) < grow_within);
                let growth = if limiting {
                    u64::from(stream.window)
                        .min(u64::from(GROWN_WINDOW.saturating_sub(stream.window)))
                        .min(budget)
                } else {
                    0
                };
                stream.credit_returned_at = Some(now);
                // At most GROWN_WINDOW in all, so the sum fits the frame's u32.
                stream.window += growth as u32;
                let increment = stream.recv_unacked + growth;
                stream.recv_unacked = 0;
                stream.recv_allowed += increment;
                self.grown += growth;
                self.queue(&Frame::Window {
                    stream: id,
                    increment: increment as u32,
                });
            }
        }
    }

    pub(super) fn add_send_credit(&mut self, id: StreamId, increment: u32) -> bool {
        let increment = u64::from(increment);
        if id.is_session() {
            self.send_credit += increment;
            if self.send_credit > MAX_CREDIT {
                return false;
            }
            self.wake_blocked();
            return true;
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return true;
        };
        stream.send_credit += increment;
        if stream.send_credit > MAX_CREDIT {
            return false;
        }
        if stream.blocked {
            stream.blocked = false;
            self.blocked.retain(|b| *b != id);
            self.events.push_back(Event::Writable(id));
        }
        true
    }
}
