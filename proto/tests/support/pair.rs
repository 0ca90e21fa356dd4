//! Two [`Mux`]es, an edge and an agent, joined by a simulated in-order transport, and a model
//! of every stream that checks each observable result of the muxes against what a correct
//! implementation must produce.
//!
//! The transport is a queue of batches per direction: `transmit` moves batches from
//! `poll_transmit` onto the wire, `deliver` hands them to the peer's `handle_frame`. Holding
//! batches on the wire models a slow network; nothing is ever lost or reordered. Application
//! calls are in `app.rs`, running both sides to the end in `settle.rs`.

use super::model::{Half, Stream};
use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::VecDeque;
use std::time::Instant;
use warren_proto::frame::MAX_MESSAGE;
use warren_proto::mux::Heartbeat;
use warren_proto::{Event, Frame, Mux, Role, Settings, StreamId, TunnelId};

pub const EDGE: usize = 0;
pub const AGENT: usize = 1;

pub type Check = Result<(), TestCaseError>;

pub(super) fn fail<T>(message: String) -> Result<T, TestCaseError> {
    Err(TestCaseError::fail(message))
}

/// A frame for failure messages, without kilobytes of payload.
fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Data { stream, payload } => {
            format!("DATA on stream {stream} ({} bytes)", payload.len())
        }
        other => format!("{other:?}"),
    }
}

pub struct Pair {
    pub mux: [Mux; 2],
    pub settings: [Settings; 2],
    pub wire: [VecDeque<Bytes>; 2],
    pub streams: Vec<Stream>,
    pub now: Instant,
    /// Operation counter, for stalls.
    pub step: usize,
}

impl Pair {
    /// `settings[s]` are side `s`'s receive settings, as exchanged in the handshake.
    pub fn new(edge: Settings, agent: Settings) -> Pair {
        let now = Instant::now();
        let hb = Heartbeat::default();
        Pair {
            mux: [
                Mux::new(Role::Edge, edge, agent, hb, now),
                Mux::new(Role::Agent, agent, edge, hb, now),
            ],
            settings: [edge, agent],
            wire: [VecDeque::new(), VecDeque::new()],
            streams: Vec::new(),
            now,
            step: 0,
        }
    }

    pub fn opened_by(&self, side: usize) -> usize {
        self.streams.iter().filter(|s| s.opener == side).count()
    }

    pub fn open(&mut self, side: usize) -> Result<usize, TestCaseError> {
        let tunnel = TunnelId(u32::try_from(self.streams.len()).expect("few streams"));
        let id = match self.mux[side].open(tunnel) {
            Ok(id) => id,
            Err(e) => return fail(format!("open on side {side}: {e}")),
        };
        prop_assert!(self.index(id).is_none(), "stream id {} reused", id);
        self.streams.push(Stream {
            id,
            tunnel,
            opener: side,
            known: [side == EDGE, side == AGENT],
            released: [false; 2],
            reset: [None; 2],
            half: [Half::default(), Half::default()],
        });
        Ok(self.streams.len() - 1)
    }

    fn index(&self, id: StreamId) -> Option<usize> {
        self.streams.iter().position(|s| s.id == id)
    }

    pub(super) fn index_or_fail(&self, id: StreamId, what: &str) -> Result<usize, TestCaseError> {
        match self.index(id) {
            Some(i) => Ok(i),
            None => fail(format!("{what} for stream {id}, which nobody opened")),
        }
    }

    // ------------------------------------------------------------ transport

    /// Moves up to `batches` batches from `side`'s mux onto the wire.
    pub fn transmit(&mut self, side: usize, batches: usize) -> Result<bool, TestCaseError> {
        let mut any = false;
        for _ in 0..batches {
            let Some(batch) = self.mux[side].poll_transmit() else {
                break;
            };
            prop_assert!(batch.len() <= MAX_MESSAGE, "batch of {} bytes", batch.len());
            self.wire[side].push_back(batch);
            any = true;
        }
        self.events(side)?;
        Ok(any)
    }

    /// Hands up to `batches` batches sent by `from` to the peer.
    pub fn deliver(&mut self, from: usize, batches: usize) -> Result<bool, TestCaseError> {
        let to = 1 - from;
        let mut any = false;
        for _ in 0..batches {
            let Some(batch) = self.wire[from].pop_front() else {
                break;
            };
            any = true;
            let frames = match Frame::decode_message(batch) {
                Ok(frames) => frames,
                Err(e) => return fail(format!("side {from} sent an undecodable batch: {e}")),
            };
            for frame in frames {
                self.account(from, &frame)?;
                let what = describe(&frame);
                if let Err(e) = self.mux[to].handle_frame(frame, self.now) {
                    return fail(format!(
                        "side {to} rejected {what} from a correct peer: {e}"
                    ));
                }
                self.events(to)?;
                self.check_buffers(to)?;
            }
        }
        Ok(any)
    }

    /// Updates the model for a frame from `from` that is about to be delivered.
    fn account(&mut self, from: usize, frame: &Frame) -> Check {
        let to = 1 - from;
        match frame {
            Frame::Data { stream, payload } => {
                let i = self.index_or_fail(*stream, "DATA")?;
                let half = &mut self.streams[i].half[from];
                prop_assert!(!half.fin_delivered, "DATA after FIN on {}", stream);
                half.delivered += payload.len();
                if half.dropped {
                    half.discarded += payload.len();
                }
                prop_assert!(
                    half.delivered <= half.sent,
                    "more delivered than written on {}",
                    stream
                );
            }
            Frame::Fin { stream } => {
                let i = self.index_or_fail(*stream, "FIN")?;
                let half = &mut self.streams[i].half[from];
                prop_assert!(!half.fin_delivered, "second FIN on {}", stream);
                prop_assert_eq!(
                    half.delivered,
                    half.sent,
                    "FIN before all data on {}",
                    stream
                );
                half.fin_delivered = true;
            }
            Frame::Rst { stream, code } => {
                let i = self.index_or_fail(*stream, "RST")?;
                let st = &mut self.streams[i];
                prop_assert!(
                    st.tainted(),
                    "RST on {} that nobody reset or released",
                    stream
                );
                if !st.released[to] && st.reset[to].is_none() {
                    st.reset[to] = Some(*code);
                    st.half[from].drop_buffer();
                }
            }
            Frame::Open { stream, .. } => {
                self.index_or_fail(*stream, "OPEN")?;
            }
            Frame::Window { .. } => {}
            other => return fail(format!("unexpected frame {other:?}")),
        }
        Ok(())
    }

    /// Applies `side`'s events to the model.
    fn events(&mut self, side: usize) -> Check {
        while let Some(event) = self.mux[side].poll_event() {
            match event {
                Event::Opened { stream, tunnel } => {
                    let i = self.index_or_fail(stream, "Opened")?;
                    let st = &mut self.streams[i];
                    prop_assert_eq!(st.opener, 1 - side, "Opened on the opener's side");
                    prop_assert_eq!(st.tunnel, tunnel);
                    prop_assert!(!st.known[side], "Opened twice for {}", stream);
                    st.known[side] = true;
                }
                Event::Readable(id) => {
                    let i = self.index_or_fail(id, "Readable")?;
                    prop_assert!(
                        self.streams[i].known[side],
                        "Readable before Opened for {}",
                        id
                    );
                    self.streams[i].half[1 - side].read_blocked = false;
                }
                Event::Writable(id) => {
                    let i = self.index_or_fail(id, "Writable")?;
                    self.streams[i].half[side].write_blocked = false;
                }
                other => return fail(format!("unexpected event {other:?} on side {side}")),
            }
        }
        Ok(())
    }

    /// Buffered bytes in `side`'s mux stay within its stream and session windows. Streams
    /// whose window grew (auto-tuning) may buffer more than `stream_window`, up to
    /// `GROWN_WINDOW`, and all of them together at most a quarter of the session window more.
    fn check_buffers(&self, side: usize) -> Check {
        let window = self.settings[side];
        let base = window.stream_window as usize;
        let cap = base.max(warren_proto::mux::GROWN_WINDOW as usize);
        let mut total = 0;
        let mut beyond = 0;
        for st in &self.streams {
            let buffered = st.half[1 - side].buffered();
            prop_assert!(
                buffered <= cap,
                "stream {} buffers {} bytes, over the largest window of {}",
                st.id,
                buffered,
                cap
            );
            beyond += buffered.saturating_sub(base);
            total += buffered;
        }
        prop_assert!(
            beyond <= window.session_window as usize / 4,
            "side {} buffers {} bytes beyond the streams' base windows, over the growth budget",
            side,
            beyond
        );
        // Session credit comes back on arrival: the session window bounds bytes in flight,
        // not bytes buffered, which are bounded per stream (above): at most one window each.
        prop_assert!(
            total <= cap * self.streams.len().max(1),
            "side {} buffers {} bytes, over one window per stream",
            side,
            total
        );
        Ok(())
    }
}
