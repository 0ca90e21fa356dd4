//! The wire format: every frame round-trips, the handshake is pinned against known bytes, and
//! truncated, oversized and malformed input is rejected with the right error.
//!
//! # Layout
//! - round trips: every variant through `decode`, `decode_mut` and `decode_message` (batched).
//! - pinned bytes: HELLO, WELCOME, REJECT, EVENT and every binary frame, byte for byte.
//! - "need more bytes" versus "invalid": truncation, oversized lengths, bad kinds and lengths.
//! - codes and control messages: unknown codes, forward compatibility, secrets in `Debug`.
//! - properties: arbitrary frames round-trip; arbitrary bytes never panic the decoder.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use warren_proto::control::{
    ControlMessage, Credential, Event, GrantToken, Hello, Join, LaneKey,
    MAX_REQUEST_LOGS_PER_EVENT, PROTOCOL_VERSION, Reject, RejectCode, RequestLog, TunnelProtocol,
    TunnelReady, TunnelRequest, Welcome,
};
use warren_proto::error::GoAwayCode;
use warren_proto::frame::{HEADER_LEN, MAX_MESSAGE, MAX_PAYLOAD};
use warren_proto::{Frame, FrameError, ResetCode, Settings, StreamId, TunnelId};

/// One frame of every kind, with edge values (empty and largest payloads, largest ids).
fn sample_frames() -> Vec<Frame> {
    vec![
        Frame::Data {
            stream: StreamId(1),
            payload: Bytes::from_static(b"hello"),
        },
        Frame::Data {
            stream: StreamId(2),
            payload: Bytes::new(),
        },
        Frame::Data {
            stream: StreamId(u32::MAX),
            payload: Bytes::from(vec![0xa5; MAX_PAYLOAD]),
        },
        Frame::Open {
            stream: StreamId(3),
            tunnel: TunnelId(0),
        },
        Frame::Open {
            stream: StreamId(4),
            tunnel: TunnelId(u32::MAX),
        },
        Frame::Fin {
            stream: StreamId(5),
        },
        Frame::Rst {
            stream: StreamId(7),
            code: ResetCode::Cancel,
        },
        Frame::Rst {
            stream: StreamId(7),
            code: ResetCode::LocalRefused,
        },
        Frame::Rst {
            stream: StreamId(9),
            code: ResetCode::Other(0),
        },
        Frame::Rst {
            stream: StreamId(9),
            code: ResetCode::Other(u16::MAX),
        },
        Frame::Window {
            stream: StreamId::SESSION,
            increment: 1,
        },
        Frame::Window {
            stream: StreamId(11),
            increment: u32::MAX,
        },
        Frame::Ping { nonce: 0 },
        Frame::Pong { nonce: u64::MAX },
        Frame::GoAway {
            code: GoAwayCode::Normal,
            message: String::new(),
        },
        Frame::GoAway {
            code: GoAwayCode::Replaced,
            message: "tunnel täken över ✓".into(),
        },
        Frame::GoAway {
            code: GoAwayCode::Other(4242),
            message: "future".into(),
        },
        Frame::Hello {
            version: PROTOCOL_VERSION,
            body: Bytes::from_static(b"{}"),
        },
        Frame::Hello {
            version: u16::MAX,
            body: Bytes::new(),
        },
        Frame::Welcome {
            body: Bytes::from_static(b"{\"session_id\":\"x\"}"),
        },
        Frame::Welcome { body: Bytes::new() },
        Frame::Reject {
            body: Bytes::from_static(b"not even json"),
        },
        Frame::Event {
            body: Bytes::from_static(b"{\"type\":\"notice\",\"message\":\"hi\"}"),
        },
    ]
}

/// A raw frame with an arbitrary header, for input no encoder would produce.
fn raw(len: u32, kind: u8, stream: u32, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u32(len);
    buf.put_u8(kind);
    buf.put_u32(stream);
    buf.put_slice(payload);
    buf.freeze()
}

/// A well-formed header (length = payload length) around `payload`.
fn framed(kind: u8, stream: u32, payload: &[u8]) -> Bytes {
    raw(
        u32::try_from(payload.len()).expect("small payload"),
        kind,
        stream,
        payload,
    )
}

fn decode_one(bytes: Bytes) -> Result<Frame, FrameError> {
    let mut src = bytes;
    let frame = Frame::decode(&mut src)?.expect("a whole frame");
    assert!(src.is_empty(), "decode consumed exactly one frame");
    Ok(frame)
}

// ---------------------------------------------------------------- round trips

#[test]
fn every_variant_round_trips_through_decode_and_decode_mut() {
    let frames = sample_frames();
    let kinds: std::collections::HashSet<&str> = frames.iter().map(Frame::kind_name).collect();
    assert_eq!(kinds.len(), 12, "the samples cover every frame kind");

    for frame in frames {
        let bytes = frame.to_bytes();
        let len = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        assert_eq!(
            len + HEADER_LEN,
            bytes.len(),
            "length field of {}",
            frame.kind_name()
        );

        let mut src = bytes.clone();
        assert_eq!(Frame::decode(&mut src), Ok(Some(frame.clone())));
        assert!(src.is_empty());

        let mut src = BytesMut::from(&bytes[..]);
        assert_eq!(Frame::decode_mut(&mut src), Ok(Some(frame.clone())));
        assert!(src.is_empty());

        assert_eq!(Frame::decode_message(bytes), Ok(vec![frame]));
    }
}

#[test]
fn batched_frames_decode_in_order_from_one_message() {
    let frames = sample_frames();
    let mut message = BytesMut::new();
    for frame in &frames {
        frame.encode(&mut message);
    }
    assert!(message.len() <= MAX_MESSAGE);
    assert_eq!(
        Frame::decode_message(message.clone().freeze()),
        Ok(frames.clone())
    );

    // The same bytes as a stream: `decode_mut` takes one frame at a time and leaves the rest.
    let mut decoded = Vec::new();
    while let Some(frame) = Frame::decode_mut(&mut message).expect("valid stream") {
        decoded.push(frame);
    }
    assert!(message.is_empty());
    assert_eq!(decoded, frames);
}

#[test]
fn decode_mut_yields_each_frame_exactly_when_its_last_byte_arrives() {
    let frames: Vec<Frame> = sample_frames()
        .into_iter()
        .filter(|f| f.to_bytes().len() < 1024)
        .collect();
    let mut wire = BytesMut::new();
    let mut ends = Vec::new();
    for frame in &frames {
        frame.encode(&mut wire);
        ends.push(wire.len());
    }

    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for (i, byte) in wire.iter().enumerate() {
        buf.put_u8(*byte);
        while let Some(frame) = Frame::decode_mut(&mut buf).expect("valid stream") {
            assert_eq!(ends[decoded.len()], i + 1, "frame decoded early or late");
            decoded.push(frame);
        }
    }
    assert_eq!(decoded, frames);
}

// ------------------------------------------------------------------ pinned bytes

fn pinned_hello() -> Hello {
    Hello {
        agent_version: "warren 0.1.0".into(),
        credential: Credential::Token("wrn_test".into()),
        tunnels: vec![TunnelRequest {
            id: TunnelId(1),
            protocol: TunnelProtocol::Http,
            subdomain: Some("demo".into()),
            local_addr: "localhost:3000".into(),
            host_header: None,
        }],
        settings: Settings::default(),
        request_log: true,
        request_log_batches: true,
        request_log_compact: false,
        join: None,
        dynamic_tunnels: false,
    }
}

fn pinned_welcome() -> Welcome {
    Welcome {
        session_id: "ses_0123".into(),
        tunnels: vec![TunnelReady {
            id: TunnelId(1),
            hostname: "demo.warren.test".into(),
            public_url: "https://demo.warren.test".into(),
        }],
        settings: Settings {
            stream_window: 64 * 1024,
            session_window: 128 * 1024,
            max_streams: 100,
        },
        heartbeat_interval_ms: 5000,
        heartbeat_timeout_ms: 15000,
        lane_key: None,
        dynamic_tunnels: false,
    }
}

#[test]
fn hello_is_pinned_to_known_bytes() {
    let mut expected: Vec<u8> = vec![
        0x00, 0x00, 0x01, 0x1c, // length: 2 (version) + 282 (JSON) = 284
        0x08, // kind: HELLO
        0x00, 0x00, 0x00, 0x00, // stream 0: the session
        0x00, 0x01, // protocol version 1, outside the JSON
    ];
    expected.extend_from_slice(
        br#"{"agent_version":"warren 0.1.0","credential":{"token":"wrn_test"},"tunnels":[{"id":1,"protocol":"http","subdomain":"demo","local_addr":"localhost:3000"}],"settings":{"stream_window":262144,"session_window":67108864,"max_streams":10000},"request_log":true,"request_log_batches":true}"#,
    );
    let hello = pinned_hello();
    let bytes = hello.into_frame().to_bytes();
    assert_eq!(
        bytes,
        expected,
        "HELLO wire format changed:\n{}",
        String::from_utf8_lossy(&bytes)
    );

    let Ok(Frame::Hello { version, body }) = decode_one(bytes) else {
        panic!("pinned HELLO does not decode as HELLO");
    };
    assert_eq!(version, 1);
    assert_eq!(Hello::from_json(&body), Ok(hello));
}

#[test]
fn welcome_is_pinned_to_known_bytes() {
    let mut expected: Vec<u8> = vec![
        0x00, 0x00, 0x00, 0xfb, // length: 251 (JSON)
        0x09, // kind: WELCOME
        0x00, 0x00, 0x00, 0x00, // stream 0
    ];
    expected.extend_from_slice(
        br#"{"session_id":"ses_0123","tunnels":[{"id":1,"hostname":"demo.warren.test","public_url":"https://demo.warren.test"}],"settings":{"stream_window":65536,"session_window":131072,"max_streams":100},"heartbeat_interval_ms":5000,"heartbeat_timeout_ms":15000}"#,
    );
    let welcome = pinned_welcome();
    let bytes = welcome.into_frame().to_bytes();
    assert_eq!(
        bytes,
        expected,
        "WELCOME wire format changed:\n{}",
        String::from_utf8_lossy(&bytes)
    );

    let Ok(Frame::Welcome { body }) = decode_one(bytes) else {
        panic!("pinned WELCOME does not decode as WELCOME");
    };
    assert_eq!(Welcome::from_json(&body), Ok(welcome));
}

#[test]
fn reject_is_pinned_to_known_bytes() {
    let mut expected: Vec<u8> = vec![
        0x00, 0x00, 0x00, 0x3e, // length: 62 (JSON)
        0x0a, // kind: REJECT
        0x00, 0x00, 0x00, 0x00, // stream 0
    ];
    expected
        .extend_from_slice(br#"{"code":"subdomain_taken","message":"subdomain demo is taken"}"#);
    let reject = Reject::new(RejectCode::SubdomainTaken, "subdomain demo is taken");
    let bytes = reject.into_frame().to_bytes();
    assert_eq!(
        bytes,
        expected,
        "REJECT wire format changed:\n{}",
        String::from_utf8_lossy(&bytes)
    );

    let Ok(Frame::Reject { body }) = decode_one(bytes) else {
        panic!("pinned REJECT does not decode as REJECT");
    };
    assert_eq!(Reject::from_json(&body), Ok(reject));
}

#[test]
fn event_is_pinned_to_known_bytes() {
    let mut expected: Vec<u8> = vec![
        0x00, 0x00, 0x00, 0x30, // length: 48 (JSON)
        0x0b, // kind: EVENT
        0x00, 0x00, 0x00, 0x00, // stream 0
    ];
    expected.extend_from_slice(br#"{"type":"notice","message":"tunnel demo closed"}"#);
    let event = Event::Notice {
        message: "tunnel demo closed".into(),
    };
    assert_eq!(event.into_frame().to_bytes(), expected);
}

#[test]
fn binary_frames_are_pinned_to_known_bytes() {
    #[rustfmt::skip]
    let cases: Vec<(Frame, &[u8])> = vec![
        (
            Frame::Data { stream: StreamId(1), payload: Bytes::from_static(b"hi") },
            &[0, 0, 0, 2, 0x00, 0, 0, 0, 1, b'h', b'i'],
        ),
        (
            Frame::Open { stream: StreamId(3), tunnel: TunnelId(0x0102_0304) },
            &[0, 0, 0, 4, 0x01, 0, 0, 0, 3, 1, 2, 3, 4],
        ),
        (Frame::Fin { stream: StreamId(0x0a0b_0c0d) }, &[0, 0, 0, 0, 0x02, 0x0a, 0x0b, 0x0c, 0x0d]),
        (
            Frame::Rst { stream: StreamId(2), code: ResetCode::LocalTimeout },
            &[0, 0, 0, 2, 0x03, 0, 0, 0, 2, 0, 4],
        ),
        (
            Frame::Window { stream: StreamId::SESSION, increment: 65536 },
            &[0, 0, 0, 4, 0x04, 0, 0, 0, 0, 0, 1, 0, 0],
        ),
        (
            Frame::Ping { nonce: 0x0102_0304_0506_0708 },
            &[0, 0, 0, 8, 0x05, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
        ),
        (Frame::Pong { nonce: 9 }, &[0, 0, 0, 8, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
        (
            Frame::GoAway { code: GoAwayCode::Timeout, message: "draining".into() },
            &[0, 0, 0, 10, 0x07, 0, 0, 0, 0, 0, 3, b'd', b'r', b'a', b'i', b'n', b'i', b'n', b'g'],
        ),
    ];
    for (frame, expected) in cases {
        assert_eq!(
            frame.to_bytes(),
            expected,
            "{} wire format changed",
            frame.kind_name()
        );
    }
}

#[test]
fn reset_and_goaway_codes_are_pinned() {
    let resets = [
        (ResetCode::Cancel, 1),
        (ResetCode::Refused, 2),
        (ResetCode::LocalRefused, 3),
        (ResetCode::LocalTimeout, 4),
        (ResetCode::LocalError, 5),
        (ResetCode::Idle, 6),
        (ResetCode::Shutdown, 7),
        (ResetCode::Protocol, 8),
    ];
    for (code, n) in resets {
        assert_eq!(code.to_u16(), n, "{code}");
        assert_eq!(ResetCode::from_u16(n), code);
    }
    let goaways = [
        (GoAwayCode::Normal, 0),
        (GoAwayCode::Protocol, 1),
        (GoAwayCode::FlowControl, 2),
        (GoAwayCode::Timeout, 3),
        (GoAwayCode::Closed, 4),
        (GoAwayCode::Replaced, 5),
    ];
    for (code, n) in goaways {
        assert_eq!(code.to_u16(), n, "{code:?}");
        assert_eq!(GoAwayCode::from_u16(n), code);
    }
}

// ------------------------------------------- "need more bytes" versus "invalid"

#[test]
fn truncated_input_is_incomplete_for_decode_but_invalid_for_decode_message() {
    for frame in sample_frames() {
        let bytes = frame.to_bytes();
        let prefixes: Vec<usize> = if bytes.len() <= 512 {
            (0..bytes.len()).collect()
        } else {
            vec![
                0,
                1,
                4,
                HEADER_LEN - 1,
                HEADER_LEN,
                HEADER_LEN + 1,
                bytes.len() / 2,
                bytes.len() - 1,
            ]
        };
        for cut in prefixes {
            let prefix = bytes.slice(..cut);

            let mut src = prefix.clone();
            assert_eq!(
                Frame::decode(&mut src),
                Ok(None),
                "{} cut at {cut}",
                frame.kind_name()
            );
            assert_eq!(src, prefix, "decode consumed part of an incomplete frame");

            let mut src = BytesMut::from(&prefix[..]);
            assert_eq!(Frame::decode_mut(&mut src), Ok(None));
            assert_eq!(
                src, prefix,
                "decode_mut consumed part of an incomplete frame"
            );

            let expected = if cut == 0 {
                Ok(vec![])
            } else {
                Err(FrameError::Truncated(cut))
            };
            assert_eq!(
                Frame::decode_message(prefix),
                expected,
                "{} cut at {cut}",
                frame.kind_name()
            );
        }
    }
}

#[test]
fn message_ending_inside_a_later_frame_is_truncated() {
    let mut message = BytesMut::new();
    Frame::Ping { nonce: 1 }.encode(&mut message);
    Frame::Fin {
        stream: StreamId(1),
    }
    .encode(&mut message);
    let data = Frame::Data {
        stream: StreamId(1),
        payload: Bytes::from_static(b"abcdef"),
    }
    .to_bytes();
    message.put_slice(&data[..data.len() - 1]);
    assert_eq!(
        Frame::decode_message(message.freeze()),
        Err(FrameError::Truncated(data.len() - 1))
    );
}

#[test]
fn oversized_length_is_rejected_from_the_header_alone() {
    let too_long = u32::try_from(MAX_PAYLOAD + 1).expect("fits");
    for len in [too_long, u32::MAX] {
        let header = raw(len, 0x00, 1, &[]);
        let expected = FrameError::Oversized {
            len: len as usize,
            max: MAX_PAYLOAD,
        };
        assert_eq!(Frame::decode(&mut header.clone()), Err(expected.clone()));
        assert_eq!(
            Frame::decode_mut(&mut BytesMut::from(&header[..])),
            Err(expected.clone())
        );
        assert_eq!(Frame::decode_message(header), Err(expected));
    }
    // Exactly the limit is fine: the decoder waits for the payload.
    let at_limit = raw(u32::try_from(MAX_PAYLOAD).expect("fits"), 0x00, 1, &[]);
    assert_eq!(Frame::decode(&mut at_limit.clone()), Ok(None));
}

#[test]
fn message_size_is_capped_at_max_message() {
    // Four DATA frames that add up to exactly MAX_MESSAGE bytes are accepted...
    let payload = Bytes::from(vec![7u8; MAX_MESSAGE / 4 - HEADER_LEN]);
    let mut message = BytesMut::new();
    for stream in 1..=4 {
        Frame::Data {
            stream: StreamId(stream),
            payload: payload.clone(),
        }
        .encode(&mut message);
    }
    assert_eq!(message.len(), MAX_MESSAGE);
    assert_eq!(
        Frame::decode_message(message.clone().freeze()).map(|f| f.len()),
        Ok(4)
    );
    // ...one byte more is not, whatever it holds.
    message.put_u8(0);
    assert_eq!(
        Frame::decode_message(message.freeze()),
        Err(FrameError::Oversized {
            len: MAX_MESSAGE + 1,
            max: MAX_MESSAGE
        })
    );
}

#[test]
fn unknown_kind_is_rejected() {
    for kind in [0x0c, 0x42, 0x7f, 0x80, 0xff] {
        assert_eq!(
            decode_one(framed(kind, 0, b"")),
            Err(FrameError::UnknownKind(kind))
        );
        assert_eq!(
            decode_one(framed(kind, 5, b"xyz")),
            Err(FrameError::UnknownKind(kind))
        );
        assert_eq!(
            Frame::decode_message(framed(kind, 0, b"")),
            Err(FrameError::UnknownKind(kind))
        );
    }
}

#[test]
fn wrong_fixed_lengths_are_rejected() {
    let cases: &[(u8, u32, usize, &str, &str)] = &[
        (0x01, 1, 3, "OPEN", "4"),
        (0x01, 1, 5, "OPEN", "4"),
        (0x02, 1, 1, "FIN", "0"),
        (0x03, 1, 0, "RST", "2"),
        (0x03, 1, 3, "RST", "2"),
        (0x04, 1, 0, "WINDOW", "4"),
        (0x04, 0, 8, "WINDOW", "4"),
        (0x05, 0, 7, "PING", "8"),
        (0x05, 0, 9, "PING", "8"),
        (0x06, 0, 0, "PONG", "8"),
        (0x07, 0, 1, "GOAWAY", "at least 2"),
        (0x08, 0, 0, "HELLO", "at least 2"),
        (0x08, 0, 1, "HELLO", "at least 2"),
    ];
    for &(kind, stream, len, name, expected) in cases {
        let payload = vec![1u8; len];
        assert_eq!(
            decode_one(framed(kind, stream, &payload)),
            Err(FrameError::BadLength {
                kind: name,
                len,
                expected
            }),
            "{name} with {len} bytes"
        );
    }
}

#[test]
fn stream_frames_on_stream_zero_are_rejected() {
    let cases: &[(u8, &[u8], &str)] = &[
        (0x00, b"data", "DATA"),
        (0x00, b"", "DATA"),
        (0x01, &[0, 0, 0, 1], "OPEN"),
        (0x02, b"", "FIN"),
        (0x03, &[0, 1], "RST"),
    ];
    for &(kind, payload, name) in cases {
        assert_eq!(
            decode_one(framed(kind, 0, payload)),
            Err(FrameError::MissingStream { kind: name })
        );
    }
}

#[test]
fn session_frames_on_a_stream_are_rejected() {
    let cases: &[(u8, &[u8], &str)] = &[
        (0x05, &[0; 8], "PING"),
        (0x06, &[0; 8], "PONG"),
        (0x07, &[0, 0], "GOAWAY"),
        (0x08, &[0, 1, b'{', b'}'], "HELLO"),
        (0x09, b"{}", "WELCOME"),
        (0x0a, b"{}", "REJECT"),
        (0x0b, b"{}", "EVENT"),
    ];
    for &(kind, payload, name) in cases {
        for stream in [1, 2, u32::MAX] {
            assert_eq!(
                decode_one(framed(kind, stream, payload)),
                Err(FrameError::NotSessionFrame { kind: name, stream })
            );
        }
    }
}

#[test]
fn window_with_zero_increment_is_rejected() {
    for stream in [0, 1] {
        assert!(matches!(
            decode_one(framed(0x04, stream, &[0, 0, 0, 0])),
            Err(FrameError::BadPayload { kind: "WINDOW", .. })
        ));
    }
    // WINDOW is valid both for the session (stream 0) and for a stream.
    assert_eq!(
        decode_one(framed(0x04, 0, &[0, 0, 0, 1])),
        Ok(Frame::Window {
            stream: StreamId::SESSION,
            increment: 1
        })
    );
}

#[test]
fn goaway_message_must_be_utf8() {
    for message in [&[0xff][..], &[b'o', b'k', 0xc3], &[0xed, 0xa0, 0x80]] {
        let mut payload = vec![0, 1];
        payload.extend_from_slice(message);
        assert!(matches!(
            decode_one(framed(0x07, 0, &payload)),
            Err(FrameError::BadPayload { kind: "GOAWAY", .. })
        ));
    }
}

#[test]
fn overlong_goaway_message_is_cut_at_a_char_boundary() {
    // 'é' is two bytes; MAX_PAYLOAD - 2 is even, so an odd prefix forces a cut mid-char.
    let message = format!("x{}", "é".repeat(MAX_PAYLOAD / 2));
    let frame = Frame::GoAway {
        code: GoAwayCode::Normal,
        message: message.clone(),
    };
    let bytes = frame.to_bytes();
    assert!(bytes.len() <= HEADER_LEN + MAX_PAYLOAD);
    let Ok(Frame::GoAway { message: sent, .. }) = decode_one(bytes) else {
        panic!("truncated GOAWAY does not decode");
    };
    assert!(message.starts_with(&sent));
    assert_eq!(
        sent.len(),
        MAX_PAYLOAD - 3,
        "cut at the last whole char below the limit"
    );
}

// ------------------------------------------------- codes and control messages

#[test]
fn unknown_codes_round_trip_as_other() {
    for n in [0, 9, 100, 4242, u16::MAX] {
        let code = ResetCode::from_u16(n);
        assert_eq!(code, ResetCode::Other(n));
        assert_eq!(code.to_u16(), n);
        let frame = Frame::Rst {
            stream: StreamId(1),
            code,
        };
        assert_eq!(decode_one(frame.to_bytes()), Ok(frame));
    }
    for n in [6, 100, 4242, u16::MAX] {
        let code = GoAwayCode::from_u16(n);
        assert_eq!(code, GoAwayCode::Other(n));
        assert_eq!(code.to_u16(), n);
        assert!(
            code.should_reconnect(),
            "an unknown GOAWAY reason is not a permanent close"
        );
        let frame = Frame::GoAway {
            code,
            message: "?".into(),
        };
        assert_eq!(decode_one(frame.to_bytes()), Ok(frame));
    }
    // Decoding is the inverse of encoding over the whole code space.
    for n in 0..=u16::MAX {
        assert_eq!(ResetCode::from_u16(n).to_u16(), n);
        assert_eq!(GoAwayCode::from_u16(n).to_u16(), n);
    }
}

#[test]
fn credential_debug_never_shows_the_secret() {
    for credential in [
        Credential::Token("wrn_test".into()),
        Credential::Grant("wrn_test".into()),
    ] {
        let debug = format!("{credential:?}");
        assert!(!debug.contains("wrn_test"), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");
        let hello = Hello {
            credential,
            ..pinned_hello()
        };
        let debug = format!("{hello:?} {hello:#?}");
        assert!(!debug.contains("wrn_test"), "{debug}");
    }
}

#[test]
fn a_lane_join_round_trips_and_never_shows_its_key() {
    let join = Join {
        session_id: "s_0123".into(),
        key: LaneKey("lane-secret-0123".into()),
    };
    let hello = Hello {
        join: Some(join.clone()),
        dynamic_tunnels: false,
        ..pinned_hello()
    };
    let debug = format!("{hello:?} {hello:#?} {join:?}");
    assert!(!debug.contains("lane-secret"), "{debug}");
    let Frame::Hello { body, .. } = hello.into_frame() else {
        panic!("a HELLO frame");
    };
    let json = String::from_utf8_lossy(&body);
    assert!(
        json.contains(r#""join":{"session_id":"s_0123","key":"lane-secret-0123"}"#),
        "{json}"
    );
    assert_eq!(Hello::from_json(&body), Ok(hello));

    let welcome = Welcome {
        lane_key: Some(LaneKey("lane-secret-0123".into())),
        dynamic_tunnels: false,
        ..pinned_welcome()
    };
    assert!(!format!("{welcome:?}").contains("lane-secret"));
    let Frame::Welcome { body } = welcome.into_frame() else {
        panic!("a WELCOME frame");
    };
    assert_eq!(Welcome::from_json(&body), Ok(welcome));
}

#[test]
fn control_messages_ignore_unknown_fields() {
    let hello = br#"{"agent_version":"warren 0.1.0","credential":{"token":"wrn_test"},
        "tunnels":[{"id":1,"protocol":"http","subdomain":"demo","local_addr":"localhost:3000","tls":true}],
        "settings":{"stream_window":262144,"session_window":67108864,"max_streams":10000,"priority":3},
        "request_log":true,"request_log_batches":true,"os":"linux","features":["zstd"]}"#;
    assert_eq!(Hello::from_json(hello), Ok(pinned_hello()));

    let welcome = br#"{"session_id":"ses_0123","region":"eu","tunnels":[{"id":1,"hostname":"demo.warren.test",
        "public_url":"https://demo.warren.test","tls":"auto"}],
        "settings":{"stream_window":65536,"session_window":131072,"max_streams":100,"new":{}},
        "heartbeat_interval_ms":5000,"heartbeat_timeout_ms":15000,"motd":"hi"}"#;
    assert_eq!(Welcome::from_json(welcome), Ok(pinned_welcome()));

    let reject = br#"{"code":"unauthorized","message":"bad token","retry_after_ms":100}"#;
    assert_eq!(
        Reject::from_json(reject),
        Ok(Reject::new(RejectCode::Unauthorized, "bad token"))
    );

    let log = br#"{"type":"request_log","tunnel":1,"request_id":"r1","method":"GET","path":"/",
        "status":200,"duration_us":5,"bytes_in":1,"bytes_out":2,"protocol":"h2"}"#;
    assert_eq!(
        Event::from_json(log),
        Ok(Event::RequestLog(RequestLog {
            tunnel: TunnelId(1),
            request_id: "r1".into(),
            method: "GET".into(),
            path: "/".into(),
            status: 200,
            duration_us: 5,
            bytes_in: 1,
            bytes_out: 2,
            error: None,
        }))
    );

    let batch = br#"{"type":"request_logs","entries":[
        {"tunnel":1,"request_id":"r1","method":"GET","path":"/a","status":200,"duration_us":5,"bytes_in":0,"bytes_out":2},
        {"tunnel":2,"request_id":"r2","method":"POST","path":"/b","status":0,"duration_us":7,"bytes_in":9,"bytes_out":0,"error":"local-refused","new":1}]}"#;
    let Ok(Event::RequestLogs { entries }) = Event::from_json(batch) else {
        panic!("a batch of request logs decodes");
    };
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (
            entries[1].tunnel,
            entries[1].path.as_str(),
            entries[1].error.as_deref()
        ),
        (TunnelId(2), "/b", Some("local-refused"))
    );
}

#[test]
fn a_full_batch_of_the_longest_request_logs_fits_one_frame() {
    let long = RequestLog {
        tunnel: TunnelId(u32::MAX),
        request_id: "r".repeat(128),
        method: "M".repeat(32),
        // The worst a path can grow in JSON: every byte escaped.
        path: "\\".repeat(256),
        status: 599,
        duration_us: u64::MAX,
        bytes_in: u64::MAX,
        bytes_out: u64::MAX,
        error: Some("response-interrupted".into()),
    };
    let event = Event::RequestLogs {
        entries: vec![long; MAX_REQUEST_LOGS_PER_EVENT],
    };
    let mut bytes = event.into_frame().to_bytes();
    assert!(bytes.len() - HEADER_LEN <= MAX_PAYLOAD, "{}", bytes.len());
    let Ok(Some(Frame::Event { body })) = Frame::decode(&mut bytes) else {
        panic!("a full batch decodes as one EVENT frame");
    };
    assert_eq!(Event::from_json(&body), Ok(event));
}

#[test]
fn control_messages_accept_unknown_enum_values_and_missing_optional_fields() {
    let reject = br#"{"code":"rate_limited","message":"slow down"}"#;
    assert_eq!(
        Reject::from_json(reject).map(|r| r.code),
        Ok(RejectCode::Unknown)
    );

    for event in [
        &br#"{"type":"new_thing"}"#[..],
        br#"{"type":"new_thing","payload":{"a":[1,2]}}"#,
    ] {
        assert_eq!(Event::from_json(event), Ok(Event::Unknown));
    }

    let hello = br#"{"agent_version":"old","credential":{"grant":"g"},"tunnels":[{"id":2,"protocol":"http"}],
        "settings":{"stream_window":65536,"session_window":65536,"max_streams":1}}"#;
    let hello = Hello::from_json(hello).expect("optional fields may be missing");
    assert!(!hello.request_log);
    assert!(
        !hello.request_log_batches,
        "an older agent reads no batches"
    );
    assert_eq!(hello.tunnels[0].subdomain, None);
    assert_eq!(hello.tunnels[0].local_addr, "");
}

#[test]
fn malformed_or_oversized_control_bodies_are_rejected() {
    assert!(matches!(
        Hello::from_json(b"{"),
        Err(FrameError::BadPayload { kind: "HELLO", .. })
    ));
    assert!(matches!(
        Welcome::from_json(br#"{"session_id":1}"#),
        Err(FrameError::BadPayload {
            kind: "WELCOME",
            ..
        })
    ));
    assert!(matches!(
        Event::from_json(b"[]"),
        Err(FrameError::BadPayload { kind: "EVENT", .. })
    ));
    let huge = vec![b' '; MAX_PAYLOAD + 1];
    assert_eq!(
        Reject::from_json(&huge),
        Err(FrameError::Oversized {
            len: MAX_PAYLOAD + 1,
            max: MAX_PAYLOAD
        })
    );
}

#[test]
fn unsupported_version_rejection_says_what_to_upgrade() {
    for version in [0, PROTOCOL_VERSION + 1, u16::MAX] {
        let reject = Reject::unsupported_version(version);
        assert_eq!(reject.code, RejectCode::UnsupportedVersion);
        assert!(!reject.code.is_retryable());
        assert!(reject.message.contains("upgrade"), "{}", reject.message);
        assert!(
            reject.message.contains(&version.to_string()),
            "{}",
            reject.message
        );
    }
    // An old agent is told to upgrade the CLI; a newer agent that the edge is out of date.
    assert!(
        Reject::unsupported_version(0)
            .message
            .contains("upgrade the warren CLI")
    );
    assert!(
        Reject::unsupported_version(PROTOCOL_VERSION + 1)
            .message
            .contains("edge must be upgraded")
    );
}

// ------------------------------------------------------------------- properties

fn stream_id() -> impl Strategy<Value = StreamId> {
    (1..=u32::MAX).prop_map(StreamId)
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    let body = || proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from);
    prop_oneof![
        (stream_id(), proptest::collection::vec(any::<u8>(), 0..2048)).prop_map(|(stream, p)| {
            Frame::Data {
                stream,
                payload: Bytes::from(p),
            }
        }),
        (stream_id(), any::<u32>()).prop_map(|(stream, t)| Frame::Open {
            stream,
            tunnel: TunnelId(t)
        }),
        stream_id().prop_map(|stream| Frame::Fin { stream }),
        (stream_id(), any::<u16>()).prop_map(|(stream, c)| Frame::Rst {
            stream,
            code: ResetCode::from_u16(c)
        }),
        (any::<u32>(), 1..=u32::MAX).prop_map(|(s, increment)| Frame::Window {
            stream: StreamId(s),
            increment
        }),
        any::<u64>().prop_map(|nonce| Frame::Ping { nonce }),
        any::<u64>().prop_map(|nonce| Frame::Pong { nonce }),
        (any::<u16>(), any::<String>()).prop_map(|(c, message)| Frame::GoAway {
            code: GoAwayCode::from_u16(c),
            message
        }),
        (any::<u16>(), body()).prop_map(|(version, body)| Frame::Hello { version, body }),
        body().prop_map(|body| Frame::Welcome { body }),
        body().prop_map(|body| Frame::Reject { body }),
        body().prop_map(|body| Frame::Event { body }),
    ]
}

/// Bytes that are mostly well-framed (so decoding gets past the header) but otherwise arbitrary.
fn framish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = (
        0u8..14,
        prop_oneof![Just(0u32), 1u32..8, any::<u32>()],
        proptest::collection::vec(any::<u8>(), 0..24),
    )
        .prop_map(|(kind, stream, payload)| framed(kind, stream, &payload).to_vec());
    let junk = proptest::collection::vec(any::<u8>(), 0..40);
    proptest::collection::vec(prop_oneof![4 => piece, 1 => junk], 0..6)
        .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_frames_round_trip_batched(frames in proptest::collection::vec(arb_frame(), 0..16)) {
        let mut message = BytesMut::new();
        for frame in &frames {
            let before = message.len();
            frame.encode(&mut message);
            let mut one = message.clone().freeze().slice(before..);
            prop_assert_eq!(Frame::decode(&mut one), Ok(Some(frame.clone())));
            prop_assert!(one.is_empty());
        }
        prop_assert_eq!(Frame::decode_message(message.freeze()), Ok(frames));
    }

    /// The decoder never panics, `decode` and `decode_message` agree, and whatever decodes
    /// re-encodes to exactly the same bytes (the encoding is canonical).
    #[test]
    fn arbitrary_bytes_never_panic_and_valid_ones_are_canonical(bytes in framish_bytes()) {
        let message = Bytes::from(bytes);
        let mut src = message.clone();
        let mut frames = Vec::new();
        let streamed = loop {
            match Frame::decode(&mut src) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) if src.is_empty() => break Ok(frames),
                Ok(None) => break Err(FrameError::Truncated(src.len())),
                Err(e) => break Err(e),
            }
        };
        let batched = Frame::decode_message(message.clone());
        prop_assert_eq!(&batched, &streamed);
        if let Ok(frames) = batched {
            let mut again = BytesMut::new();
            for frame in &frames {
                frame.encode(&mut again);
            }
            prop_assert_eq!(again.freeze(), message);
        }
    }
}

#[test]
fn dynamic_tunnel_events_round_trip_and_are_pinned() {
    let open = Event::OpenTunnel {
        spec: TunnelRequest {
            id: TunnelId(7),
            protocol: TunnelProtocol::Http,
            subdomain: Some("demo".into()),
            local_addr: "127.0.0.1:3000".into(),
            host_header: None,
        },
        grant: Some(GrantToken("eyJ.grant".into())),
    };
    assert_eq!(
        &open.to_json()[..],
        br#"{"type":"open_tunnel","spec":{"id":7,"protocol":"http","subdomain":"demo","local_addr":"127.0.0.1:3000"},"grant":"eyJ.grant"}"#
    );
    let events = [
        open,
        Event::OpenTunnel {
            spec: TunnelRequest {
                id: TunnelId(8),
                protocol: TunnelProtocol::Http,
                subdomain: None,
                local_addr: String::new(),
                host_header: Some("localhost:3000".into()),
            },
            grant: None,
        },
        Event::TunnelOpened {
            id: TunnelId(7),
            hostname: "demo.localhost".into(),
            public_url: "http://demo.localhost:8080".into(),
        },
        Event::TunnelRefused {
            id: TunnelId(7),
            code: RejectCode::UnknownTunnel,
            message: "no such tunnel".into(),
        },
        Event::CloseTunnel { id: TunnelId(7) },
    ];
    for event in events {
        let Frame::Event { body } = event.into_frame() else {
            panic!("not an EVENT frame");
        };
        assert_eq!(Event::from_body(&body), Ok(event.clone()), "{event:?}");
    }
    assert_eq!(
        &Event::CloseTunnel { id: TunnelId(7) }.to_json()[..],
        br#"{"type":"close_tunnel","id":7}"#
    );
    assert_eq!(
        &Event::TunnelRefused {
            id: TunnelId(1),
            code: RejectCode::UnknownTunnel,
            message: "m".into()
        }
        .to_json()[..],
        br#"{"type":"tunnel_refused","id":1,"code":"unknown_tunnel","message":"m"}"#
    );
}

#[test]
fn a_protocol_from_the_future_is_read_so_it_can_be_refused() {
    let body = br#"{"type":"open_tunnel","spec":{"id":1,"protocol":"quic","local_addr":""}}"#;
    match Event::from_json(body) {
        Ok(Event::OpenTunnel { spec, grant: None }) => {
            assert_eq!(spec.protocol, TunnelProtocol::Unsupported);
        }
        other => panic!("{other:?}"),
    }
    // An open_tunnel without its spec is malformed, not silently ignored.
    assert!(Event::from_json(br#"{"type":"open_tunnel"}"#).is_err());
}

#[test]
fn dynamic_tunnels_is_written_only_when_asked_for() {
    let hello = pinned_hello();
    assert!(!String::from_utf8_lossy(&hello.to_json()).contains("dynamic_tunnels"));
    let dynamic = Hello {
        dynamic_tunnels: true,
        tunnels: Vec::new(),
        ..pinned_hello()
    };
    let json = dynamic.to_json();
    assert!(String::from_utf8_lossy(&json).contains(r#""dynamic_tunnels":true"#));
    assert_eq!(Hello::from_json(&json), Ok(dynamic));
    let welcome = Welcome {
        dynamic_tunnels: true,
        ..pinned_welcome()
    };
    assert_eq!(Welcome::from_json(&welcome.to_json()), Ok(welcome));
}

#[test]
fn a_grant_in_open_tunnel_never_shows_in_debug() {
    let event = Event::OpenTunnel {
        spec: TunnelRequest {
            id: TunnelId(1),
            protocol: TunnelProtocol::Http,
            subdomain: None,
            local_addr: String::new(),
            host_header: None,
        },
        grant: Some(GrantToken("eyJ.secret-grant".into())),
    };
    let debug = format!("{event:?} {event:#?}");
    assert!(
        !debug.contains("secret-grant") && debug.contains("redacted"),
        "{debug}"
    );
}
