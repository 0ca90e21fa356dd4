//! Running both sides to the end, and what must hold once they got there.

use super::pair::{AGENT, Check, EDGE, Pair, fail};
use proptest::prelude::*;
use std::collections::VecDeque;

/// Settling rounds before a run that still makes progress is called a livelock.
const MAX_ROUNDS: usize = 20_000;

impl Pair {
    /// Runs both sides like a runtime would until nothing moves: every stream finishes once its
    /// backlog is written, writers and readers act only when their wake-up event came, the
    /// transport delivers everything. `stalled` is a (stream, reading side) that never reads.
    pub fn settle(&mut self, stalled: Option<(usize, usize)>) -> Check {
        for _ in 0..MAX_ROUNDS {
            let mut progress = false;
            for s in [EDGE, AGENT] {
                for i in 0..self.streams.len() {
                    let st = &mut self.streams[i];
                    let half = &mut st.half[s];
                    if !st.known[s] || (half.write_blocked && half.backlog > 0) {
                        continue;
                    }
                    half.want_fin = true;
                    progress |= self.flush_writes(s, i)?;
                }
            }
            for side in [EDGE, AGENT] {
                progress |= self.transmit(side, usize::MAX)?;
                progress |= self.deliver(side, usize::MAX)?;
            }
            for r in [EDGE, AGENT] {
                for i in 0..self.streams.len() {
                    if stalled == Some((i, r)) {
                        continue;
                    }
                    loop {
                        let half = &self.streams[i].half[1 - r];
                        if !self.streams[i].known[r]
                            || half.eof
                            || half.read_aborted
                            || half.read_blocked
                        {
                            break;
                        }
                        progress |= self.read(r, i, 64 * 1024, (i + r) % 2 == 1)?;
                    }
                }
            }
            if !progress {
                return Ok(());
            }
        }
        fail(format!("still busy after {MAX_ROUNDS} rounds: livelock"))
    }

    /// Every stream (but `except`, a stream and its reading side) carried all its bytes.
    pub fn check_complete(&self, except: Option<(usize, usize)>) -> Check {
        for i in 0..self.streams.len() {
            self.check_stream_complete(i, except)?;
        }
        Ok(())
    }

    pub fn check_stream_complete(&self, i: usize, except: Option<(usize, usize)>) -> Check {
        let st = &self.streams[i];
        for s in [EDGE, AGENT] {
            if except != Some((i, 1 - s)) {
                prop_assert!(
                    st.half[s].complete(),
                    "stream {} from side {} did not complete: {:?}",
                    st.id,
                    s,
                    st
                );
            }
        }
        Ok(())
    }

    /// Every stream ended one way or another: complete, or cut short by a reset or release that
    /// both applications found out about.
    pub fn check_ended(&self) -> Check {
        for st in &self.streams {
            prop_assert!(
                st.known[EDGE] && st.known[AGENT],
                "stream {} never reached the peer",
                st.id
            );
            for s in [EDGE, AGENT] {
                let half = &st.half[s];
                if !st.tainted() {
                    prop_assert!(
                        half.complete(),
                        "stream {} from side {} did not complete: {:?}",
                        st.id,
                        s,
                        st
                    );
                    continue;
                }
                let writer_done = half.write_aborted || (half.backlog == 0 && half.fin_sent);
                let reader_done = half.read_aborted || half.eof;
                prop_assert!(
                    writer_done && reader_done,
                    "stream {} from side {} hangs: {:?}",
                    st.id,
                    s,
                    st
                );
            }
        }
        prop_assert!(self.wire.iter().all(VecDeque::is_empty));
        Ok(())
    }

    /// Both applications drop every stream; no frame is left in flight afterwards. After a
    /// clean close (every stream complete) releasing sends nothing at all.
    pub fn release_all(&mut self, clean: bool) -> Check {
        for i in 0..self.streams.len() {
            for side in [EDGE, AGENT] {
                self.release(side, i);
            }
        }
        if clean {
            for side in [EDGE, AGENT] {
                prop_assert!(
                    self.mux[side].poll_transmit().is_none(),
                    "release after a clean close sent frames"
                );
            }
        }
        for _ in 0..2 {
            for side in [EDGE, AGENT] {
                self.transmit(side, usize::MAX)?;
                self.deliver(side, usize::MAX)?;
            }
        }
        for side in [EDGE, AGENT] {
            prop_assert_eq!(
                self.mux[side].stream_count(),
                0,
                "side {} still holds streams",
                side
            );
            prop_assert!(self.mux[side].poll_transmit().is_none());
        }
        Ok(())
    }
}
