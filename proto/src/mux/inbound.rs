//! What each received frame does to the multiplexer.

use super::{COMPACT_AFTER, Event, Mux};
use crate::control;
use crate::error::{ProtoError, ResetCode};
use crate::frame::Frame;
use crate::ids::{StreamId, TunnelId};
use bytes::Bytes;
use std::time::Instant;

impl Mux {
    /// Applies one frame from the peer. An error is fatal for the session: send GOAWAY with
    /// [`ProtoError::goaway_code`] and close the transport.
    pub fn handle_frame(&mut self, frame: Frame, now: Instant) -> Result<(), ProtoError> {
        self.last_recv = now;
        if self.closed {
            return Ok(());
        }
        match frame {
            Frame::Data { stream, payload } => self.on_data(stream, payload),
            Frame::Open { stream, tunnel } => self.on_open(stream, tunnel),
            Frame::Fin { stream } => self.on_fin(stream),
            Frame::Rst { stream, code } => self.on_rst(stream, code),
            Frame::Window { stream, increment } => {
                if self.add_send_credit(stream, increment) {
                    Ok(())
                } else {
                    Err(ProtoError::WindowOverflow(stream))
                }
            }
            Frame::Ping { nonce } => {
                self.queue(&Frame::Pong { nonce });
                Ok(())
            }
            Frame::Pong { nonce } => {
                if let Some((sent, at)) = self.ping_sent_at
                    && sent == nonce
                {
                    self.rtt = Some(now.saturating_duration_since(at));
                    self.ping_sent_at = None;
                }
                Ok(())
            }
            Frame::GoAway { code, message } => {
                self.peer_goaway = true;
                self.events.push_back(Event::GoAway { code, message });
                Ok(())
            }
            Frame::Event { body } => {
                let message = control::Event::from_body(&body)?;
                self.events.push_back(Event::Message(message));
                Ok(())
            }
            other @ (Frame::Hello { .. } | Frame::Welcome { .. } | Frame::Reject { .. }) => {
                Err(ProtoError::UnexpectedFrame(other.kind_name()))
            }
        }
    }

    fn on_data(&mut self, id: StreamId, payload: Bytes) -> Result<(), ProtoError> {
        let len = payload.len();
        if len as u64 > self.recv_allowed {
            return Err(ProtoError::SessionFlowControl { len });
        }
        self.recv_allowed -= len as u64;
        let Some(stream) = self.streams.get_mut(&id) else {
            if !self.was_opened(id) {
                return Err(ProtoError::UnopenedStream {
                    kind: "DATA",
                    stream: id,
                });
            }
            // The stream is gone (released or refused): drop the bytes, keep the credit flowing.
            self.consumed_session(len);
            return Ok(());
        };
        if stream.fin_received {
            return Err(ProtoError::UnexpectedFrame("DATA after FIN"));
        }
        if stream.reset.is_some() {
            self.consumed_session(len);
            return Ok(());
        }
        if len as u64 > stream.recv_allowed {
            return Err(ProtoError::StreamFlowControl { stream: id, len });
        }
        stream.recv_allowed -= len as u64;
        if len > 0 {
            let was_empty = stream.recv_buf.is_empty();
            stream.recv_buf.push_back(payload);
            stream.shares_buffers = true;
            if was_empty {
                stream.unread_since = Some(self.last_recv);
                self.events.push_back(Event::Readable(id));
            }
            if self.compact_at.is_none() {
                self.compact_at = Some(self.last_recv + COMPACT_AFTER);
            }
        }
        // Session credit comes back on arrival, not on consumption: what a stream holds is
        // bounded by its own window, so a stream whose reader stopped (a visitor who never
        // reads) cannot use up the session's credit and stall the other streams.
        self.consumed_session(len);
        Ok(())
    }

    fn on_open(&mut self, id: StreamId, tunnel: TunnelId) -> Result<(), ProtoError> {
        if self.role.owns(id) || id.0 <= self.last_peer_id {
            return Err(ProtoError::BadStreamId(id));
        }
        self.last_peer_id = id.0;
        if self.local_goaway || self.peer_streams >= self.local.max_streams {
            // Refuse this stream only; the session carries on. Its DATA will be dropped.
            self.queue(&Frame::Rst {
                stream: id,
                code: ResetCode::Refused,
            });
            return Ok(());
        }
        let mut state = super::StreamState::new(tunnel, &self.local, &self.peer);
        state.opened_by_peer = true;
        self.streams.insert(id, state);
        self.peer_streams += 1;
        self.events.push_back(Event::Opened { stream: id, tunnel });
        Ok(())
    }

    fn on_fin(&mut self, id: StreamId) -> Result<(), ProtoError> {
        let Some(stream) = self.streams.get_mut(&id) else {
            return self.ignore_if_gone("FIN", id);
        };
        if stream.fin_received {
            return Err(ProtoError::UnexpectedFrame("second FIN"));
        }
        stream.fin_received = true;
        if stream.reset.is_none() {
            self.events.push_back(Event::Readable(id));
        }
        Ok(())
    }

    fn on_rst(&mut self, id: StreamId, code: ResetCode) -> Result<(), ProtoError> {
        let Some(stream) = self.streams.get_mut(&id) else {
            return self.ignore_if_gone("RST", id);
        };
        if stream.reset.is_some() {
            return Ok(());
        }
        stream.reset = Some(code);
        // The dropped bytes' session credit came back when they arrived.
        stream.recv_buf.clear();
        if stream.blocked {
            stream.blocked = false;
            self.blocked.retain(|b| *b != id);
        }
        self.events.push_back(Event::Readable(id));
        self.events.push_back(Event::Writable(id));
        Ok(())
    }

    fn ignore_if_gone(&self, kind: &'static str, id: StreamId) -> Result<(), ProtoError> {
        if self.was_opened(id) {
            Ok(())
        } else {
            Err(ProtoError::UnopenedStream { kind, stream: id })
        }
    }
}
