//! The forwarding rules on hyper's header maps (the general path). The proxy core applies the
//! same rules while it writes heads (`visitor/h1/head.rs`); both classify fields with
//! `fields.rs` and build the client-address fields with `client.rs`.

use super::Forwarding;
use super::client::{ClientFields, Received};
use super::fields::{self, RequestField};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Whether the request asks to switch protocols (WebSocket or another `Upgrade`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

/// Rewrites a visitor's request fields for the local service: hop-by-hop and internal fields
/// out, client-address fields replaced (or extended for a trusted proxy), `Host` replaced if
/// the tunnel asked, a request id if the visitor sent none. `host` is the host the request was
/// routed by; `keep_upgrade` keeps a protocol switch.
pub fn request_for_local(
    headers: &mut HeaderMap,
    forwarding: &Forwarding<'_>,
    host: &str,
    keep_upgrade: bool,
) {
    strip_hop_by_hop(headers, keep_upgrade);
    let received = forwarding.trusted.then(|| received(headers));
    let client = ClientFields::new(
        forwarding.peer,
        forwarding.proto,
        host.as_bytes(),
        received.as_ref(),
    );
    remove_matching(headers, |name| {
        matches!(
            fields::request_field(name),
            RequestField::ClientAddress(_)
                | RequestField::ForwardedProto
                | RequestField::ForwardedHost
                | RequestField::Internal
        )
    });
    for (name, value) in client.pairs() {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(name), value);
        }
    }
    if let Some(host) = forwarding.host_override
        && let Ok(value) = HeaderValue::from_str(host)
    {
        headers.insert(header::HOST, value);
    }
    if !headers.contains_key(&X_REQUEST_ID)
        && let Ok(id) = HeaderValue::from_str(forwarding.request_id)
    {
        headers.insert(&X_REQUEST_ID, id);
    }
}

/// Marks a request whose body has no known length as chunked. hyper's client otherwise
/// sends a GET, HEAD or CONNECT with such a body without it (it assumes those methods have
/// none), where the proxy core passes the body on: the two engines must send the same.
pub fn frame_unknown_length(headers: &mut HeaderMap, body: &impl http_body::Body) {
    if !body.is_end_stream()
        && body.size_hint().exact().is_none()
        && !headers.contains_key(header::CONTENT_LENGTH)
    {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
}

/// Removes every client-address field (a relayed request from an untrusted visitor: the
/// owning edge then names the visitor only).
pub fn strip_client_fields(headers: &mut HeaderMap) {
    remove_matching(headers, |name| {
        matches!(
            fields::request_field(name),
            RequestField::ClientAddress(_)
                | RequestField::ForwardedProto
                | RequestField::ForwardedHost
        )
    });
}

/// Rewrites a local service's response fields for the visitor: hop-by-hop and internal
/// fields out (`keep_upgrade` keeps a protocol switch).
pub fn response_for_visitor(headers: &mut HeaderMap, keep_upgrade: bool) {
    strip_hop_by_hop(headers, keep_upgrade);
    remove_matching(headers, fields::is_internal);
}

/// What a trusted proxy sent about the client, in order.
fn received(headers: &HeaderMap) -> Received<'_> {
    let mut received = Received::default();
    for (name, value) in headers {
        match fields::request_field(name.as_str()) {
            RequestField::ClientAddress(fields::ClientField::XForwardedFor) => {
                received.x_forwarded_for.push(value.as_bytes());
            }
            RequestField::ClientAddress(fields::ClientField::Forwarded) => {
                received.forwarded.push(value.as_bytes());
            }
            RequestField::ClientAddress(fields::ClientField::XRealIp) => {
                received.x_real_ip.get_or_insert(value.as_bytes());
            }
            RequestField::ForwardedProto => {
                received.x_forwarded_proto.get_or_insert(value.as_bytes());
            }
            RequestField::ForwardedHost => {
                received.x_forwarded_host.get_or_insert(value.as_bytes());
            }
            _ => {}
        }
    }
    received
}

fn remove_matching(headers: &mut HeaderMap, matches: impl Fn(&str) -> bool) {
    // Most requests carry none: one pass over the names first.
    if !headers.keys().any(|name| matches(name.as_str())) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| matches(name.as_str()))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1). With `keep_upgrade`, `Upgrade` and
/// `Connection: upgrade` stay, because the switch of protocols must reach the other end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none of them (HTTP/2 never does): one pass over the names, which
    // compares small integers for standard headers, is far cheaper than six hashed removals.
    if !headers.keys().any(is_hop_by_hop) {
        if keep_upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .filter(|name| !(keep_upgrade && name == header::UPGRADE))
            .collect();
        for name in listed {
            headers.remove(name);
        }
        headers.remove(header::CONNECTION);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    headers.remove(header::TE);
    headers.remove(header::TRANSFER_ENCODING);
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// A header that only concerns one connection, whatever `Connection` lists.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::TE
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// HTTP/2 may split `Cookie` into several fields; HTTP/1.1 needs one (RFC 9113 §8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    let cookies: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if cookies.len() < 2 {
        return;
    }
    if let Ok(joined) = HeaderValue::from_str(&cookies.join("; ")) {
        headers.insert(header::COOKIE, joined);
    }
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        headers
    }

    fn forwarding(trusted: bool) -> Forwarding<'static> {
        Forwarding {
            peer: "192.0.2.7".parse().expect("ip"),
            trusted,
            proto: "https",
            request_id: "edge-1",
            host_override: None,
        }
    }

    #[test]
    fn strips_hop_by_hop_and_connection_listed_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("x-keep", "a"),
            ("x-keep", "b"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
        assert_eq!(h.get_all("x-keep").iter().count(), 2);
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_stripped() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "transfer-encoding",
            "upgrade",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("a.example"));
            h.insert(HeaderName::from_static(name), HeaderValue::from_static("x"));
            strip_hop_by_hop(&mut h, false);
            assert_eq!(h.len(), 1, "{name} survived");
        }
    }

    #[test]
    fn keeps_upgrade_when_asked() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn client_address_fields_are_replaced_for_visitors() {
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
            ("x-real-ip", "10.0.0.1"),
            ("x-forwarded-proto", "http"),
            ("warren-relay-visitor", "10.0.0.1"),
            ("x-request-id", "mine"),
        ]);
        request_for_local(&mut h, &forwarding(false), "a.example.net", false);
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert_eq!(
            h["forwarded"],
            "for=192.0.2.7;host=a.example.net;proto=https"
        );
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.example.net");
        assert_eq!(h["x-request-id"], "mine");
        assert!(h.get("warren-relay-visitor").is_none());
    }

    #[test]
    fn client_address_fields_are_extended_for_trusted_proxies() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-forwarded-proto", "https"),
        ]);
        let mut fwd = forwarding(true);
        fwd.host_override = Some("localhost:3000");
        request_for_local(&mut h, &fwd, "a.example.net", false);
        assert_eq!(h["x-forwarded-for"], "203.0.113.1, 10.0.0.2, 192.0.2.7");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["host"], "localhost:3000");
        assert_eq!(h["x-forwarded-host"], "a.example.net");
        assert_eq!(h["x-request-id"], "edge-1");
    }

    #[test]
    fn responses_lose_internal_fields() {
        let mut h = map(&[("warren-relay-moved", "1"), ("set-cookie", "a=1")]);
        response_for_visitor(&mut h, false);
        assert!(h.get("warren-relay-moved").is_none());
        assert_eq!(h["set-cookie"], "a=1");
    }

    #[test]
    fn joins_split_cookies() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(h["cookie"], "a=1; b=2");
    }
}
