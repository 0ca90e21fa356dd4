//! The model of one stream: what each side wrote, what reached the peer, what it read.
//!
//! The model counts bytes, not contents: stream data is a pattern that depends on the stream,
//! the direction and the position, so the bytes read can be checked against the concatenation
//! of everything `write` accepted without storing it.

use warren_proto::mux::StreamError;
use warren_proto::{ResetCode, StreamId, TunnelId};

/// The byte at `offset` of what `from` sends on `stream`.
fn pattern_byte(stream: StreamId, from: usize, offset: usize) -> u8 {
    let seed = (u64::from(stream.0) << 1 | from as u64) << 40;
    let x = (offset as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8
}

pub fn pattern(stream: StreamId, from: usize, offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len)
        .map(|i| pattern_byte(stream, from, i))
        .collect()
}

/// One direction of one stream: what the sender wrote and what the receiver got and read.
#[derive(Debug, Default)]
pub struct Half {
    /// Bytes `write` accepted, in order.
    pub sent: usize,
    /// Bytes the sending application still wants to write.
    pub backlog: usize,
    /// The sender finishes once its backlog is written.
    pub want_fin: bool,
    pub fin_sent: bool,
    /// The last write returned 0: the sender waits for `Event::Writable`.
    pub write_blocked: bool,
    /// The sender got an error: it writes no more.
    pub write_aborted: bool,
    /// DATA bytes handed to the receiver's `handle_frame`.
    pub delivered: usize,
    /// Of those, bytes the receiver dropped (it reset or released the stream, or got RST).
    pub discarded: usize,
    pub dropped: bool,
    pub fin_delivered: bool,
    /// Bytes the receiving application read (and found equal to what was sent).
    pub read: usize,
    pub eof: bool,
    /// The last read returned `Blocked`: the receiver waits for `Event::Readable`.
    pub read_blocked: bool,
    /// The receiver got an error: it reads no more.
    pub read_aborted: bool,
    /// The receiver does not read before this step.
    pub stalled_until: usize,
}

impl Half {
    /// Bytes buffered in the receiving mux.
    pub fn buffered(&self) -> usize {
        self.delivered - self.read - self.discarded
    }

    pub(super) fn drop_buffer(&mut self) {
        self.discarded = self.delivered - self.read;
        self.dropped = true;
    }

    /// Every byte the sender wrote was read, in order, and followed by EOF.
    pub fn complete(&self) -> bool {
        self.backlog == 0 && self.fin_sent && self.eof && self.read == self.sent && !self.dropped
    }
}

#[derive(Debug)]
pub struct Stream {
    pub id: StreamId,
    pub tunnel: TunnelId,
    pub opener: usize,
    /// Whether each side's application has the stream (the opener at once, the peer on `Opened`).
    pub known: [bool; 2],
    pub released: [bool; 2],
    /// The reset each side's mux reports, if any (the first one wins).
    pub reset: [Option<ResetCode>; 2],
    /// `half[s]`: the bytes side `s` sends.
    pub half: [Half; 2],
}

impl Stream {
    /// Whether either side reset or released the stream (its data may be cut short).
    pub fn tainted(&self) -> bool {
        self.released.iter().any(|r| *r) || self.reset.iter().any(Option::is_some)
    }

    /// The error side `s`'s application gets from any operation, if any.
    pub(super) fn local_error(&self, s: usize) -> Option<StreamError> {
        if self.released[s] {
            return Some(StreamError::Closed);
        }
        self.reset[s].map(StreamError::Reset)
    }
}
