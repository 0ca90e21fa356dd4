//! Who the client is, as the local service is told: `X-Forwarded-For`, `Forwarded` (RFC 7239)
//! and `X-Real-IP`, with `X-Forwarded-Proto` and `X-Forwarded-Host`.
//!
//! By default the edge *replaces* whatever a visitor sent in these fields with the address it
//! saw itself: anyone can write `X-Forwarded-For: 10.0.0.1`, and a local service that trusts
//! the first entry would believe it. Only a peer in a `--trusted-proxy` range (a load
//! balancer or TLS terminator in front of the edge) has its fields kept and extended.
//! With `--proxy-protocol`, the address the edge saw is the one the PROXY header carried.

use bytes::{BufMut, BytesMut};
use std::net::IpAddr;

/// A `--trusted-proxy` entry that is not an address range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--trusted-proxy {0:?} is not an address range: use e.g. 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32"
)]
pub struct BadRange(pub String);

/// Ranges (CIDR) of peers whose client-address fields are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    ranges: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address; the error names the entry.
    pub fn parse(list: &[String]) -> Result<TrustedProxies, BadRange> {
        let mut ranges = Vec::with_capacity(list.len());
        for entry in list {
            ranges.push(parse_cidr(entry).ok_or_else(|| BadRange(entry.clone()))?);
        }
        Ok(TrustedProxies { ranges })
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.ranges
            .iter()
            .any(|&(net, bits)| in_range(ip, net, bits))
    }
}

fn parse_cidr(entry: &str) -> Option<(IpAddr, u8)> {
    let entry = entry.trim();
    let (addr, bits) = match entry.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (entry, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let addr = canonical(addr);
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(bits) => bits.parse::<u8>().ok().filter(|&b| b <= max)?,
        None => max,
    };
    Some((addr, bits))
}

/// IPv4-mapped IPv6 addresses as IPv4 (a dual-stack listener reports IPv4 clients so).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn in_range(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// What a trusted proxy said about the client, gathered from the visitor's fields in order.
#[derive(Debug, Default)]
pub struct Received<'a> {
    /// How the visitor spelled each of the five names, in [`ClientFields::pairs`] order (the
    /// first occurrence): the edge's fields keep that spelling, as hyper's header maps do.
    pub names: [Option<&'a [u8]>; 5],
    pub x_forwarded_for: Vec<&'a [u8]>,
    pub forwarded: Vec<&'a [u8]>,
    pub x_real_ip: Option<&'a [u8]>,
    pub x_forwarded_proto: Option<&'a [u8]>,
    pub x_forwarded_host: Option<&'a [u8]>,
}

/// The client-address fields the local service gets, in the order both engines write them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFields {
    pub x_forwarded_for: Vec<u8>,
    pub x_forwarded_proto: Vec<u8>,
    pub x_forwarded_host: Vec<u8>,
    pub x_real_ip: Vec<u8>,
    pub forwarded: Vec<u8>,
}

impl ClientFields {
    /// The fields for a request from `peer` over `proto` to `host`; `received` (only from a
    /// trusted proxy) is kept and extended.
    pub fn new(
        peer: IpAddr,
        proto: &str,
        host: &[u8],
        received: Option<&Received<'_>>,
    ) -> ClientFields {
        let peer = canonical(peer);
        let mut peer_text = BytesMut::with_capacity(15);
        put_ip(&mut peer_text, peer);
        let mut element = Vec::with_capacity(48);
        element.extend_from_slice(b"for=");
        match peer {
            IpAddr::V4(_) => element.extend_from_slice(&peer_text),
            IpAddr::V6(_) => {
                element.extend_from_slice(b"\"[");
                element.extend_from_slice(&peer_text);
                element.extend_from_slice(b"]\"");
            }
        }
        element.extend_from_slice(b";host=");
        put_token_or_quoted(&mut element, host);
        element.extend_from_slice(b";proto=");
        element.extend_from_slice(proto.as_bytes());
        let empty = Received::default();
        let received = received.unwrap_or(&empty);
        ClientFields {
            x_forwarded_for: joined(&received.x_forwarded_for, &peer_text),
            forwarded: joined(&received.forwarded, &element),
            x_real_ip: trimmed(received.x_real_ip).unwrap_or(&peer_text).to_vec(),
            x_forwarded_proto: trimmed(received.x_forwarded_proto)
                .unwrap_or(proto.as_bytes())
                .to_vec(),
            x_forwarded_host: trimmed(received.x_forwarded_host).unwrap_or(host).to_vec(),
        }
    }

    /// The fields as `(name, value)`, in order. Names are written lowercase by both engines
    /// (hyper's header maps hold lowercase names; HTTP gives case no meaning).
    pub fn pairs(&self) -> [(&'static str, &[u8]); 5] {
        [
            ("x-forwarded-for", &self.x_forwarded_for),
            ("x-forwarded-proto", &self.x_forwarded_proto),
            ("x-forwarded-host", &self.x_forwarded_host),
            ("x-real-ip", &self.x_real_ip),
            ("forwarded", &self.forwarded),
        ]
    }

    /// Writes the fields as header lines, each name as `spelled` (the visitor's spelling of
    /// it, if it sent one) or lowercase.
    pub fn write(&self, out: &mut BytesMut, spelled: &[Option<&[u8]>; 5]) {
        for ((name, value), spelling) in self.pairs().into_iter().zip(spelled) {
            out.put_slice(spelling.unwrap_or(name.as_bytes()));
            out.put_slice(b": ");
            out.put_slice(value);
            out.put_slice(b"\r\n");
        }
    }
}

/// `received` values (non-empty ones, trimmed) then `last`, joined with `, `.
fn joined(received: &[&[u8]], last: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(last.len() + 16 * received.len());
    for value in received.iter().filter_map(|v| trimmed(Some(v))) {
        out.extend_from_slice(value);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(last);
    out
}

fn trimmed(value: Option<&[u8]>) -> Option<&[u8]> {
    let value = value?;
    let start = value.iter().position(|&b| b != b' ' && b != b'\t')?;
    let end = value.iter().rposition(|&b| b != b' ' && b != b'\t')? + 1;
    Some(&value[start..end])
}

/// A `Forwarded` parameter value: as a token when it is one, else a quoted string.
fn put_token_or_quoted(out: &mut Vec<u8>, value: &[u8]) {
    if super::fields::is_token(value) {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    for &b in value {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// `ip` as text (IPv4 without the formatting machinery, which cost more than the rest of the
/// header rewrite).
pub fn put_ip(out: &mut BytesMut, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.put_u8(b'.');
                }
                if octet >= 100 {
                    out.put_u8(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.put_u8(b'0' + octet / 10 % 10);
                }
                out.put_u8(b'0' + octet % 10);
            }
        }
        IpAddr::V6(_) => out.put_slice(ip.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn ranges_parse_and_match() {
        let trusted = TrustedProxies::parse(&[
            "10.0.0.0/8".into(),
            "192.0.2.7".into(),
            "2001:db8::/32".into(),
        ])
        .expect("valid");
        for yes in [
            "10.1.2.3",
            "192.0.2.7",
            "2001:db8:ffff::1",
            "::ffff:10.9.9.9",
        ] {
            assert!(trusted.trusts(ip(yes)), "{yes}");
        }
        for no in ["11.0.0.1", "192.0.2.8", "2001:db9::1", "127.0.0.1"] {
            assert!(!trusted.trusts(ip(no)), "{no}");
        }
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/x", "::/129"] {
            assert!(TrustedProxies::parse(&[bad.into()]).is_err(), "{bad}");
        }
        let all = TrustedProxies::parse(&["0.0.0.0/0".into()]).expect("valid");
        assert!(all.trusts(ip("203.0.113.9")));
    }

    #[test]
    fn untrusted_fields_name_the_peer_only() {
        let fields = ClientFields::new(ip("192.0.2.7"), "https", b"demo.example.net", None);
        assert_eq!(fields.x_forwarded_for, b"192.0.2.7");
        assert_eq!(fields.x_real_ip, b"192.0.2.7");
        assert_eq!(fields.x_forwarded_proto, b"https");
        assert_eq!(fields.x_forwarded_host, b"demo.example.net");
        assert_eq!(
            fields.forwarded,
            b"for=192.0.2.7;host=demo.example.net;proto=https"
        );
    }

    #[test]
    fn trusted_fields_are_extended() {
        let received = Received {
            x_forwarded_for: vec![b"203.0.113.1", b" 10.0.0.2 ", b""],
            forwarded: vec![b"for=203.0.113.1"],
            x_real_ip: Some(b"203.0.113.1"),
            x_forwarded_proto: Some(b"https"),
            x_forwarded_host: None,
            ..Received::default()
        };
        let fields = ClientFields::new(ip("::1"), "http", b"a.localhost:8080", Some(&received));
        assert_eq!(fields.x_forwarded_for, b"203.0.113.1, 10.0.0.2, ::1");
        assert_eq!(fields.x_real_ip, b"203.0.113.1");
        assert_eq!(fields.x_forwarded_proto, b"https");
        assert_eq!(fields.x_forwarded_host, b"a.localhost:8080");
        assert_eq!(
            fields.forwarded,
            b"for=203.0.113.1, for=\"[::1]\";host=\"a.localhost:8080\";proto=http"
        );
    }

    #[test]
    fn ipv4_text_matches_display() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "100.99.9.255",
            "255.255.255.255",
            "::1",
        ] {
            let mut out = BytesMut::new();
            put_ip(&mut out, ip(text));
            assert_eq!(&out[..], text.as_bytes());
        }
    }
}
