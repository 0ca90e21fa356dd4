//! Property tests of the multiplexer: two `Mux`es (an edge and an agent) joined by a simulated
//! in-order transport run random operations on several streams, and a model checks every
//! result (see `support/pair.rs`).
//!
//! Properties:
//! - every byte `write` accepted is read exactly once, in order, by the peer, then `Read::Eof`;
//! - a correct peer never makes `handle_frame` fail;
//! - a receiver never buffers more than its stream window per stream or its session window in
//!   all, whatever the transport holds back and however slowly the application reads;
//! - no wake-up is lost: writers and readers that wait for `Writable`/`Readable` finish;
//! - a stream nobody reads stalls only itself;
//! - resets and releases never break the session nor leak session credit.
//!
//! A failing case is saved in `mux_props.proptest-regressions` beside this file and replayed
//! first on every run: check that file in with the fix. `PROPTEST_CASES=20000` runs a long hunt.
//!
//! # Layout
//! - `support/`: the two muxes, the transport, the stream model and the settling loop.
//! - this file: the operations, their strategies and the properties.

mod support;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use support::pair::{AGENT, Check, EDGE, Pair};
use warren_proto::{ResetCode, Settings};

const MIN: u32 = Settings::MIN_WINDOW;
/// Streams each side opens at most in one run.
const MAX_OPEN: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Open {
        side: usize,
    },
    Write {
        side: usize,
        stream: usize,
        len: usize,
    },
    Read {
        side: usize,
        stream: usize,
        len: usize,
        chunked: bool,
    },
    Finish {
        side: usize,
        stream: usize,
    },
    /// Moves batches from a mux onto the wire.
    Transmit {
        side: usize,
        batches: usize,
    },
    /// Hands batches on the wire to the peer.
    Deliver {
        side: usize,
        batches: usize,
    },
    /// The reader on `side` does not read `stream` for `steps` operations.
    Stall {
        side: usize,
        stream: usize,
        steps: usize,
    },
    Reset {
        side: usize,
        stream: usize,
        code: u16,
    },
    Release {
        side: usize,
        stream: usize,
    },
}

fn side() -> impl Strategy<Value = usize> {
    0usize..2
}

fn stream() -> impl Strategy<Value = usize> {
    0usize..64
}

fn data_op() -> impl Strategy<Value = Op> {
    let write_len = prop_oneof![4 => 1usize..200, 3 => 1usize..20_000, 1 => 20_000usize..300_000];
    let read_len = prop_oneof![1usize..100, 1usize..100_000];
    prop_oneof![
        1 => side().prop_map(|side| Op::Open { side }),
        6 => (side(), stream(), write_len).prop_map(|(side, stream, len)| Op::Write { side, stream, len }),
        6 => (side(), stream(), read_len, any::<bool>())
            .prop_map(|(side, stream, len, chunked)| Op::Read { side, stream, len, chunked }),
        1 => (side(), stream()).prop_map(|(side, stream)| Op::Finish { side, stream }),
        4 => (side(), 1usize..4).prop_map(|(side, batches)| Op::Transmit { side, batches }),
        4 => (side(), 1usize..4).prop_map(|(side, batches)| Op::Deliver { side, batches }),
        1 => (side(), stream(), 10usize..150)
            .prop_map(|(side, stream, steps)| Op::Stall { side, stream, steps }),
    ]
}

fn op_with_resets() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => data_op(),
        1 => (side(), stream(), 1u16..10).prop_map(|(side, stream, code)| Op::Reset { side, stream, code }),
        1 => (side(), stream()).prop_map(|(side, stream)| Op::Release { side, stream }),
    ]
}

/// Receive settings: the smallest windows allowed, or anything up to 4 x 256 KiB.
fn small_settings() -> impl Strategy<Value = Settings> {
    let smallest = Settings {
        stream_window: MIN,
        session_window: 2 * MIN,
        max_streams: 100,
    };
    prop_oneof![
        1 => Just(smallest),
        1 => (MIN..=4 * MIN, 1u32..=4).prop_map(|(stream_window, k)| Settings {
            stream_window,
            session_window: stream_window * k,
            max_streams: 100,
        }),
    ]
}

/// Small windows (where flow control is busiest) or the defaults.
fn settings() -> impl Strategy<Value = Settings> {
    prop_oneof![4 => small_settings(), 1 => Just(Settings::default())]
}

/// 192 cases by default (about 3 s in all); `PROPTEST_CASES=20000` for a long hunt.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(192);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

fn apply(pair: &mut Pair, op: &Op) -> Check {
    pair.step += 1;
    let count = pair.streams.len();
    let pick = |stream: usize| (count > 0).then(|| stream % count);
    match *op {
        Op::Open { side } => {
            if pair.opened_by(side) < MAX_OPEN {
                pair.open(side)?;
            }
        }
        Op::Write { side, stream, len } => {
            if let Some(i) = pick(stream) {
                pair.write(side, i, len)?;
            }
        }
        Op::Read {
            side,
            stream,
            len,
            chunked,
        } => {
            if let Some(i) = pick(stream)
                && pair.streams[i].half[1 - side].stalled_until <= pair.step
            {
                pair.read(side, i, len, chunked)?;
            }
        }
        Op::Finish { side, stream } => {
            if let Some(i) = pick(stream) {
                pair.finish(side, i)?;
            }
        }
        Op::Transmit { side, batches } => {
            pair.transmit(side, batches)?;
        }
        Op::Deliver { side, batches } => {
            pair.deliver(side, batches)?;
        }
        Op::Stall {
            side,
            stream,
            steps,
        } => {
            if let Some(i) = pick(stream) {
                pair.stall(side, i, steps);
            }
        }
        Op::Reset { side, stream, code } => {
            if let Some(i) = pick(stream) {
                pair.reset(side, i, ResetCode::from_u16(code));
            }
        }
        Op::Release { side, stream } => {
            if let Some(i) = pick(stream) {
                pair.release(side, i);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Random writes, reads, FINs, stalls and transport delays on several streams in both
    /// directions: every accepted byte arrives once and in order, then EOF; no frame is
    /// rejected; buffers stay within the windows; releasing after a clean close sends nothing.
    #[test]
    fn every_written_byte_is_read_once_in_order(
        edge in settings(),
        agent in settings(),
        ops in proptest::collection::vec(data_op(), 1..150),
    ) {
        let mut pair = Pair::new(edge, agent);
        pair.open(EDGE)?;
        for op in &ops {
            apply(&mut pair, op)?;
        }
        pair.settle(None)?;
        pair.check_complete(None)?;
        pair.release_all(true)?;
    }

    /// With a session window of several stream windows, a stream whose reader never reads
    /// holds exactly one stream window and every other stream still completes; once the
    /// reader wakes up, the stalled stream completes too.
    #[test]
    fn a_stream_nobody_reads_stalls_only_itself(
        k in 2u32..=6,
        stalled_side in side(),
        stalled_len in (MIN as usize + 1)..400_000,
        others in proptest::collection::vec((side(), 0usize..300_000, 0usize..300_000), 1..5),
    ) {
        let window = Settings { stream_window: MIN, session_window: k * MIN, max_streams: 100 };
        let mut pair = Pair::new(window, window);
        let stalled = pair.open(EDGE)?;
        pair.streams[stalled].half[1 - stalled_side].backlog = stalled_len;
        for (opener, to_agent, to_edge) in others {
            let i = pair.open(opener)?;
            pair.streams[i].half[EDGE].backlog = to_agent;
            pair.streams[i].half[AGENT].backlog = to_edge;
        }

        pair.settle(Some((stalled, stalled_side)))?;
        pair.check_complete(Some((stalled, stalled_side)))?;
        let half = &pair.streams[stalled].half[1 - stalled_side];
        prop_assert_eq!(half.read, 0);
        prop_assert_eq!(half.sent, MIN as usize, "the writer fills exactly one stream window");
        prop_assert_eq!(half.delivered, half.sent);
        prop_assert!(half.write_blocked && half.backlog == stalled_len - MIN as usize);

        pair.settle(None)?;
        pair.check_complete(None)?;
        pair.release_all(true)?;
    }

    /// Resets and releases at random moments, in any state: the session carries on, every
    /// application learns how its streams ended, and afterwards a fresh stream still moves
    /// several session windows both ways (no credit leaked).
    #[test]
    fn resets_and_releases_never_break_the_session(
        edge in small_settings(),
        agent in small_settings(),
        ops in proptest::collection::vec(op_with_resets(), 1..150),
    ) {
        let mut pair = Pair::new(edge, agent);
        pair.open(EDGE)?;
        for op in &ops {
            apply(&mut pair, op)?;
        }
        pair.settle(None)?;
        pair.check_ended()?;
        pair.release_all(false)?;

        let fresh = pair.open(EDGE)?;
        let bulk = 3 * edge.session_window.max(agent.session_window) as usize;
        pair.streams[fresh].half[EDGE].backlog = bulk;
        pair.streams[fresh].half[AGENT].backlog = bulk;
        pair.settle(None)?;
        pair.check_stream_complete(fresh, None)?;
        pair.release_all(true)?;
    }
}
