//! What the applications on either side do with their streams, checked against the model.

use super::model::pattern;
use super::pair::{Check, Pair, fail};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use warren_proto::ResetCode;
use warren_proto::mux::{OUT_HIGH_WATER, Read};

impl Pair {
    /// Side `s` wants to write `len` more bytes on stream `i`, and tries to.
    pub fn write(&mut self, s: usize, i: usize, len: usize) -> Check {
        let st = &mut self.streams[i];
        if !st.known[s] || st.half[s].want_fin || st.half[s].write_aborted {
            return Ok(());
        }
        st.half[s].backlog += len;
        self.flush_writes(s, i).map(|_| ())
    }

    /// Side `s` wants to finish stream `i` once its backlog is written.
    pub fn finish(&mut self, s: usize, i: usize) -> Check {
        if !self.streams[i].known[s] || self.streams[i].half[s].write_aborted {
            return Ok(());
        }
        self.streams[i].half[s].want_fin = true;
        self.flush_writes(s, i).map(|_| ())
    }

    /// Writes as much of side `s`'s backlog on stream `i` as the mux takes, then FIN if due.
    pub(super) fn flush_writes(&mut self, s: usize, i: usize) -> Result<bool, TestCaseError> {
        let st = &mut self.streams[i];
        let expected_err = st.local_error(s);
        let id = st.id;
        let half = &mut st.half[s];
        if !st.known[s] || half.write_aborted {
            return Ok(false);
        }
        let mut progress = false;
        if half.backlog > 0 {
            let len = half.backlog.min(OUT_HIGH_WATER);
            let data = pattern(id, s, half.sent, len);
            let result = self.mux[s].write(id, &data);
            if let Some(err) = expected_err {
                prop_assert_eq!(result, Err(err), "write on {} after reset or release", id);
                half.write_aborted = true;
                half.backlog = 0;
                return Ok(true);
            }
            let n = match result {
                Ok(n) => n,
                Err(e) => return fail(format!("write on {id} from side {s}: {e}")),
            };
            prop_assert!(n <= len);
            half.sent += n;
            half.backlog -= n;
            half.write_blocked = n == 0;
            progress = n > 0;
        }
        if half.backlog == 0 && half.want_fin && !half.fin_sent {
            let result = self.mux[s].finish(id);
            if let Some(err) = expected_err {
                prop_assert_eq!(result, Err(err), "finish on {} after reset or release", id);
                half.write_aborted = true;
                return Ok(true);
            }
            if let Err(e) = result {
                return fail(format!("finish on {id} from side {s}: {e}"));
            }
            half.fin_sent = true;
            progress = true;
        }
        Ok(progress)
    }

    /// Side `r` reads up to `max` bytes from stream `i` and checks what it gets. `chunked`
    /// reads with `read_chunk` and `is_eof` instead of `read`.
    pub fn read(
        &mut self,
        r: usize,
        i: usize,
        max: usize,
        chunked: bool,
    ) -> Result<bool, TestCaseError> {
        let st = &mut self.streams[i];
        if !st.known[r] {
            return Ok(false);
        }
        let expected_err = st.local_error(r);
        let id = st.id;
        let s = 1 - r;
        let half = &mut st.half[s];
        let (result, bytes) = if chunked {
            match self.mux[r].read_chunk(id, max) {
                Ok(Some(chunk)) => (Ok(Read::Data(chunk.len())), chunk.to_vec()),
                Ok(None) if self.mux[r].is_eof(id) => (Ok(Read::Eof), Vec::new()),
                Ok(None) => (Ok(Read::Blocked), Vec::new()),
                Err(e) => (Err(e), Vec::new()),
            }
        } else {
            let mut buf = vec![0u8; max];
            let result = self.mux[r].read(id, &mut buf);
            buf.truncate(match result {
                Ok(Read::Data(n)) => n,
                _ => 0,
            });
            (result, buf)
        };
        if let Some(err) = expected_err {
            prop_assert_eq!(result, Err(err), "read on {} after reset or release", id);
            let newly = !half.read_aborted;
            half.read_aborted = true;
            return Ok(newly);
        }
        let buffered = half.buffered();
        match result {
            Ok(Read::Data(n)) => {
                if chunked {
                    // A chunk ends where a received DATA frame ended.
                    prop_assert!(
                        n <= max.min(buffered),
                        "chunk of {} with {} buffered",
                        n,
                        buffered
                    );
                } else {
                    prop_assert_eq!(
                        n,
                        max.min(buffered),
                        "read on {} with {} buffered",
                        id,
                        buffered
                    );
                }
                prop_assert!(n > 0, "Data(0) on {}", id);
                let expected = pattern(id, s, half.read + half.discarded, n);
                prop_assert!(bytes == expected, "wrong bytes on {} at {}", id, half.read);
                half.read += n;
                half.read_blocked = false;
                Ok(true)
            }
            Ok(Read::Blocked) => {
                prop_assert!(
                    buffered == 0 && !half.fin_delivered,
                    "Blocked on {} with {} buffered",
                    id,
                    buffered
                );
                half.read_blocked = true;
                Ok(false)
            }
            Ok(Read::Eof) => {
                prop_assert!(buffered == 0 && half.fin_delivered, "early EOF on {}", id);
                prop_assert_eq!(
                    half.read + half.discarded,
                    half.sent,
                    "EOF before all data on {}",
                    id
                );
                let newly = !half.eof;
                half.eof = true;
                Ok(newly)
            }
            Err(e) => fail(format!("read on {id} from side {r}: {e}")),
        }
    }

    pub fn stall(&mut self, r: usize, i: usize, steps: usize) {
        self.streams[i].half[1 - r].stalled_until = self.step + steps;
    }

    /// Side `r` resets stream `i`: its application stops using it.
    pub fn reset(&mut self, r: usize, i: usize, code: ResetCode) {
        let st = &mut self.streams[i];
        if !st.known[r] {
            return;
        }
        self.mux[r].reset(st.id, code);
        if !st.released[r] && st.reset[r].is_none() {
            st.reset[r] = Some(code);
            st.half[1 - r].drop_buffer();
        }
        // The application knows: it will not wait for events on this stream.
        st.half[r].write_blocked = false;
        st.half[1 - r].read_blocked = false;
    }

    /// Side `r` drops its handle of stream `i`.
    pub fn release(&mut self, r: usize, i: usize) {
        let st = &mut self.streams[i];
        if !st.known[r] {
            return;
        }
        self.mux[r].release(st.id);
        if !st.released[r] {
            st.released[r] = true;
            st.half[1 - r].drop_buffer();
        }
        st.half[r].write_blocked = false;
        st.half[1 - r].read_blocked = false;
    }
}
