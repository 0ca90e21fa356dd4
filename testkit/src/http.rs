//! Helpers for end-to-end HTTP tests through a tunnel: a whole edge + agent + origin in one call,
//! HTTP/1.x spoken byte by byte (responses parsed by hand, so framing mistakes show), HTTP/2
//! prior knowledge, an origin that answers with scripted bytes, and the process's memory.
//!
//! # Layout
//! - [`Tunnel`]: an origin, an edge and an agent serving `NAME.localhost`.
//! - [`RawConnection`], [`parse_response`]: HTTP/1.x over a plain socket.
//! - [`h2_connect`]: an HTTP/2 prior-knowledge client connection.
//! - [`ScriptedOrigin`]: a local service whose responses are raw bytes chosen by the test.
//! - [`Memory`]: resident set size and its peak, from `/proc/self/status`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt as _;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, DropGuard};
use warren_edge::EdgeConfig;

use crate::client::{self, BoxBody};
use crate::cluster::{DEADLINE, TestAgent, TestEdge};
use crate::origin::Origin;

/// An origin, an edge and an agent whose tunnel `host` leads to the origin.
pub struct Tunnel {
    pub origin: Origin,
    pub edge: TestEdge,
    pub agent: TestAgent,
    /// `NAME.localhost`: the `Host` visitors send.
    pub host: String,
}

impl Tunnel {
    /// Everything with the test defaults, the tunnel named `name`.
    pub async fn start(name: &str) -> anyhow::Result<Tunnel> {
        Tunnel::start_with(TestEdge::config(), name).await
    }

    /// Like [`Tunnel::start`] with an edge configured by `config`.
    pub async fn start_with(config: EdgeConfig, name: &str) -> anyhow::Result<Tunnel> {
        crate::cluster::init_logging();
        let origin = Origin::start().await?;
        let edge = TestEdge::start_with(config).await?;
        let agent = TestAgent::start(&edge, origin.port(), Some(name)).await?;
        let host = agent.hostname.clone();
        Ok(Tunnel {
            origin,
            edge,
            agent,
            host,
        })
    }

    /// The edge's visitor address.
    pub fn addr(&self) -> SocketAddr {
        self.edge.addr
    }

    /// A request builder for `method path` with this tunnel's `Host`.
    pub fn request(&self, method: &str, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.host.as_str())
    }

    /// Sends `req` on a fresh visitor connection and collects the whole response.
    pub async fn send(&self, req: Request<BoxBody>) -> anyhow::Result<Collected> {
        let response = client::request(self.addr(), req).await?;
        Collected::read(response).await
    }

    /// `GET path` on a fresh visitor connection, collected.
    pub async fn get(&self, path: &str) -> anyhow::Result<Collected> {
        let req = self
            .request("GET", path)
            .body(client::empty())
            .context("build GET")?;
        self.send(req).await
    }
}

/// A response read to its end.
#[derive(Debug)]
pub struct Collected {
    pub status: StatusCode,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Collected {
    /// Reads `response`'s body to the end (small bodies only).
    pub async fn read<B>(response: http::Response<B>) -> anyhow::Result<Collected>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = response.into_parts();
        let body = body.collect().await.context("read body")?.to_bytes();
        Ok(Collected {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "body is not JSON: {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// The `[name, value]` pairs of an origin `/headers` JSON body, in the order it reports them.
pub fn header_fields(body: &serde_json::Value) -> Vec<(String, String)> {
    body["headers"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .map(|f| {
                    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                    (text(&f[0]), text(&f[1]))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Lower-case hex SHA-256 of `bytes` (compare with [`crate::pattern::pattern_sha256`]).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    crate::pattern::hex(&sha2::Sha256::digest(bytes))
}

/// Values of the fields named `name` (case-insensitively) among `fields`, in order.
pub fn values_of<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// One HTTP/1.x response as it came off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    pub status: u16,
    /// Header fields with names as sent, in order.
    pub headers: Vec<(String, String)>,
    /// The body with any chunked framing removed.
    pub body: Vec<u8>,
    /// Whether the body was sent chunked.
    pub chunked: bool,
}

impl RawResponse {
    /// Values of the fields named `name`, case-insensitively, in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        values_of(&self.headers, name)
    }

    /// The first value of `name`, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.values(name).into_iter().next()
    }
}

/// Parses the response at the start of `buf`. `head_request` says whether it answers a HEAD
/// (no body whatever the headers say); `eof` whether the peer has closed (which ends a body
/// without framing). `Ok(None)` means more bytes are needed; on success returns the response and
/// the number of bytes it took.
pub fn parse_response(
    buf: &[u8],
    head_request: bool,
    eof: bool,
) -> anyhow::Result<Option<(RawResponse, usize)>> {
    let Some(head_len) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        if eof && !buf.is_empty() {
            bail!("connection closed inside a response head: {:?}", lossy(buf));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_len - 4]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_string();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    if !version.starts_with("HTTP/1.") {
        bail!("bad status line {status_line:?}");
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("bad header line {line:?}"))?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut response = RawResponse {
        version,
        status,
        headers,
        body: Vec::new(),
        chunked: false,
    };
    let rest = &buf[head_len..];
    let bodiless = head_request || status < 200 || status == 204 || status == 304;
    if bodiless {
        return Ok(Some((response, head_len)));
    }
    let chunked = response
        .values("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        response.chunked = true;
        return Ok(dechunk(rest)?.map(|(body, used)| {
            response.body = body;
            (response, head_len + used)
        }));
    }
    if let Some(len) = response.header("content-length") {
        let len: usize = len.parse().context("bad Content-Length")?;
        if rest.len() < len {
            if eof {
                bail!("connection closed after {} of {len} body bytes", rest.len());
            }
            return Ok(None);
        }
        response.body = rest[..len].to_vec();
        return Ok(Some((response, head_len + len)));
    }
    // Neither: the body runs until the connection closes.
    if !eof {
        return Ok(None);
    }
    response.body = rest.to_vec();
    Ok(Some((response, buf.len())))
}

/// Parses every response in `raw` (a whole exchange read to EOF); `head_requests[i]` says
/// whether response `i` answers a HEAD. Interim (1xx) responses are returned too.
pub fn parse_all(raw: &[u8], head_requests: &[bool]) -> anyhow::Result<Vec<RawResponse>> {
    let mut responses = Vec::new();
    let mut rest = raw;
    let mut final_index = 0;
    while !rest.is_empty() {
        let head = head_requests.get(final_index).copied().unwrap_or(false);
        let (response, used) = parse_response(rest, head, true)?
            .context("incomplete response at the end of the exchange")?;
        if response.status >= 200 {
            final_index += 1;
        }
        responses.push(response);
        rest = &rest[used..];
    }
    Ok(responses)
}

/// A plain TCP connection speaking HTTP/1.x byte by byte.
pub struct RawConnection {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl RawConnection {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<RawConnection> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true).context("set TCP_NODELAY")?;
        Ok(RawConnection {
            stream,
            buf: Vec::new(),
            eof: false,
        })
    }

    /// Writes `bytes` as they are.
    pub async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await.context("write request")
    }

    /// Reads the next response, within [`DEADLINE`].
    pub async fn response(&mut self, head_request: bool) -> anyhow::Result<RawResponse> {
        tokio::time::timeout(DEADLINE, self.next_response(head_request))
            .await
            .context("no complete response within the deadline")?
    }

    /// Whether the server closed the connection, waiting at most `wait` for it to do so.
    /// Any bytes that arrive instead are kept for the next [`RawConnection::response`].
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let read = async {
            while !self.eof {
                if self.fill().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(wait, read).await;
        self.eof
    }

    async fn next_response(&mut self, head_request: bool) -> anyhow::Result<RawResponse> {
        loop {
            if let Some((response, used)) = parse_response(&self.buf, head_request, self.eof)? {
                self.buf.drain(..used);
                return Ok(response);
            }
            if self.eof {
                bail!("the server closed the connection before a response");
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await.context("read")?;
        if n == 0 {
            self.eof = true;
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// An HTTP/2 prior-knowledge client connection to `addr`. Requests need an absolute URI
/// (`http://NAME.localhost/path`), whose authority becomes `:authority`.
pub async fn h2_connect(addr: SocketAddr) -> anyhow::Result<http2::SendRequest<BoxBody>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true).context("set TCP_NODELAY")?;
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .context("HTTP/2 handshake")?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "HTTP/2 client connection ended with an error");
        }
    });
    Ok(sender)
}

/// A request as the scripted origin saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

type Script = dyn Fn(&SeenRequest) -> Vec<u8> + Send + Sync;

/// A local service that answers every request with the bytes its script returns. Requests may
/// carry a `Content-Length` body (skipped), not a chunked one. Connections stay open for further
/// requests until the client closes them, or a response says `Connection: close`.
pub struct ScriptedOrigin {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    _stop: DropGuard,
}

impl ScriptedOrigin {
    pub async fn start(
        script: impl Fn(&SeenRequest) -> Vec<u8> + Send + Sync + 'static,
    ) -> anyhow::Result<ScriptedOrigin> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("bind scripted origin")?;
        let addr = listener.local_addr().context("scripted origin address")?;
        let stop = CancellationToken::new();
        let accepted = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let token = stop.clone();
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let script = Arc::clone(&script);
                let token = token.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = token.cancelled() => {}
                        result = serve_scripted(stream, script) => if let Err(error) = result {
                            tracing::debug!(%error, "scripted origin connection failed");
                        },
                    }
                });
            }
        });
        Ok(ScriptedOrigin {
            addr,
            accepted,
            _stop: stop.drop_guard(),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn connections_accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn serve_scripted(mut stream: TcpStream, script: Arc<Script>) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    loop {
        let head_len = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_len - 4]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let seen = SeenRequest {
            method: request_line.next().unwrap_or_default().to_string(),
            target: request_line.next().unwrap_or_default().to_string(),
            headers: lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.to_string(), v.trim().to_string()))
                .collect(),
        };
        let body_len: usize = values_of(&seen.headers, "content-length")
            .first()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_len + body_len {
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..head_len + body_len);
        let response = script(&seen);
        stream.write_all(&response).await?;
        if closes(&response) {
            return Ok(());
        }
    }
}

/// Whether a scripted response's head says `Connection: close`.
fn closes(response: &[u8]) -> bool {
    let head_end = find(response, b"\r\n\r\n").unwrap_or(response.len());
    String::from_utf8_lossy(&response[..head_end])
        .to_ascii_lowercase()
        .split("\r\n")
        .any(|line| line.starts_with("connection:") && line.contains("close"))
}

/// The process's resident memory, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident since start or the last [`Memory::reset_peak`] (`VmHWM`).
    pub peak_kib: u64,
}

impl Memory {
    /// Reads `/proc/self/status`.
    pub fn now() -> anyhow::Result<Memory> {
        let status =
            std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
        let field = |name: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("no {name} in /proc/self/status"))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            peak_kib: field("VmHWM:")?,
        })
    }

    /// Resets the peak to the current resident size (Linux `clear_refs` 5). Returns whether the
    /// kernel allowed it; if not, the peak keeps counting from process start.
    pub fn reset_peak() -> bool {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }
}

/// Decodes a chunked body at the start of `buf`: `None` if incomplete, else the body and the
/// bytes used (trailers included).
fn dechunk(buf: &[u8]) -> anyhow::Result<Option<(Vec<u8>, usize)>> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_end) = find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[at..at + line_end]).context("chunk size line")?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {line:?}"))?;
        at += line_end + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let Some(end) = find(&buf[at..], b"\r\n") else {
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            bail!("chunk of {size} bytes not followed by CRLF");
        }
        at += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_chunked_and_head_responses_in_sequence() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc\
HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n\
HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n4;x=1\r\n you\r\n0\r\nT: 1\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n";
        let responses = parse_all(raw, &[false, true, false, false]).expect("parse");
        assert_eq!(responses.len(), 4);
        assert_eq!(responses[0].body, b"abc");
        assert!(responses[1].body.is_empty());
        assert_eq!(responses[2].status, 201);
        assert!(responses[2].chunked);
        assert_eq!(responses[2].body, b"hi you");
        assert_eq!(responses[3].status, 204);
    }

    #[test]
    fn incomplete_and_close_delimited_bodies() {
        let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab";
        assert!(
            parse_response(partial, false, false)
                .expect("parse")
                .is_none()
        );
        assert!(parse_response(partial, false, true).is_err());
        let close = b"HTTP/1.0 200 OK\r\n\r\nuntil close";
        assert!(
            parse_response(close, false, false)
                .expect("parse")
                .is_none()
        );
        let (response, used) = parse_response(close, false, true)
            .expect("parse")
            .expect("complete");
        assert_eq!(
            (response.body.as_slice(), used),
            (&b"until close"[..], close.len())
        );
    }
}
