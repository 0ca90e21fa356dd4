//! Arbitrary bytes through every decoder an agent or an edge exposes to its peer: one
//! WebSocket message (`decode_message`), a byte stream (`decode_mut` in a loop), the JSON
//! control bodies, and finally a `Mux` of each role (`handle_frame`). Nothing may panic, and
//! the two framings must agree: what decodes as a message decodes the same as a stream and
//! re-encodes to exactly the input.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use std::time::Instant;
use warren_proto::control::{self, ControlMessage};
use warren_proto::mux::Heartbeat;
use warren_proto::{Frame, Mux, Role, Settings};

fuzz_target!(|data: &[u8]| {
    let message = Frame::decode_message(Bytes::copy_from_slice(data));

    let mut stream = BytesMut::from(data);
    let mut frames = Vec::new();
    let streamed = loop {
        match Frame::decode_mut(&mut stream) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };

    if let Ok(decoded) = &message {
        assert!(
            streamed.is_ok() && stream.is_empty(),
            "a valid message fails as a stream"
        );
        assert_eq!(decoded, &frames, "message and stream decoding disagree");
        let mut again = BytesMut::new();
        for frame in decoded {
            frame.encode(&mut again);
        }
        assert_eq!(&again[..], data, "decoding is not the inverse of encoding");
    }

    for frame in &frames {
        parse_body(frame);
    }

    // Every frame the decoder accepts, into a session of each role. A real session ends at
    // the first error, so does this one.
    let now = Instant::now();
    let small = Settings {
        stream_window: Settings::MIN_WINDOW,
        session_window: 2 * Settings::MIN_WINDOW,
        max_streams: 4,
    };
    for role in [Role::Edge, Role::Agent] {
        let mut mux = Mux::new(role, small, Settings::default(), Heartbeat::default(), now);
        for frame in frames.iter().cloned() {
            if mux.handle_frame(frame, now).is_err() {
                mux.close();
                break;
            }
        }
        while let Some(batch) = mux.poll_transmit() {
            Frame::decode_message(batch).expect("the mux only sends valid frames");
        }
        while mux.poll_event().is_some() {}
    }
});

/// The handshake and event bodies are parsed by the session code; they must not panic either.
fn parse_body(frame: &Frame) {
    match frame {
        Frame::Hello { body, .. } => {
            let _ = control::Hello::from_json(body);
        }
        Frame::Welcome { body } => {
            let _ = control::Welcome::from_json(body);
        }
        Frame::Reject { body } => {
            let _ = control::Reject::from_json(body);
        }
        Frame::Event { body } => {
            let _ = control::Event::from_body(body);
        }
        _ => {}
    }
}
