//! Header names as the visitor wrote them, for `GET /headers`.
//!
//! hyper stores header names lower-cased; the original spelling that `preserve_header_case` keeps
//! lives in `hyper::ext::HeaderCaseMap`, which is crate-private. So the origin taps its
//! connections: [`RecordingIo`] copies every byte it reads into a bounded [`HeadLog`], and when
//! hyper dispatches a request, [`HeadLog::take`] finds that request's head in the log (same
//! request line, same headers ignoring name case) and returns its fields in wire order.
//! Every request is taken, whatever its endpoint, so a later request never matches an earlier
//! identical head. Limitation: a request body containing a head with the very same request line
//! and headers as the next request (ignoring name case) is taken for it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use http::request::Parts;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes kept per connection. A head longer than this is not found, and `/headers` falls back to
/// hyper's lower-case names; bodies streaming past keep at most twice this in memory.
const LOG_CAP: usize = 64 * 1024;

/// A header field as written: original name spelling, value without surrounding whitespace.
pub(super) type WireField = (String, String);

/// A header field borrowed from the log: name as written, value trimmed.
type RawField<'a> = (&'a [u8], &'a [u8]);

/// The recent bytes read from one connection.
#[derive(Debug, Default)]
pub(super) struct HeadLog {
    bytes: Mutex<Vec<u8>>,
}

impl HeadLog {
    /// Removes the head of the request described by `parts` (and everything before it) from the
    /// log and returns its fields in wire order, or `None` if it cannot be found.
    pub(super) fn take(&self, parts: &Parts) -> Option<Vec<WireField>> {
        let mut log = self.bytes.lock().expect("head log lock poisoned");
        let (end, fields) = find_head(&log, parts)?;
        log.drain(..end);
        Some(fields)
    }

    fn record(&self, read: &[u8]) {
        let mut log = self.bytes.lock().expect("head log lock poisoned");
        log.extend_from_slice(read);
        // Trim rarely so that a streaming body costs an amortised copy, not one per read.
        if log.len() > 2 * LOG_CAP {
            let excess = log.len() - LOG_CAP;
            log.drain(..excess);
        }
    }
}

/// A connection's I/O that records what it reads into a [`HeadLog`].
#[derive(Debug)]
pub(super) struct RecordingIo<T> {
    inner: T,
    log: Arc<HeadLog>,
}

impl<T> RecordingIo<T> {
    pub(super) fn new(inner: T, log: Arc<HeadLog>) -> Self {
        RecordingIo { inner, log }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for RecordingIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.log.record(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for RecordingIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Finds the first head in `log` with the request line and headers of `parts`; returns the
/// offset just past it and its fields.
fn find_head(log: &[u8], parts: &Parts) -> Option<(usize, Vec<WireField>)> {
    let request_line = format!("{} {} HTTP/1.", parts.method, parts.uri);
    let mut expected: Vec<RawField<'_>> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
        .collect();
    expected.sort_unstable();

    let mut from = 0;
    while let Some(found) = find(&log[from..], request_line.as_bytes()) {
        let start = from + found;
        if let Some((len, fields)) = parse_head(&log[start..])
            && same_headers(&fields, &expected)
        {
            let fields = fields
                .into_iter()
                .map(|(name, value)| (lossy(name), lossy(value)))
                .collect();
            return Some((start + len, fields));
        }
        from = start + 1;
    }
    None
}

/// Splits a complete head (request line, fields, blank line) into its fields; returns the head's
/// length too. `None` if the head is incomplete or a field line is malformed.
fn parse_head(head: &[u8]) -> Option<(usize, Vec<RawField<'_>>)> {
    let mut fields = Vec::new();
    let mut pos = 0;
    let mut first = true;
    loop {
        let line_len = find(&head[pos..], b"\n")?;
        let line = head[pos..pos + line_len]
            .strip_suffix(b"\r")
            .unwrap_or(&head[pos..pos + line_len]);
        pos += line_len + 1;
        if first {
            first = false;
            continue;
        }
        if line.is_empty() {
            return Some((pos, fields));
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
        if name.is_empty() || name.iter().any(u8::is_ascii_whitespace) {
            return None;
        }
        fields.push((name, value));
    }
}

fn same_headers(fields: &[RawField<'_>], expected: &[RawField<'_>]) -> bool {
    if fields.len() != expected.len() {
        return false;
    }
    let mut lowered: Vec<(Vec<u8>, &[u8])> = fields
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), *value))
        .collect();
    lowered.sort_unstable();
    lowered
        .iter()
        .zip(expected)
        .all(|((name, value), (want_name, want_value))| name == want_name && value == want_value)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(head: &str) -> Parts {
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().expect("request line").split(' ');
        let mut builder = http::Request::builder()
            .method(request_line.next().expect("method"))
            .uri(request_line.next().expect("target"));
        for line in lines.take_while(|line| !line.is_empty()) {
            let (name, value) = line.split_once(':').expect("field");
            builder = builder.header(name, value.trim());
        }
        builder.body(()).expect("request").into_parts().0
    }

    #[test]
    fn finds_head_after_body_bytes_and_keeps_case_and_order() {
        let head =
            "GET /headers?a=1 HTTP/1.1\r\nHost: x\r\nX-Foo: 1\r\nx-BAR:  2 \r\nX-Foo: 3\r\n\r\n";
        let log = HeadLog::default();
        log.record(b"tail of a previous body GET /headers?a=1 HTTP/1.0\r\n");
        log.record(head.as_bytes());
        log.record(b"POST /next HTTP/1.1\r\n");
        let fields = log.take(&parts(head)).expect("head found");
        let names: Vec<_> = fields.iter().map(|(n, v)| format!("{n}={v}")).collect();
        assert_eq!(names, ["Host=x", "X-Foo=1", "x-BAR=2", "X-Foo=3"]);
        assert_eq!(*log.bytes.lock().expect("lock"), b"POST /next HTTP/1.1\r\n");
    }

    #[test]
    fn headers_that_differ_do_not_match() {
        let log = HeadLog::default();
        log.record(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            log.take(&parts("GET / HTTP/1.1\r\nHost: y\r\n\r\n"))
                .is_none()
        );
        assert!(
            log.take(&parts("GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\n"))
                .is_none()
        );
    }

    #[test]
    fn log_stays_bounded() {
        let log = HeadLog::default();
        for _ in 0..100 {
            log.record(&[0u8; 10_000]);
        }
        assert!(log.bytes.lock().expect("lock").len() <= 2 * LOG_CAP);
    }
}
