//! Harness for the WebSocket frame decoder ([`super::frame`]): arbitrary bytes in, and a
//! panic when an invariant breaks. The cargo-fuzz target `fuzz/fuzz_targets/ws_frame.rs`
//! calls it (the fuzz crate compiles this file and `frame.rs` directly, `#[path]`), and the
//! test below replays every file of `fuzz/corpus/ws_frame/` so `cargo test` exercises it.

use super::frame::{Decoder, FIN, OP_BINARY, Step, WsMessage, WsRole, encode_frame};
use bytes::BytesMut;

/// The first byte picks the role, the message cap and how the bytes arrive; the rest is what
/// the peer sent. Decoding whole and in pieces must agree, consume no more than it is given,
/// never produce more than it was given, and every binary message must encode and decode
/// again to itself.
pub fn frames(data: &[u8]) {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    let role = if first & 1 == 0 {
        WsRole::Server
    } else {
        WsRole::Client
    };
    let max = 16 << ((first >> 1) & 7);
    let piece = usize::from(first >> 4) + 1;
    let whole = decode(role, max, bytes, bytes.len().max(1));
    let cut = decode(role, max, bytes, piece);
    assert_eq!(whole, cut, "decoding depends on how the bytes arrive");

    let (mask, peer) = match role {
        WsRole::Server => (Some([first, 0x5a, 0xa5, 0x0f]), WsRole::Server),
        WsRole::Client => (None, WsRole::Client),
    };
    for message in &whole.messages {
        let WsMessage::Binary(payload) = message else {
            continue;
        };
        assert!(payload.len() <= max, "a message over the cap");
        let mut raw = Vec::new();
        encode_frame(&mut raw, FIN | OP_BINARY, payload, mask);
        let again = decode(peer, max, &raw, raw.len());
        assert_eq!(
            again.messages,
            std::slice::from_ref(message),
            "no round trip"
        );
        assert!(again.error.is_none() && again.left == 0);
    }
}

/// What a byte stream decoded to.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    messages: Vec<WsMessage>,
    /// Pongs owed, in order.
    pongs: Vec<Vec<u8>>,
    error: Option<String>,
    /// Bytes given but not consumed.
    left: usize,
}

fn decode(role: WsRole, max: usize, bytes: &[u8], piece: usize) -> Decoded {
    let mut decoder = Decoder::new(role, max);
    let mut buf = BytesMut::new();
    let mut out = Decoded {
        messages: Vec::new(),
        pongs: Vec::new(),
        error: None,
        left: 0,
    };
    let (mut given, mut consumed, mut produced) = (0usize, 0usize, 0usize);
    'feed: for chunk in bytes.chunks(piece) {
        buf.extend_from_slice(chunk);
        given += chunk.len();
        loop {
            let before = buf.len();
            let step = decoder.decode(&mut buf);
            consumed += before - buf.len();
            assert!(consumed <= given, "consumed more than was given");
            match step {
                Ok(Step::Message { message, .. }) => {
                    if let WsMessage::Binary(payload) = &message {
                        produced += payload.len();
                        assert!(produced <= consumed, "more payload than input");
                    }
                    if let Some(pong) = decoder.take_pong() {
                        assert!(pong.len() <= 125, "a control payload over 125 bytes");
                        out.pongs.push(pong.to_vec());
                    }
                    out.messages.push(message);
                }
                Ok(Step::Fragment) => {}
                Ok(Step::Incomplete(_)) => {
                    assert_eq!(buf.len(), before, "an incomplete frame was consumed");
                    break;
                }
                Err(e) => {
                    out.error = Some(e.to_string());
                    break 'feed;
                }
            }
        }
    }
    out.left = buf.len();
    if out.error.is_some() {
        // Bytes not yet given when decoding stopped are not a difference.
        out.left += bytes.len() - given;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn ws_frame_corpus() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/ws_frame");
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
        let mut count = 0;
        for entry in entries {
            let path = entry.expect("test step").path();
            let data = std::fs::read(&path).expect("test step");
            let outcome = std::panic::catch_unwind(|| frames(&data));
            assert!(outcome.is_ok(), "{path:?} fails");
            count += 1;
        }
        assert!(count >= 10, "{dir:?} holds only {count} files");
    }
}
