//! The PROXY protocol header (v1 text or v2 binary, HAProxy's specification) that an L4 load
//! balancer in front of the edge sends first on every connection (`--proxy-protocol`): the
//! client's real address, which the edge then uses everywhere it would have used the peer's
//! (per-address caps, `X-Forwarded-For`, logs).
//!
//! Read with a size cap and under the handshake timeout; a connection whose first bytes are
//! not a valid header is closed. A `LOCAL` header (the balancer's own health check) keeps
//! the peer's address. Bytes read past the header are handed on (`rewind.rs`). Parsing is
//! `proxy-header`'s, fuzzed by its authors and by ours (`edge/fuzz`).

use bytes::{Bytes, BytesMut};
use proxy_header::{ParseConfig, ProxyHeader};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt as _};

/// Longest header read: v1 is at most 107 bytes; v2 carries TLVs, kept within this.
pub const MAX_HEADER: usize = 4096;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("the connection closed before a whole PROXY header")]
    Closed,
    #[error("the PROXY header is invalid: {0}")]
    Invalid(String),
    #[error("the PROXY header is over {MAX_HEADER} bytes")]
    TooLarge,
    #[error("reading the PROXY header failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the header: the client's address (the peer's for `LOCAL`) and whatever was read
/// after the header.
pub async fn read<S: AsyncRead + Unpin>(
    io: &mut S,
    peer: SocketAddr,
) -> Result<(SocketAddr, Bytes), ProxyHeaderError> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        match ProxyHeader::parse(&buf, config()) {
            Ok((header, len)) => {
                let client = header.proxied_address().map_or(peer, |a| a.source);
                let rest = buf.split_off(len).freeze();
                return Ok((client, rest));
            }
            Err(proxy_header::Error::BufferTooShort) => {}
            Err(e) => return Err(ProxyHeaderError::Invalid(e.to_string())),
        }
        if buf.len() >= MAX_HEADER {
            return Err(ProxyHeaderError::TooLarge);
        }
        buf.reserve(MAX_HEADER - buf.len());
        if io.read_buf(&mut buf).await? == 0 {
            return Err(ProxyHeaderError::Closed);
        }
    }
}

fn config() -> ParseConfig {
    ParseConfig {
        include_tlvs: false,
        allow_v1: true,
        allow_v2: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_header::ProxiedAddress;
    use tokio::io::AsyncWriteExt as _;

    fn peer() -> SocketAddr {
        "10.0.0.9:40000".parse().expect("addr")
    }

    async fn read_from(bytes: &[u8]) -> Result<(SocketAddr, Bytes), ProxyHeaderError> {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        a.write_all(bytes).await.expect("write");
        drop(a);
        read(&mut b, peer()).await
    }

    #[tokio::test]
    async fn v1_and_v2_headers_name_the_client() {
        let (client, rest) = read_from(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET /")
            .await
            .expect("v1");
        assert_eq!(
            client,
            "203.0.113.7:51234".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(&rest[..], b"GET /");

        let header = ProxyHeader::with_address(ProxiedAddress::stream(
            "[2001:db8::7]:6000".parse().expect("addr"),
            "[2001:db8::1]:443".parse().expect("addr"),
        ));
        let mut v2 = Vec::new();
        header.encode_v2(&mut v2).expect("encode");
        v2.extend_from_slice(b"\x16\x03\x01");
        let (client, rest) = read_from(&v2).await.expect("v2");
        assert_eq!(
            client,
            "[2001:db8::7]:6000".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(&rest[..], b"\x16\x03\x01");

        let mut local = Vec::new();
        ProxyHeader::with_local()
            .encode_v2(&mut local)
            .expect("encode");
        let (client, _) = read_from(&local).await.expect("local");
        assert_eq!(client, peer(), "LOCAL keeps the peer");
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        assert!(matches!(
            read_from(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await,
            Err(ProxyHeaderError::Invalid(_))
        ));
        assert!(matches!(
            read_from(b"PROXY TCP4 999.0.0.1 10.0.0.1 1 2\r\n").await,
            Err(ProxyHeaderError::Invalid(_))
        ));
        assert!(matches!(
            read_from(b"PROXY TCP4 203.0.113.7").await,
            Err(ProxyHeaderError::Closed)
        ));
        let mut huge = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff".to_vec();
        huge.extend(std::iter::repeat_n(0u8, 8000));
        assert!(read_from(&huge).await.is_err());
    }
}
