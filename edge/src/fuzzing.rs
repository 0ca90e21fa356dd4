//! Harnesses for the edge's HTTP/1 parsers: the request and response head parsers of the
//! proxy core (`visitor/h1/head.rs`), its chunked-body decoder (`visitor/h1/framing.rs`) and
//! the trailer parser (`forwarding/trailers.rs`). Each takes arbitrary bytes and panics when
//! an invariant breaks — that is what they are for: the cargo-fuzz targets in `fuzz/` call
//! them, and the tests below replay every corpus file (`fuzz/corpus/<target>/`) and the
//! crashes fixed so far, so `cargo test` exercises them without cargo-fuzz.
//!
//! The fuzz crate compiles this file and the parsers' files directly (`#[path]`, see
//! `fuzz/src/lib.rs`), so only what is `use`d here and there may be imported by them:
//! `crate::forwarding::{Forwarding, client, fields, trailers}` and
//! `crate::visitor::h1::{framing, head}`.

use crate::forwarding::Forwarding;
use crate::forwarding::trailers::{self, Declared};
use crate::visitor::h1::framing::{self, BodyKind, ChunkDecoder, Piece};
use crate::visitor::h1::head;
use bytes::{Bytes, BytesMut};
use std::net::{IpAddr, Ipv4Addr};

/// The edge's default header-count limit (`--max-headers`).
const MAX_HEADERS: usize = 100;
/// Room for the fields the edge adds to a request head (client address, request id).
const ADDED_FIELDS: usize = 16;
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// A visitor's request head through the proxy core: parsed, checked, written for the local
/// service. What the core accepts must come out as one complete head that the core accepts
/// again with the same framing, host and method, carrying the edge's client address.
pub fn request_head(data: &[u8]) {
    let mut table = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut table);
    let Ok(httparse::Status::Complete(len)) = req.parse(data) else {
        return;
    };
    assert!(len <= data.len(), "the head is longer than the input");
    let Ok(facts) = head::inspect(&req, len) else {
        return;
    };
    assert_eq!(facts.head_len, len);
    for trusted in [false, true] {
        let mut out = BytesMut::new();
        let forwarding = Forwarding {
            peer: PEER,
            trusted,
            proto: "http",
            request_id: "fuzz-request",
            host_override: None,
        };
        head::write_request(&mut out, &req, &facts, &forwarding);

        let mut table = vec![httparse::EMPTY_HEADER; req.headers.len() + ADDED_FIELDS];
        let mut again = httparse::Request::new(&mut table);
        match again.parse(&out) {
            Ok(httparse::Status::Complete(n)) => {
                assert_eq!(
                    n,
                    out.len(),
                    "the written head is followed by bytes: {out:?}"
                )
            }
            other => panic!("the written head does not parse ({other:?}): {out:?}"),
        }
        let refacts = head::inspect(&again, out.len())
            .unwrap_or_else(|e| panic!("the written head is refused ({e:?}): {out:?}"));
        assert_eq!(refacts.body, facts.body, "framing changed: {out:?}");
        assert_eq!(
            refacts.host_value, facts.host_value,
            "host changed: {out:?}"
        );
        assert_eq!(refacts.is_head, facts.is_head);
        assert_eq!(
            refacts.trailers, facts.trailers,
            "declared trailers changed"
        );
        assert!(
            !refacts.close,
            "a hop-by-hop Connection field was passed on"
        );
        let xff: Vec<&[u8]> = (again.headers.iter())
            .filter(|f| f.name.eq_ignore_ascii_case("x-forwarded-for"))
            .map(|f| f.value)
            .collect();
        if trusted {
            assert!(xff.len() == 1 && xff[0].ends_with(b"192.0.2.1"), "{out:?}");
        } else {
            assert_eq!(xff, [b"192.0.2.1"], "client address not replaced: {out:?}");
        }
    }
}

/// A local service's response head through the proxy core (the first byte says whether it
/// answers a HEAD request). What the core passes on must parse as one complete head whose
/// framing tells the visitor where the body the edge sends ends.
pub fn response_head(data: &[u8]) {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let is_head = first & 1 == 1;
    let mut table = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut table);
    let Ok(httparse::Status::Complete(len)) = resp.parse(data) else {
        return;
    };
    assert!(len <= data.len(), "the head is longer than the input");
    let Ok(facts) = head::inspect_response(&resp, len, is_head) else {
        return;
    };
    if facts.interim {
        return;
    }
    let mut out = BytesMut::new();
    head::write_response(&mut out, &resp, &facts, is_head);
    head::finish_response(&mut out, first & 2 == 2);

    let mut table = [httparse::EMPTY_HEADER; 130];
    let mut again = httparse::Response::new(&mut table);
    match again.parse(&out) {
        Ok(httparse::Status::Complete(n)) => {
            assert_eq!(
                n,
                out.len(),
                "the written head is followed by bytes: {out:?}"
            )
        }
        other => panic!("the written head does not parse ({other:?}): {out:?}"),
    }
    let refacts = head::inspect_response(&again, out.len(), is_head)
        .unwrap_or_else(|e| panic!("the written head is refused ({e}): {out:?}"));
    assert_eq!(refacts.status, facts.status);
    // What the edge sends: the body as received if it has a length, chunked if it ends
    // with the local connection.
    let sent = match facts.body {
        BodyKind::UntilClose => BodyKind::Chunked,
        other => other,
    };
    assert_eq!(
        refacts.body, sent,
        "the visitor would frame the body otherwise: {out:?}"
    );
}

/// A chunked body through the decoder, whole and cut into pieces (the first byte sets the
/// piece size): both ways must agree, consume no more than they are given, and what decodes
/// must encode and decode again to the same data and trailers.
pub fn chunked(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let whole = decode_chunked(body, body.len().max(1));
    let cut = decode_chunked(body, usize::from(first % 32) + 1);
    assert_eq!(whole, cut, "decoding depends on how the bytes arrive");
    let Decoded {
        data,
        end: Some(trailers),
        ..
    } = whole
    else {
        return;
    };
    let mut encoded = Vec::new();
    if !data.is_empty() {
        encoded.extend_from_slice(&framing::chunk_header(data.len()));
        encoded.extend_from_slice(&data);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(&framing::last_chunk(&trailers));
    let again = decode_chunked(&encoded, encoded.len());
    assert_eq!(again.data, data, "data changed on a round trip");
    assert_eq!(
        again.end.as_deref(),
        Some(&trailers[..]),
        "trailers changed"
    );
    assert!(
        !again.failed && again.left == 0,
        "the re-encoded body is not exact"
    );
}

/// What a chunked body decoded to.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    data: Vec<u8>,
    /// The trailer section, once the last chunk was read.
    end: Option<Bytes>,
    failed: bool,
    /// Bytes given but not consumed when decoding stopped.
    left: usize,
}

fn decode_chunked(body: &[u8], piece: usize) -> Decoded {
    let mut decoder = ChunkDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Decoded {
        data: Vec::new(),
        end: None,
        failed: false,
        left: 0,
    };
    let (mut given, mut consumed) = (0, 0);
    'feed: for bytes in body.chunks(piece) {
        buf.extend_from_slice(bytes);
        given += bytes.len();
        loop {
            let before = buf.len();
            let step = decoder.decode(&mut buf);
            assert!(buf.len() <= before, "the decoder grew its input");
            consumed += before - buf.len();
            assert!(consumed <= given, "consumed more than was given");
            match step {
                Ok(Some(Piece::Data(d))) => {
                    assert!(!d.is_empty(), "an empty data piece");
                    out.data.extend_from_slice(&d);
                }
                Ok(Some(Piece::End(trailers))) => {
                    out.end = Some(trailers);
                    break 'feed;
                }
                Ok(None) => break,
                Err(_) => {
                    out.failed = true;
                    break 'feed;
                }
            }
        }
    }
    // The rest of the input after the body is left for the next message: not a difference.
    if out.end.is_some() || out.failed {
        out.left = body.len() - consumed;
    }
    out
}

/// A trailer section through the strict parser: what parses is made of tokens and field
/// values, and what the edge writes again parses to the same fields (those allowed).
pub fn trailers(section: &[u8]) {
    let Ok(fields) = trailers::parse(section) else {
        assert!(
            trailers::rewrite(section, &Declared::default()).is_err(),
            "a refused section was passed on"
        );
        return;
    };
    let mut declared = Declared::default();
    for (name, _) in &fields {
        declared.add(name);
    }
    let written = trailers::rewrite(section, &declared)
        .unwrap_or_else(|e| panic!("a parsed section is refused when written ({e})"));
    let reparsed = trailers::parse(&written)
        .unwrap_or_else(|e| panic!("the written section does not parse ({e}): {written:?}"));
    assert!(reparsed.len() <= fields.len());
    for (name, value) in &reparsed {
        assert!(
            (fields.iter()).any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value),
            "a field the section did not hold: {written:?}"
        );
    }
    let again = trailers::rewrite(&written, &declared).unwrap_or_default();
    assert_eq!(again, written, "writing is not idempotent");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Every file of `fuzz/corpus/<target>/` through `check`; there must be some.
    fn replay(target: &str, check: fn(&[u8])) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
        let mut count = 0;
        for entry in entries {
            let path = entry.expect("test step").path();
            let data = std::fs::read(&path).expect("test step");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{path:?} fails");
            count += 1;
        }
        assert!(count >= 10, "{dir:?} holds only {count} files");
    }

    #[test]
    fn request_head_corpus() {
        replay("h1_request_head", request_head);
    }

    #[test]
    fn response_head_corpus() {
        replay("h1_response_head", response_head);
    }

    #[test]
    fn chunked_corpus() {
        replay("h1_chunked", chunked);
    }

    #[test]
    fn trailers_corpus() {
        replay("h1_trailers", trailers);
    }

    #[test]
    fn the_harnesses_hold_on_plain_messages() {
        request_head(b"POST /a HTTP/1.1\r\nHost: x.example\r\nTransfer-Encoding: chunked\r\nTrailer: etag\r\nX-Forwarded-For: 1.2.3.4\r\nConnection: keep-alive\r\n\r\n");
        response_head(b"\0HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
        response_head(b"\0HTTP/1.0 200 OK\r\n\r\nuntil close");
        chunked(b"\x033\r\nabc\r\n0\r\nEtag: 1\r\n\r\n");
        trailers(b"Etag: 1\r\nAuthorization: x\r\n");
    }
}
