//! Which fields the edge keeps, drops or sets, by name: one classification for both HTTP
//! engines (the proxy core matches names as bytes, the general path `HeaderName`s).

/// What the edge does with a field of a visitor's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestField {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    /// Hop-by-hop without conditions (`TE`, `Keep-Alive`, `Proxy-Connection`): dropped.
    Hop,
    /// `Upgrade` and `Expect`: handled by the general path.
    UpgradeOrExpect,
    /// A client-address field (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`): replaced, or
    /// extended for a trusted proxy (`client.rs`).
    ClientAddress(ClientField),
    /// `X-Forwarded-Proto` / `X-Forwarded-Host`: set by the edge (kept from a trusted proxy).
    ForwardedProto,
    ForwardedHost,
    /// `X-Request-Id`: the visitor's is kept when sane, else the edge sets one.
    RequestId,
    /// The edge's own `warren-relay-*` fields: never accepted from outside the cluster.
    Internal,
    /// `Trailer`: passed on, and the names it lists are the trailers that may follow.
    Trailer,
    Accept,
    Cookie,
    Other,
}

/// The client-address fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientField {
    XForwardedFor,
    Forwarded,
    XRealIp,
}

/// Prefix of the fields edges use between themselves (`relay/`).
pub const INTERNAL_PREFIX: &str = "warren-relay-";

/// Classifies a request field name (matched case-insensitively).
pub fn request_field(name: &str) -> RequestField {
    let is = |lower: &str| name.eq_ignore_ascii_case(lower);
    match name.len() {
        2 if is("te") => RequestField::Hop,
        4 if is("host") => RequestField::Host,
        6 if is("cookie") => RequestField::Cookie,
        6 if is("accept") => RequestField::Accept,
        6 if is("expect") => RequestField::UpgradeOrExpect,
        7 if is("upgrade") => RequestField::UpgradeOrExpect,
        7 if is("trailer") => RequestField::Trailer,
        9 if is("forwarded") => RequestField::ClientAddress(ClientField::Forwarded),
        9 if is("x-real-ip") => RequestField::ClientAddress(ClientField::XRealIp),
        10 if is("connection") => RequestField::Connection,
        10 if is("keep-alive") => RequestField::Hop,
        12 if is("x-request-id") => RequestField::RequestId,
        14 if is("content-length") => RequestField::ContentLength,
        15 if is("x-forwarded-for") => RequestField::ClientAddress(ClientField::XForwardedFor),
        16 if is("proxy-connection") => RequestField::Hop,
        16 if is("x-forwarded-host") => RequestField::ForwardedHost,
        17 if is("transfer-encoding") => RequestField::TransferEncoding,
        17 if is("x-forwarded-proto") => RequestField::ForwardedProto,
        _ if is_internal(name) => RequestField::Internal,
        _ => RequestField::Other,
    }
}

/// What the edge does with a field of a local service's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseField {
    ContentLength,
    TransferEncoding,
    Connection,
    /// Hop-by-hop (`TE`, `Upgrade`, `Keep-Alive`, `Proxy-Connection`): dropped.
    Hop,
    /// `warren-relay-*`: a local service must never speak for the edge (a forged
    /// `warren-relay-moved` would make the first edge of a relay send the request again).
    Internal,
    /// `Trailer`: passed on, and the names it lists are the trailers that may follow.
    Trailer,
    Other,
}

/// Classifies a response field name (matched case-insensitively).
pub fn response_field(name: &str) -> ResponseField {
    let is = |lower: &str| name.eq_ignore_ascii_case(lower);
    match name.len() {
        2 if is("te") => ResponseField::Hop,
        7 if is("upgrade") => ResponseField::Hop,
        7 if is("trailer") => ResponseField::Trailer,
        10 if is("connection") => ResponseField::Connection,
        10 if is("keep-alive") => ResponseField::Hop,
        14 if is("content-length") => ResponseField::ContentLength,
        16 if is("proxy-connection") => ResponseField::Hop,
        17 if is("transfer-encoding") => ResponseField::TransferEncoding,
        _ if is_internal(name) => ResponseField::Internal,
        _ => ResponseField::Other,
    }
}

/// Whether `name` is one of the edge's own `warren-relay-*` fields.
pub fn is_internal(name: &str) -> bool {
    name.len() > INTERNAL_PREFIX.len()
        && name.as_bytes()[..INTERNAL_PREFIX.len()].eq_ignore_ascii_case(INTERNAL_PREFIX.as_bytes())
}

/// Whether a field may travel in a trailer section (RFC 9110 §6.5.1): nothing that frames,
/// routes, authenticates or controls the message, nothing hop-by-hop, nothing of the edge's.
/// The same list hyper applies to the trailers it writes, plus hop-by-hop and internal
/// fields, so both engines forward the same trailers.
pub fn allowed_in_trailers(name: &str) -> bool {
    const DENIED: [&str; 18] = [
        "authorization",
        "cache-control",
        "connection",
        "content-encoding",
        "content-length",
        "content-range",
        "content-type",
        "expect",
        "host",
        "keep-alive",
        "max-forwards",
        "proxy-authorization",
        "proxy-connection",
        "set-cookie",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    !DENIED.iter().any(|d| name.eq_ignore_ascii_case(d)) && !is_internal(name)
}

/// Whether `name` is an HTTP field name (a token, RFC 9110 §5.1).
pub fn is_token(name: &[u8]) -> bool {
    !name.is_empty()
        && name.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Whether `value` is a field value the edge passes on: visible ASCII, obs-text, spaces and
/// tabs, and nothing else — no CR, LF or NUL, however it got there.
pub fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_fields_are_classified_case_insensitively() {
        assert_eq!(request_field("HOST"), RequestField::Host);
        assert_eq!(request_field("Te"), RequestField::Hop);
        assert_eq!(
            request_field("x-FORWARDED-for"),
            RequestField::ClientAddress(ClientField::XForwardedFor)
        );
        assert_eq!(
            request_field("Forwarded"),
            RequestField::ClientAddress(ClientField::Forwarded)
        );
        assert_eq!(
            request_field("X-Real-IP"),
            RequestField::ClientAddress(ClientField::XRealIp)
        );
        assert_eq!(
            request_field("Warren-Relay-Visitor"),
            RequestField::Internal
        );
        assert_eq!(request_field("warren-relay-"), RequestField::Other);
        assert_eq!(request_field("warren-error"), RequestField::Other);
        assert_eq!(request_field("x-custom"), RequestField::Other);
    }

    #[test]
    fn responses_lose_hop_by_hop_and_internal_fields() {
        assert_eq!(response_field("Upgrade"), ResponseField::Hop);
        assert_eq!(
            response_field("warren-relay-moved"),
            ResponseField::Internal
        );
        assert_eq!(response_field("Set-Cookie"), ResponseField::Other);
    }

    #[test]
    fn trailers_exclude_framing_routing_and_internal_fields() {
        for name in [
            "Content-Length",
            "host",
            "Transfer-Encoding",
            "warren-relay-hops",
            "Trailer",
        ] {
            assert!(!allowed_in_trailers(name), "{name}");
        }
        for name in ["grpc-status", "Server-Timing", "x-checksum"] {
            assert!(allowed_in_trailers(name), "{name}");
        }
    }

    #[test]
    fn tokens_and_values() {
        assert!(is_token(b"X-Custom_1"));
        assert!(!is_token(b"X Custom"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a:b"));
        assert!(is_field_value(b"text/html; q=0.9\t\xc3\xa9"));
        for bad in [&b"a\rb"[..], b"a\nb", b"a\0b"] {
            assert!(!is_field_value(bad));
        }
    }
}
