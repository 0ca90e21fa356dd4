//! A `Mux` driven by a hostile peer and a busy application at once: arbitrary (but decodable)
//! frames interleaved with opens, writes, reads, FINs, resets, releases, GOAWAYs, heartbeats
//! and transmits. Nothing may panic, and whatever the mux sends must be valid frames in
//! messages within the size limit, whatever it was fed.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};
use warren_proto::control::Event as ControlEvent;
use warren_proto::error::GoAwayCode;
use warren_proto::frame::MAX_MESSAGE;
use warren_proto::mux::Heartbeat;
use warren_proto::{Event, Frame, Mux, ResetCode, Role, Settings, StreamId, TunnelId};

#[derive(Arbitrary, Debug)]
struct Input {
    agent: bool,
    small_windows: bool,
    max_streams: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A frame from the peer.
    Peer(PeerFrame),
    /// Raw bytes from the peer, as one message.
    Raw(Vec<u8>),
    Open(u32),
    Write {
        stream: u8,
        len: u16,
    },
    Read {
        stream: u8,
        len: u16,
    },
    ReadChunk {
        stream: u8,
        len: u16,
    },
    Finish(u8),
    Reset(u8, u16),
    Release(u8),
    GoAway(u16, String),
    Notice(String),
    Transmit(u8),
    Tick(u16),
    Close,
}

#[derive(Arbitrary, Debug)]
enum PeerFrame {
    Data { stream: Id, len: u16 },
    Open { stream: Id, tunnel: u32 },
    Fin(Id),
    Rst(Id, u16),
    Window(Id, u32),
    Ping(u64),
    Pong(u64),
    GoAway(u16, String),
    Hello(u16, Vec<u8>),
    Welcome(Vec<u8>),
    Reject(Vec<u8>),
    Event(Vec<u8>),
    Notice(String),
}

/// Mostly the first few ids of either parity, sometimes any.
#[derive(Arbitrary, Debug)]
enum Id {
    Small(u8),
    Any(u32),
}

impl Id {
    fn get(&self) -> StreamId {
        match self {
            Id::Small(n) => StreamId(u32::from(*n % 16)),
            Id::Any(n) => StreamId(*n),
        }
    }
}

impl PeerFrame {
    fn into_frame(self) -> Frame {
        match self {
            PeerFrame::Data { stream, len } => Frame::Data {
                stream: stream.get(),
                payload: Bytes::from(vec![0x5a; usize::from(len)]),
            },
            PeerFrame::Open { stream, tunnel } => Frame::Open {
                stream: stream.get(),
                tunnel: TunnelId(tunnel),
            },
            PeerFrame::Fin(stream) => Frame::Fin {
                stream: stream.get(),
            },
            PeerFrame::Rst(stream, code) => Frame::Rst {
                stream: stream.get(),
                code: ResetCode::from_u16(code),
            },
            PeerFrame::Window(stream, increment) => Frame::Window {
                stream: stream.get(),
                increment,
            },
            PeerFrame::Ping(nonce) => Frame::Ping { nonce },
            PeerFrame::Pong(nonce) => Frame::Pong { nonce },
            PeerFrame::GoAway(code, message) => Frame::GoAway {
                code: GoAwayCode::from_u16(code),
                message,
            },
            PeerFrame::Hello(version, body) => Frame::Hello {
                version,
                body: Bytes::from(body),
            },
            PeerFrame::Welcome(body) => Frame::Welcome {
                body: Bytes::from(body),
            },
            PeerFrame::Reject(body) => Frame::Reject {
                body: Bytes::from(body),
            },
            PeerFrame::Event(body) => Frame::Event {
                body: Bytes::from(body),
            },
            PeerFrame::Notice(message) => ControlEvent::Notice { message }.into_frame(),
        }
    }
}

struct Harness {
    mux: Mux,
    now: Instant,
    /// Streams the application has: opened locally or announced by `Event::Opened`.
    streams: Vec<StreamId>,
}

impl Harness {
    fn stream(&self, n: u8) -> StreamId {
        match self.streams.len() {
            0 => StreamId(u32::from(n)),
            len => self.streams[usize::from(n) % len],
        }
    }

    /// Hands the peer's bytes to the mux as a real session would: decode the message (an
    /// undecodable one ends the session), apply each frame, close on the first error.
    fn receive(&mut self, message: Bytes) {
        let Ok(frames) = Frame::decode_message(message) else {
            self.mux.close();
            return;
        };
        for frame in frames {
            if self.mux.handle_frame(frame, self.now).is_err() {
                self.mux.close();
                return;
            }
        }
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.mux.poll_event() {
            if let Event::Opened { stream, .. } = event {
                self.streams.push(stream);
            }
        }
    }

    fn transmit(&mut self, batches: usize) {
        for _ in 0..batches {
            let Some(batch) = self.mux.poll_transmit() else {
                return;
            };
            assert!(batch.len() <= MAX_MESSAGE, "batch of {} bytes", batch.len());
            Frame::decode_message(batch).expect("the mux only sends valid frames");
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Peer(frame) => {
                let bytes = frame.into_frame().to_bytes();
                self.receive(bytes);
            }
            Op::Raw(bytes) => self.receive(Bytes::from(bytes)),
            Op::Open(tunnel) => {
                if let Ok(id) = self.mux.open(TunnelId(tunnel)) {
                    self.streams.push(id);
                }
            }
            Op::Write { stream, len } => {
                let data = vec![0xa5; usize::from(len) * 4];
                let _ = self.mux.write(self.stream(stream), &data);
            }
            Op::Read { stream, len } => {
                let mut buf = vec![0; usize::from(len)];
                let _ = self.mux.read(self.stream(stream), &mut buf);
            }
            Op::ReadChunk { stream, len } => {
                let id = self.stream(stream);
                let _ = self.mux.read_chunk(id, usize::from(len));
                let _ = self.mux.is_eof(id);
            }
            Op::Finish(stream) => {
                let _ = self.mux.finish(self.stream(stream));
            }
            Op::Reset(stream, code) => self
                .mux
                .reset(self.stream(stream), ResetCode::from_u16(code)),
            Op::Release(stream) => self.mux.release(self.stream(stream)),
            Op::GoAway(code, message) => self.mux.go_away(GoAwayCode::from_u16(code), &message),
            Op::Notice(message) => self.mux.send_message(&ControlEvent::Notice { message }),
            Op::Transmit(batches) => self.transmit(usize::from(batches)),
            Op::Tick(ms) => {
                self.now += Duration::from_millis(u64::from(ms) * 10);
                let _ = self.mux.next_timeout();
                if self.mux.handle_timeout(self.now).is_err() {
                    self.mux.close();
                }
            }
            Op::Close => self.mux.close(),
        }
        self.drain_events();
    }
}

fuzz_target!(|input: Input| {
    let now = Instant::now();
    let role = if input.agent { Role::Agent } else { Role::Edge };
    let max_streams = u32::from(input.max_streams.max(1));
    let local = if input.small_windows {
        Settings {
            stream_window: Settings::MIN_WINDOW,
            session_window: 2 * Settings::MIN_WINDOW,
            max_streams,
        }
    } else {
        Settings {
            max_streams,
            ..Settings::default()
        }
    };
    let mux = Mux::new(role, local, Settings::default(), Heartbeat::default(), now);
    let mut harness = Harness {
        mux,
        now,
        streams: Vec::new(),
    };
    for op in input.ops {
        harness.apply(op);
    }
    harness.transmit(usize::MAX);
});
