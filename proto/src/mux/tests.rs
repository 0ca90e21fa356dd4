//! Unit tests of the multiplexer's state machine. Property tests are in `tests/`.

use super::*;
use crate::ResetCode;

fn pair() -> (Mux, Mux, Instant) {
    let now = Instant::now();
    let s = Settings::default();
    let hb = Heartbeat::default();
    (
        Mux::new(Role::Edge, s, s, hb, now),
        Mux::new(Role::Agent, s, s, hb, now),
        now,
    )
}

fn pump(from: &mut Mux, to: &mut Mux, now: Instant) {
    while let Some(batch) = from.poll_transmit() {
        for frame in Frame::decode_message(batch).expect("valid batch") {
            to.handle_frame(frame, now).expect("valid frame");
        }
    }
}

#[test]
fn open_then_data_without_round_trip() {
    let (mut edge, mut agent, now) = pair();
    let id = edge.open(TunnelId(7)).expect("open");
    assert_eq!(edge.write(id, b"hello").expect("write"), 5);
    pump(&mut edge, &mut agent, now);
    assert_eq!(
        agent.poll_event(),
        Some(Event::Opened {
            stream: id,
            tunnel: TunnelId(7)
        })
    );
    let mut buf = [0u8; 16];
    assert_eq!(agent.read(id, &mut buf).expect("read"), Read::Data(5));
    assert_eq!(&buf[..5], b"hello");
}

/// Large batches are handed out with their own allocation, so the session writer may mask
/// them in place; the bytes are the frames that were queued.
#[test]
fn large_batches_are_owned_by_whoever_takes_them() {
    let (mut edge, mut agent, now) = pair();
    let ids: Vec<StreamId> = (0..3)
        .map(|_| edge.open(TunnelId(0)).expect("open"))
        .collect();
    let chunk = vec![7u8; 200 * 1024];
    // As much as the queue takes (it stops at the high-water mark).
    let mut written = vec![0usize; ids.len()];
    for (i, id) in ids.iter().enumerate() {
        loop {
            let n = edge.write(*id, &chunk[written[i]..]).expect("write");
            if n == 0 {
                break;
            }
            written[i] += n;
        }
    }
    assert!(written.iter().sum::<usize>() >= OWNED_BATCH, "{written:?}");
    let batch = edge.poll_transmit().expect("a batch");
    assert!(batch.len() >= OWNED_BATCH, "{} bytes", batch.len());
    let owned = batch.try_into_mut().expect("a large batch is not shared");
    let mut frames = Frame::decode_message(owned.freeze()).expect("valid batch");
    while let Some(batch) = edge.poll_transmit() {
        frames.extend(Frame::decode_message(batch).expect("valid batch"));
    }
    for frame in frames {
        agent.handle_frame(frame, now).expect("valid frame");
    }
    let mut buf = vec![0u8; 256 * 1024];
    for (id, expected) in ids.into_iter().zip(written) {
        let mut got = 0;
        while let Read::Data(n) = agent.read(id, &mut buf).expect("read") {
            assert!(n > 0 && buf[..n].iter().all(|&b| b == 7));
            got += n;
        }
        assert_eq!(got, expected);
    }
}

#[test]
fn writer_blocks_at_stream_window_and_resumes_after_reads() {
    let (mut edge, mut agent, now) = pair();
    let id = edge.open(TunnelId(0)).expect("open");
    let big = vec![1u8; 1024 * 1024];
    let window = Settings::default().stream_window as usize;
    let mut sent = 0;
    loop {
        let n = edge.write(id, &big[sent..]).expect("write");
        if n == 0 {
            pump(&mut edge, &mut agent, now);
            match edge.write(id, &big[sent..]).expect("write") {
                0 => break,
                n => sent += n,
            }
            continue;
        }
        sent += n;
    }
    assert_eq!(
        sent, window,
        "a stream may have exactly one window in flight"
    );
    let mut buf = vec![0u8; window];
    assert_eq!(agent.read(id, &mut buf).expect("read"), Read::Data(window));
    pump(&mut agent, &mut edge, now);
    assert!(edge.write(id, &big[sent..]).expect("write") > 0);
}

#[test]
fn data_beyond_window_is_a_flow_control_error() {
    let (_, mut agent, now) = pair();
    agent
        .handle_frame(
            Frame::Open {
                stream: StreamId(1),
                tunnel: TunnelId(0),
            },
            now,
        )
        .expect("open");
    let chunk = Bytes::from(vec![0u8; 64 * 1024]);
    let mut result = Ok(());
    for _ in 0..5 {
        result = agent.handle_frame(
            Frame::Data {
                stream: StreamId(1),
                payload: chunk.clone(),
            },
            now,
        );
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(
        result,
        Err(crate::ProtoError::StreamFlowControl { .. })
    ));
}

#[test]
fn open_with_wrong_parity_or_out_of_order_is_rejected() {
    let (mut edge, mut agent, now) = pair();
    let err = edge.handle_frame(
        Frame::Open {
            stream: StreamId(3),
            tunnel: TunnelId(0),
        },
        now,
    );
    assert_eq!(err, Err(crate::ProtoError::BadStreamId(StreamId(3))));
    agent
        .handle_frame(
            Frame::Open {
                stream: StreamId(5),
                tunnel: TunnelId(0),
            },
            now,
        )
        .expect("open");
    let err = agent.handle_frame(
        Frame::Open {
            stream: StreamId(3),
            tunnel: TunnelId(0),
        },
        now,
    );
    assert_eq!(err, Err(crate::ProtoError::BadStreamId(StreamId(3))));
}

#[test]
fn data_for_unopened_stream_is_an_error_but_for_released_stream_is_dropped() {
    let (mut edge, mut agent, now) = pair();
    let err = agent.handle_frame(
        Frame::Data {
            stream: StreamId(9),
            payload: Bytes::from_static(b"x"),
        },
        now,
    );
    assert!(matches!(err, Err(crate::ProtoError::UnopenedStream { .. })));

    let id = edge.open(TunnelId(0)).expect("open");
    pump(&mut edge, &mut agent, now);
    agent.release(id);
    agent
        .handle_frame(
            Frame::Data {
                stream: id,
                payload: Bytes::from_static(b"late"),
            },
            now,
        )
        .expect("late data for a released stream is dropped");
}

#[test]
fn refuses_streams_beyond_max_streams() {
    let now = Instant::now();
    let small = Settings {
        max_streams: 1,
        ..Settings::default()
    };
    let mut edge = Mux::new(
        Role::Edge,
        Settings::default(),
        Settings::default(),
        Heartbeat::default(),
        now,
    );
    let mut agent = Mux::new(
        Role::Agent,
        small,
        Settings::default(),
        Heartbeat::default(),
        now,
    );
    let a = edge.open(TunnelId(0)).expect("open");
    let b = edge.open(TunnelId(0)).expect("open");
    pump(&mut edge, &mut agent, now);
    pump(&mut agent, &mut edge, now);
    let mut buf = [0u8; 4];
    assert!(edge.read(a, &mut buf).is_ok());
    assert_eq!(
        edge.read(b, &mut buf),
        Err(StreamError::Reset(ResetCode::Refused))
    );
}

#[test]
fn heartbeat_pings_then_times_out() {
    let (mut edge, mut agent, now) = pair();
    let later = now + Heartbeat::default().interval;
    edge.handle_timeout(later).expect("alive");
    pump(&mut edge, &mut agent, later);
    pump(&mut agent, &mut edge, later + Duration::from_millis(3));
    assert_eq!(edge.rtt(), Some(Duration::from_millis(3)));
    let dead = later + Heartbeat::default().timeout + Duration::from_millis(3);
    assert!(matches!(
        edge.handle_timeout(dead),
        Err(crate::ProtoError::HeartbeatTimeout(_))
    ));
}

#[test]
fn goaway_stops_new_streams_but_not_existing_ones() {
    let (mut edge, mut agent, now) = pair();
    let id = edge.open(TunnelId(0)).expect("open");
    edge.go_away(GoAwayCode::Normal, "draining");
    assert_eq!(edge.open(TunnelId(0)), Err(OpenError::GoingAway));
    pump(&mut edge, &mut agent, now);
    assert!(agent.write(id, b"still fine").expect("write") > 0);
    let events: Vec<Event> = std::iter::from_fn(|| agent.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::GoAway {
            code: GoAwayCode::Normal,
            ..
        }
    )));
}

#[test]
fn release_after_both_fins_sends_nothing_more() {
    let (mut edge, mut agent, now) = pair();
    let id = edge.open(TunnelId(0)).expect("open");
    edge.finish(id).expect("fin");
    pump(&mut edge, &mut agent, now);
    agent.finish(id).expect("fin");
    pump(&mut agent, &mut edge, now);
    let mut buf = [0u8; 1];
    assert_eq!(edge.read(id, &mut buf), Ok(Read::Eof));
    edge.release(id);
    agent.release(id);
    assert!(edge.poll_transmit().is_none());
    assert_eq!(edge.stream_count(), 0);
    assert_eq!(agent.stream_count(), 0);
}

#[test]
fn queued_data_encodes_exactly_like_a_data_frame() {
    let (mut edge, _agent, _now) = pair();
    let id = edge.open(TunnelId(7)).expect("open");
    let open = edge.poll_transmit().expect("OPEN queued");
    assert_eq!(
        open,
        Frame::Open {
            stream: id,
            tunnel: TunnelId(7)
        }
        .to_bytes()
    );
    let data: Vec<u8> = (0..MAX_DATA_CHUNK + 10).map(|i| i as u8).collect();
    assert_eq!(edge.write(id, &data), Ok(data.len()));
    assert_eq!(
        edge.queued_bytes(),
        2 * crate::frame::HEADER_LEN + data.len()
    );
    let mut expected = Frame::Data {
        stream: id,
        payload: Bytes::copy_from_slice(&data[..MAX_DATA_CHUNK]),
    }
    .to_bytes()
    .to_vec();
    expected.extend_from_slice(
        &Frame::Data {
            stream: id,
            payload: Bytes::copy_from_slice(&data[MAX_DATA_CHUNK..]),
        }
        .to_bytes(),
    );
    assert_eq!(
        edge.poll_transmit().expect("DATA queued").to_vec(),
        expected
    );
    assert_eq!(edge.queued_bytes(), 0);
}

/// Sends on `id` until the stream's credit runs out (the receiver reads nothing meanwhile),
/// then lets the receiver read everything at `now` and returns the credit: the bytes sent.
fn one_window(edge: &mut Mux, agent: &mut Mux, id: StreamId, now: Instant) -> usize {
    let big = vec![1u8; 1024 * 1024];
    let mut sent = 0;
    loop {
        let n = edge.write(id, &big).expect("write");
        if n == 0 {
            pump(edge, agent, now);
            match edge.write(id, &big).expect("write") {
                0 => break,
                n => sent += n,
            }
            continue;
        }
        sent += n;
    }
    pump(edge, agent, now);
    let mut buf = vec![0u8; 1024 * 1024];
    while let Read::Data(_) = agent.read(id, &mut buf).expect("read") {}
    pump(agent, edge, now);
    sent
}

#[test]
fn a_window_that_limits_a_stream_grows_to_the_cap() {
    let (mut edge, mut agent, now) = pair();
    let id = edge.open(TunnelId(0)).expect("open");
    let base = Settings::default().stream_window as usize;
    let rounds: Vec<usize> = (0..8)
        .map(|_| one_window(&mut edge, &mut agent, id, now))
        .collect();
    assert_eq!(rounds[0], base, "{rounds:?}");
    assert!(rounds.windows(2).all(|w| w[1] >= w[0]), "{rounds:?}");
    assert_eq!(
        *rounds.last().expect("rounds"),
        GROWN_WINDOW as usize,
        "{rounds:?}"
    );
}

#[test]
fn a_stream_that_the_window_does_not_limit_keeps_its_window() {
    let (mut edge, mut agent, mut now) = pair();
    let id = edge.open(TunnelId(0)).expect("open");
    let base = Settings::default().stream_window as usize;
    for _ in 0..6 {
        now += GROW_INTERVAL * 3;
        assert_eq!(one_window(&mut edge, &mut agent, id, now), base);
    }
}

#[test]
fn growth_is_capped_per_session_and_given_back_on_release() {
    let (mut edge, mut agent, now) = pair();
    let settings = Settings::default();
    let budget = (settings.session_window / 4) as usize;
    let base = settings.stream_window as usize;
    let per_stream = GROWN_WINDOW as usize - base;
    let streams = budget / per_stream + 2;
    let ids: Vec<StreamId> = (0..streams)
        .map(|_| edge.open(TunnelId(0)).expect("open"))
        .collect();
    for id in &ids {
        for _ in 0..8 {
            one_window(&mut edge, &mut agent, *id, now);
        }
    }
    let windows: Vec<usize> = ids
        .iter()
        .map(|id| one_window(&mut edge, &mut agent, *id, now))
        .collect();
    let grown: usize = windows.iter().map(|w| w - base).sum();
    assert_eq!(grown, budget, "{windows:?}");
    assert_eq!(*windows.last().expect("streams"), base, "{windows:?}");
    // The first stream finishes both ways and is released: its growth goes to the next one.
    let first = ids[0];
    edge.finish(first).expect("fin");
    agent.finish(first).expect("fin");
    pump(&mut edge, &mut agent, now);
    pump(&mut agent, &mut edge, now);
    let mut buf = [0u8; 16];
    assert_eq!(agent.read(first, &mut buf).expect("read"), Read::Eof);
    agent.release(first);
    edge.release(first);
    let last = *ids.last().expect("streams");
    for _ in 0..8 {
        one_window(&mut edge, &mut agent, last, now);
    }
    assert_eq!(
        one_window(&mut edge, &mut agent, last, now),
        GROWN_WINDOW as usize
    );
}

/// Streams nobody reads, holding together far more than the session window, do not stall a
/// stream that is read: their bytes hold no session credit once they arrived, only their own
/// stream windows (docs/protocol.md, "Flow control").
#[test]
fn streams_nobody_reads_do_not_stall_the_session() {
    let now = Instant::now();
    let small = Settings {
        stream_window: 64 * 1024,
        session_window: 256 * 1024,
        max_streams: 1000,
    };
    let hb = Heartbeat::default();
    let mut edge = Mux::new(Role::Edge, small, small, hb, now);
    let mut agent = Mux::new(Role::Agent, small, small, hb, now);
    // The edge opens 20 streams (20 windows: five times the session window); the agent
    // answers each with a whole window that the edge never reads.
    let stalled: Vec<StreamId> = (0..20)
        .map(|_| edge.open(TunnelId(0)).expect("open"))
        .collect();
    pump(&mut edge, &mut agent, now);
    let block = vec![3u8; 64 * 1024];
    for id in &stalled {
        let mut sent = 0;
        while sent < block.len() {
            let n = agent.write(*id, &block[sent..]).expect("write");
            assert!(
                n > 0,
                "stream {id} blocked after {sent} bytes: session credit was held"
            );
            sent += n;
            pump(&mut agent, &mut edge, now);
            pump(&mut edge, &mut agent, now);
        }
    }
    // A fresh stream still moves many session windows of data, read as it arrives.
    let live = edge.open(TunnelId(0)).expect("open");
    pump(&mut edge, &mut agent, now);
    let mut buf = vec![0u8; 64 * 1024];
    let mut moved = 0;
    while moved < 4 * 256 * 1024 {
        let n = agent.write(live, &block).expect("write");
        assert!(n > 0, "the live stream stalled after {moved} bytes");
        pump(&mut agent, &mut edge, now);
        while let Read::Data(got) = edge.read(live, &mut buf).expect("read") {
            moved += got;
        }
        pump(&mut edge, &mut agent, now);
    }
    // What the stalled streams hold is bounded by their own windows.
    for id in &stalled {
        let held = edge.streams.get(id).map_or(0, StreamState::buffered);
        assert!(held <= 64 * 1024, "stream {id} holds {held} bytes");
    }
}

#[test]
fn bytes_left_unread_stop_keeping_the_shared_message_alive() {
    let (mut edge, mut agent, now) = pair();
    let (slow, fast) = (
        edge.open(TunnelId(0)).expect("open"),
        edge.open(TunnelId(0)).expect("open"),
    );
    pump(&mut edge, &mut agent, now);
    // One message carries DATA of both streams; the edge reads only `fast`.
    assert_eq!(agent.write(slow, &[1u8; 1000]).expect("write"), 1000);
    assert_eq!(agent.write(fast, &[2u8; 30_000]).expect("write"), 30_000);
    let message = agent.poll_transmit().expect("one batch");
    assert!(agent.poll_transmit().is_none());
    let range = message.as_ptr() as usize..message.as_ptr() as usize + message.len();
    for frame in Frame::decode_message(message).expect("valid batch") {
        edge.handle_frame(frame, now).expect("valid frame");
    }
    let mut buf = vec![0u8; 64 * 1024];
    assert_eq!(edge.read(fast, &mut buf).expect("read"), Read::Data(30_000));
    // Still a slice of the message: nothing is copied for a reader that is merely late.
    let at = edge.next_timeout();
    assert!(
        at <= now + COMPACT_AFTER,
        "a look at unread bytes is scheduled"
    );
    edge.handle_timeout(now + COMPACT_AFTER / 2).expect("alive");
    // Past COMPACT_AFTER the slow stream's bytes are its own: the message can go.
    edge.handle_timeout(now + COMPACT_AFTER).expect("alive");
    let chunk = edge
        .read_chunk(slow, usize::MAX)
        .expect("read")
        .expect("bytes");
    assert_eq!(chunk.len(), 1000);
    assert!(chunk.iter().all(|b| *b == 1));
    assert!(
        !range.contains(&(chunk.as_ptr() as usize)),
        "the unread bytes still point into the received message"
    );
    // Nothing is left to look at: no more wake-ups for it.
    assert!(edge.next_timeout() > now + COMPACT_AFTER);
}

#[test]
fn a_stream_read_at_once_is_never_copied() {
    let (mut edge, mut agent, now) = pair();
    let id = edge.open(TunnelId(0)).expect("open");
    pump(&mut edge, &mut agent, now);
    assert_eq!(agent.write(id, &[5u8; 4000]).expect("write"), 4000);
    let message = agent.poll_transmit().expect("one batch");
    let range = message.as_ptr() as usize..message.as_ptr() as usize + message.len();
    for frame in Frame::decode_message(message).expect("valid batch") {
        edge.handle_frame(frame, now).expect("valid frame");
    }
    edge.handle_timeout(now + COMPACT_AFTER / 2).expect("alive");
    let chunk = edge
        .read_chunk(id, usize::MAX)
        .expect("read")
        .expect("bytes");
    assert!(range.contains(&(chunk.as_ptr() as usize)), "zero-copy kept");
    edge.handle_timeout(now + COMPACT_AFTER).expect("alive");
    assert!(edge.next_timeout() > now + COMPACT_AFTER);
}

#[test]
fn a_stream_out_of_its_own_credit_is_not_woken_by_the_session() {
    let (mut edge, mut agent, now) = pair();
    let stalled = edge.open(TunnelId(0)).expect("open");
    pump(&mut edge, &mut agent, now);
    while agent.poll_event().is_some() {}
    // The agent fills the stream's window; the edge never reads it.
    let block = vec![9u8; 64 * 1024];
    while agent.write(stalled, &block).expect("write") > 0 {
        pump(&mut agent, &mut edge, now);
    }
    pump(&mut agent, &mut edge, now);
    // Another stream's traffic drains the outgoing queue again and again: the stalled
    // stream is not woken for it.
    let other = agent.open(TunnelId(0)).expect("open");
    for _ in 0..10 {
        assert!(agent.write(other, b"tick").expect("write") > 0);
        pump(&mut agent, &mut edge, now);
    }
    let mut events = Vec::new();
    while let Some(event) = agent.poll_event() {
        events.push(event);
    }
    assert!(
        !events.contains(&Event::Writable(stalled)),
        "woken without credit: {events:?}"
    );
    // Its own WINDOW wakes it.
    let mut buf = vec![0u8; 256 * 1024];
    while let Read::Data(_) = edge.read(stalled, &mut buf).expect("read") {}
    pump(&mut edge, &mut agent, now);
    let mut woken = false;
    while let Some(event) = agent.poll_event() {
        woken |= event == Event::Writable(stalled);
    }
    assert!(woken, "the stream's own credit did not wake it");
}
