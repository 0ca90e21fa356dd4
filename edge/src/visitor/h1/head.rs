//! Request and response heads: parsed once (httparse), checked, and written for the next hop
//! in one pass over the fields, each field keeping its case, order and repeats. What is kept,
//! dropped and added is the forwarding policy's (`forwarding/`), shared with the general path.
//!
//! Anything this core does not handle itself (HTTP/1.0, upgrades, `Expect`, fields listed in
//! `Connection`, absolute-form targets, duplicate `Host` or `Content-Length`, split cookies,
//! anything that does not parse) is a [`Fallback`]: the connection goes to the general path
//! (hyper), which answers it exactly as before, error pages included.

use crate::forwarding::Forwarding;
use crate::forwarding::client::{ClientFields, Received};
use crate::forwarding::fields::{self, ClientField, RequestField, ResponseField};
use crate::forwarding::trailers::Declared;
use crate::visitor::h1::framing::BodyKind;
use bytes::{BufMut, BytesMut};

/// Why a request is left to the general path (for debug logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback(pub &'static str);

/// Facts about a visitor's request head, read in the same pass that checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts {
    /// Bytes of the head, empty line included.
    pub head_len: usize,
    /// The `Host` value as sent (port included): passed on, and sent as `X-Forwarded-Host`.
    pub host_value: String,
    pub is_head: bool,
    pub body: BodyKind,
    /// The visitor asked to close the connection after this request.
    pub close: bool,
    /// The visitor's own `X-Request-Id`, when it is usable as the edge's id.
    pub request_id: Option<String>,
    /// The visitor prefers HTML (for error pages).
    pub html: bool,
    /// The trailer fields the request declared (`Trailer`): the only ones passed on.
    pub trailers: Declared,
}

/// Checks a parsed request head. `Ok` means this core can proxy it as it is.
pub fn inspect(req: &httparse::Request<'_, '_>, head_len: usize) -> Result<RequestFacts, Fallback> {
    if req.version != Some(1) {
        return Err(Fallback("not HTTP/1.1"));
    }
    let method = req.method.unwrap_or("");
    if method.eq_ignore_ascii_case("CONNECT") {
        return Err(Fallback("CONNECT"));
    }
    if !req.path.is_some_and(|p| p.starts_with('/')) {
        return Err(Fallback("not an origin-form target"));
    }
    let mut host = None;
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    let mut request_id = None;
    let mut html = false;
    let mut cookies = 0;
    let mut trailers = Declared::default();
    for field in req.headers.iter() {
        match fields::request_field(field.name) {
            RequestField::Other
            | RequestField::Hop
            | RequestField::Internal
            | RequestField::ClientAddress(_)
            | RequestField::ForwardedProto
            | RequestField::ForwardedHost => {}
            RequestField::Host => {
                if host.is_some() {
                    return Err(Fallback("two Host fields"));
                }
                let value = std::str::from_utf8(field.value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()))
                    .ok_or(Fallback("unusual Host value"))?;
                host = Some(value);
            }
            RequestField::ContentLength => {
                if length.is_some() {
                    return Err(Fallback("two Content-Length fields"));
                }
                length = Some(decimal(field.value).ok_or(Fallback("unusual Content-Length"))?);
            }
            RequestField::TransferEncoding => {
                if chunked || !trim(field.value).eq_ignore_ascii_case(b"chunked") {
                    return Err(Fallback("a transfer coding other than chunked"));
                }
                chunked = true;
            }
            RequestField::Connection => {
                for token in field.value.split(|&b| b == b',').map(trim) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
                        return Err(Fallback("Connection lists fields or an upgrade"));
                    }
                }
            }
            RequestField::RequestId => {
                request_id = std::str::from_utf8(field.value)
                    .ok()
                    .filter(|v| {
                        !v.is_empty()
                            && v.len() <= 128
                            && v.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
                    })
                    .map(str::to_string);
            }
            RequestField::Trailer => trailers.add(field.value),
            RequestField::Accept => {
                html |= field.value.windows(9).any(|w| w == b"text/html");
            }
            RequestField::Cookie => {
                cookies += 1;
                if cookies > 1 {
                    return Err(Fallback("split Cookie fields"));
                }
            }
            RequestField::UpgradeOrExpect => return Err(Fallback("an upgrade or an expectation")),
        }
    }
    let body = match (length, chunked) {
        (Some(_), true) => return Err(Fallback("both Content-Length and chunked")),
        (_, true) => BodyKind::Chunked,
        (Some(0) | None, false) => BodyKind::None,
        (Some(n), false) => BodyKind::Length(n),
    };
    Ok(RequestFacts {
        head_len,
        host_value: host.ok_or(Fallback("no Host"))?.to_string(),
        is_head: method == "HEAD",
        body,
        close,
        request_id,
        html,
        trailers,
    })
}

/// Writes the head the local service gets: the request line in origin form, the visitor's
/// fields minus hop-by-hop, internal and client-address ones (`Host` replaced if the tunnel
/// asked), then the client-address fields (`forwarding/client.rs`) and, unless the visitor
/// sent one, `X-Request-Id`.
pub fn write_request(
    out: &mut BytesMut,
    req: &httparse::Request<'_, '_>,
    facts: &RequestFacts,
    forwarding: &Forwarding<'_>,
) {
    out.reserve(facts.head_len + 256);
    out.put_slice(req.method.unwrap_or("GET").as_bytes());
    out.put_u8(b' ');
    out.put_slice(req.path.unwrap_or("/").as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    let mut has_request_id = false;
    let mut received = Received::default();
    for field in req.headers.iter() {
        match fields::request_field(field.name) {
            RequestField::Hop | RequestField::Connection | RequestField::Internal => continue,
            RequestField::ClientAddress(ClientField::XForwardedFor) => {
                received.names[0].get_or_insert(field.name.as_bytes());
                received.x_forwarded_for.push(field.value);
                continue;
            }
            RequestField::ForwardedProto => {
                received.names[1].get_or_insert(field.name.as_bytes());
                received.x_forwarded_proto.get_or_insert(field.value);
                continue;
            }
            RequestField::ForwardedHost => {
                received.names[2].get_or_insert(field.name.as_bytes());
                received.x_forwarded_host.get_or_insert(field.value);
                continue;
            }
            RequestField::ClientAddress(ClientField::XRealIp) => {
                received.names[3].get_or_insert(field.name.as_bytes());
                received.x_real_ip.get_or_insert(field.value);
                continue;
            }
            RequestField::ClientAddress(ClientField::Forwarded) => {
                received.names[4].get_or_insert(field.name.as_bytes());
                received.forwarded.push(field.value);
                continue;
            }
            RequestField::Host => {
                if let Some(host) = forwarding.host_override {
                    put_field(out, field.name.as_bytes(), host.as_bytes());
                    continue;
                }
            }
            RequestField::RequestId => has_request_id = true,
            _ => {}
        }
        put_field(out, field.name.as_bytes(), field.value);
    }
    let client = ClientFields::new(
        forwarding.peer,
        forwarding.proto,
        facts.host_value.as_bytes(),
        forwarding.trusted.then_some(&received),
    );
    client.write(out, &received.names);
    if !has_request_id {
        put_field(out, b"x-request-id", forwarding.request_id.as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// Facts about a response head from the local service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseFacts {
    pub head_len: usize,
    pub status: u16,
    /// An interim (1xx) response: skipped, the real one follows.
    pub interim: bool,
    pub body: BodyKind,
    /// The local service closes its connection after this response (or its framing needs
    /// the close): the upstream stream cannot be reused.
    pub upstream_closes: bool,
    /// The trailer fields the response declared (`Trailer`): the only ones passed on.
    pub trailers: Declared,
}

/// A response head this core cannot pass on: the visitor gets a 502.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadResponse(pub String);

/// Checks a parsed response head to a request (`is_head`: to a HEAD request).
pub fn inspect_response(
    resp: &httparse::Response<'_, '_>,
    head_len: usize,
    is_head: bool,
) -> Result<ResponseFacts, BadResponse> {
    let status = resp.code.unwrap_or(0);
    // httparse takes any three digits; the visitor's parser wants 100-999 (found by fuzzing:
    // `000` was passed on as the status line `HTTP/1.1 0`).
    if status < 100 {
        return Err(BadResponse(
            "the local service sent a status code under 100".into(),
        ));
    }
    if status == 101 {
        return Err(BadResponse(
            "the local service switched protocols unasked".into(),
        ));
    }
    let mut length = None;
    let mut chunked = false;
    let mut other_coding = false;
    let mut close = resp.version != Some(1);
    let mut trailers = Declared::default();
    for field in resp.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = decimal(field.value).ok_or_else(|| {
                BadResponse("the local service sent an invalid Content-Length".into())
            })?;
            if length.is_some_and(|m| m != n) {
                return Err(BadResponse(
                    "the local service sent conflicting Content-Length fields".into(),
                ));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            for coding in field.value.split(|&b| b == b',').map(trim) {
                if coding.eq_ignore_ascii_case(b"chunked") && !chunked {
                    chunked = true;
                } else if !coding.is_empty() {
                    other_coding = true;
                }
            }
        } else if name.eq_ignore_ascii_case("trailer") {
            trailers.add(field.value);
        } else if name.eq_ignore_ascii_case("connection") {
            close |= field
                .value
                .split(|&b| b == b',')
                .any(|t| trim(t).eq_ignore_ascii_case(b"close"));
        }
    }
    if other_coding {
        return Err(BadResponse(
            "the local service used a transfer coding other than chunked".into(),
        ));
    }
    let interim = (100..200).contains(&status);
    let body = if interim || is_head || status == 204 || status == 304 {
        BodyKind::None
    } else if chunked {
        // With both, chunked wins and the connection is not reused (RFC 9112 §6.3).
        close |= length.is_some();
        BodyKind::Chunked
    } else {
        match length {
            Some(0) => BodyKind::None,
            Some(n) => BodyKind::Length(n),
            None => {
                close = true;
                BodyKind::UntilClose
            }
        }
    };
    Ok(ResponseFacts {
        head_len,
        status,
        interim,
        body,
        upstream_closes: close,
        trailers,
    })
}

/// Writes the head the visitor gets: the local service's status line (as HTTP/1.1) and
/// fields minus hop-by-hop ones and those `Connection` lists, framed for the visitor's
/// connection (a body that ends with the local connection is sent chunked, so the visitor's
/// connection stays usable). [`finish_response`] adds the last lines.
pub fn write_response(
    out: &mut BytesMut,
    resp: &httparse::Response<'_, '_>,
    facts: &ResponseFacts,
    is_head: bool,
) {
    out.reserve(facts.head_len + 64);
    out.put_slice(b"HTTP/1.1 ");
    put_u16(out, facts.status);
    out.put_u8(b' ');
    out.put_slice(resp.reason.unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    let listed: Vec<&[u8]> = resp
        .headers
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("connection"))
        .flat_map(|f| f.value.split(|&b| b == b','))
        .map(trim)
        .filter(|t| !t.is_empty())
        .collect();
    let mut chunked_head = false;
    for field in resp.headers.iter() {
        let name = field.name;
        let drop = match fields::response_field(name) {
            ResponseField::Hop | ResponseField::Connection | ResponseField::Internal => true,
            ResponseField::TransferEncoding => {
                chunked_head = true;
                true
            }
            // With chunked framing the length is not the body's (RFC 9112 §6.3).
            ResponseField::ContentLength => facts.body == BodyKind::Chunked,
            ResponseField::Trailer | ResponseField::Other => false,
        };
        // A length the body's framing depends on is written even when `Connection` lists
        // it: dropping it would leave the visitor reading until the connection closes.
        let framing = matches!(facts.body, BodyKind::Length(_))
            && fields::response_field(name) == ResponseField::ContentLength;
        if drop
            || (!framing
                && listed
                    .iter()
                    .any(|l| l.eq_ignore_ascii_case(name.as_bytes())))
        {
            continue;
        }
        put_field(out, name.as_bytes(), field.value);
    }
    let chunked = match facts.body {
        BodyKind::Chunked | BodyKind::UntilClose => true,
        // A HEAD response says how the GET would have been framed.
        BodyKind::None => is_head && chunked_head,
        BodyKind::Length(_) => false,
    };
    if chunked {
        out.put_slice(b"transfer-encoding: chunked\r\n");
    }
}

/// Ends a head from [`write_response`], saying whether the visitor's connection closes.
pub fn finish_response(out: &mut BytesMut, close_visitor: bool) {
    if close_visitor {
        out.put_slice(b"connection: close\r\n");
    }
    out.put_slice(b"\r\n");
}

fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

fn put_u16(out: &mut BytesMut, n: u16) {
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[at..]);
}

/// A decimal number without sign or spaces inside, at most 18 digits.
fn decimal(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &bytes[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_request(raw: &str) -> Result<(RequestFacts, String), Fallback> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(raw.as_bytes()) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("did not parse: {other:?}"),
        };
        let facts = inspect(&req, len)?;
        let mut out = BytesMut::new();
        write_request(
            &mut out,
            &req,
            &facts,
            &Forwarding {
                peer: "192.0.2.7".parse().expect("ip"),
                trusted: false,
                proto: "https",
                request_id: "edge-1",
                host_override: None,
            },
        );
        Ok((facts, String::from_utf8(out.to_vec()).expect("text")))
    }

    #[test]
    fn rewrites_a_request_keeping_case_order_and_repeats() {
        let (facts, head) = parse_request(
            "POST /a?b=1 HTTP/1.1\r\nHost: Demo.example:8080\r\nX-Repeat: 1\r\nkeep-alive: 5\r\n\
             x-repeat: 2\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: http\r\n\
             Content-Length: 3\r\nTE: trailers\r\nAccept: text/html\r\n\r\n",
        )
        .expect("supported");
        assert_eq!(facts.body, BodyKind::Length(3));
        assert!(facts.html && !facts.close && !facts.is_head);
        assert_eq!(facts.host_value, "Demo.example:8080");
        assert_eq!(
            head,
            "POST /a?b=1 HTTP/1.1\r\nHost: Demo.example:8080\r\nX-Repeat: 1\r\nx-repeat: 2\r\n\
             Content-Length: 3\r\nAccept: text/html\r\nX-Forwarded-For: 192.0.2.7\r\n\
             X-Forwarded-Proto: https\r\nx-forwarded-host: Demo.example:8080\r\n\
             x-real-ip: 192.0.2.7\r\n\
             forwarded: for=192.0.2.7;host=\"Demo.example:8080\";proto=https\r\n\
             x-request-id: edge-1\r\n\r\n"
        );
    }

    #[test]
    fn keeps_the_visitors_request_id_and_notes_close() {
        let (facts, head) = parse_request(
            "GET / HTTP/1.1\r\nhost: a.localhost\r\nX-Request-Id: mine\r\nConnection: close\r\n\
             Transfer-Encoding: chunked\r\n\r\n",
        )
        .expect("supported");
        assert_eq!(facts.request_id.as_deref(), Some("mine"));
        assert!(facts.close);
        assert_eq!(facts.body, BodyKind::Chunked);
        assert!(head.contains("X-Request-Id: mine\r\n"));
        assert!(!head.contains("edge-1"));
        assert!(!head.to_ascii_lowercase().contains("connection"));
        assert!(head.contains("Transfer-Encoding: chunked\r\n"));
    }

    #[test]
    fn leaves_unusual_requests_to_the_general_path() {
        for raw in [
            "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, x-secret\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
        ] {
            assert!(parse_request(raw).is_err(), "{raw:?}");
        }
    }

    fn response(
        raw: &str,
        is_head: bool,
        close_visitor: bool,
    ) -> Result<(ResponseFacts, String), BadResponse> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(raw.as_bytes()) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("did not parse: {other:?}"),
        };
        let facts = inspect_response(&resp, len, is_head)?;
        let mut out = BytesMut::new();
        write_response(&mut out, &resp, &facts, is_head);
        finish_response(&mut out, close_visitor);
        Ok((facts, String::from_utf8(out.to_vec()).expect("text")))
    }

    #[test]
    fn rewrites_a_response_without_hop_by_hop_fields() {
        let (facts, head) = response(
            "HTTP/1.1 200 Fine\r\nSet-Cookie: a=1\r\nConnection: X-Hop\r\nX-Hop: h\r\n\
             Keep-Alive: timeout=5\r\nset-cookie: b=2\r\nContent-Length: 5\r\n\r\n",
            false,
            false,
        )
        .expect("valid");
        assert_eq!(facts.body, BodyKind::Length(5));
        assert!(!facts.upstream_closes);
        assert_eq!(
            head,
            "HTTP/1.1 200 Fine\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 5\r\n\r\n"
        );
    }

    #[test]
    fn frames_every_response_for_a_persistent_visitor_connection() {
        let (facts, head) = response(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n",
            false,
            false,
        )
        .expect("valid");
        assert_eq!(facts.body, BodyKind::UntilClose);
        assert!(facts.upstream_closes);
        assert!(
            head.ends_with("transfer-encoding: chunked\r\n\r\n"),
            "{head}"
        );

        let (facts, head) = response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            false,
            true,
        )
        .expect("valid");
        assert_eq!(facts.body, BodyKind::Chunked);
        assert!(facts.upstream_closes, "chunked with a length is not reused");
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );

        for (raw, is_head) in [
            ("HTTP/1.1 204 No Content\r\n\r\n", false),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
                false,
            ),
            ("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true),
            ("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false),
        ] {
            let (facts, _) = response(raw, is_head, false).expect("valid");
            assert_eq!(facts.body, BodyKind::None, "{raw}");
        }
        let (_, head) = response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
            false,
        )
        .expect("valid");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
    }

    /// A `Connection` field listing `Content-Length` must not take the body's length away
    /// from the visitor (it would read the next response as part of this one).
    #[test]
    fn a_length_listed_in_connection_is_kept() {
        let (facts, head) = response(
            "HTTP/1.1 200 OK\r\nConnection: content-length, x-a\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n",
            false,
            false,
        )
        .expect("valid");
        assert_eq!(facts.body, BodyKind::Length(2));
        assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
    }

    #[test]
    fn refuses_responses_it_cannot_frame() {
        for raw in [
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            // Found by fuzzing (fuzz/corpus/h1_response_head/regression-status-000).
            "HTTP/1.1 000 OK\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 099 Low\r\n\r\n",
        ] {
            assert!(response(raw, false, false).is_err(), "{raw}");
        }
    }

    #[test]
    fn numbers_are_written_and_read_exactly() {
        let mut out = BytesMut::new();
        for n in [0u16, 7, 10, 99, 100, 404, 65535] {
            out.clear();
            put_u16(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
        }
        assert_eq!(decimal(b" 42 "), Some(42));
        assert_eq!(decimal(b"4 2"), None);
        assert_eq!(decimal(b""), None);
        assert_eq!(decimal(b"1234567890123456789"), None);
    }
}
