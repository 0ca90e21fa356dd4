//! HTTP/1.1 framing checked on the general path, the way the proxy core checks it: hyper's own
//! parser accepts a bare LF inside a trailer section (it hands trailers to httparse, which
//! takes LF as a line end), which the core refuses. This reader watches the bytes a visitor
//! sends to hyper — request heads, then each body by its length or its chunked coding, decoded
//! with the core's strict decoder and trailer parser — and ends the connection's read side
//! on anything the core would refuse, so both engines refuse the same requests (the general
//! path then answers 400). It never changes a byte; it stops watching after a request that
//! may switch protocols (an upgrade, CONNECT) and on an HTTP/2 connection.

use crate::forwarding::trailers;
use crate::visitor::h1::framing::{ChunkDecoder, Piece};
use bytes::{Buf, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 connection preface (prior knowledge, RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum State {
    /// Reading a request head (its bytes so far in `pending`).
    Head,
    /// A body of this many more bytes.
    Length(u64),
    Chunked(ChunkDecoder),
    /// Not watched any more (HTTP/2, or after a protocol switch).
    Passthrough,
    /// The visitor broke the framing: the connection reads as ended from then on.
    Refused,
}

pub struct StrictH1<S> {
    inner: S,
    state: State,
    /// Bytes of the current head or chunk framing not yet complete.
    pending: BytesMut,
    max_head: usize,
    /// Of the bytes being watched (one read's), how many there are, and where the last head
    /// that ended among them ended: on a refusal, hyper still gets that head (so it can answer
    /// the request with 400), not what followed.
    read_len: usize,
    head_end: Option<usize>,
}

impl<S> StrictH1<S> {
    pub fn new(inner: S, max_head: usize) -> StrictH1<S> {
        StrictH1 {
            inner,
            state: State::Head,
            pending: BytesMut::new(),
            max_head,
            read_len: 0,
            head_end: None,
        }
    }

    /// A reader that watches nothing (connections from other edges, agents, operators).
    pub fn passthrough(inner: S) -> StrictH1<S> {
        StrictH1 {
            inner,
            state: State::Passthrough,
            pending: BytesMut::new(),
            max_head: 0,
            read_len: 0,
            head_end: None,
        }
    }

    /// Follows `bytes` through the framing; an error is framing the core refuses.
    fn watch(&mut self, mut bytes: &[u8]) -> Result<(), &'static str> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Passthrough | State::Refused => return Ok(()),
                State::Length(remaining) => {
                    let take = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    *remaining -= take as u64;
                    bytes = &bytes[take..];
                    if *remaining == 0 {
                        self.state = State::Head;
                    }
                }
                State::Head => {
                    self.pending.extend_from_slice(bytes);
                    bytes = &[];
                    self.head()?;
                    if !matches!(self.state, State::Head) {
                        self.head_end = Some(self.read_len.saturating_sub(self.pending.len()));
                    }
                    // What followed the head belongs to the body.
                    if !matches!(self.state, State::Head) && !self.pending.is_empty() {
                        let rest = self.pending.split();
                        self.watch(&rest)?;
                    }
                }
                State::Chunked(decoder) => {
                    self.pending.extend_from_slice(bytes);
                    bytes = &[];
                    loop {
                        match decoder.decode(&mut self.pending) {
                            Ok(Some(Piece::Data(_))) => {}
                            Ok(Some(Piece::End(section))) => {
                                trailers::parse(&section).map_err(|_| "malformed trailers")?;
                                self.state = State::Head;
                                let rest = self.pending.split();
                                return self.watch(&rest);
                            }
                            Ok(None) => break,
                            Err(_) => return Err("malformed chunked body"),
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Parses the head in `pending`, if it is complete, and moves to its body.
    fn head(&mut self) -> Result<(), &'static str> {
        if self.pending.starts_with(H2_PREFACE)
            || (self.pending.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&self.pending))
        {
            if self.pending.len() >= H2_PREFACE.len() {
                self.state = State::Passthrough;
                self.pending = BytesMut::new();
            }
            return Ok(());
        }
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(&self.pending) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if self.pending.len() <= self.max_head => return Ok(()),
            // hyper answers these itself (400, 431); nothing more to watch.
            _ => {
                self.state = State::Passthrough;
                self.pending = BytesMut::new();
                return Ok(());
            }
        };
        let mut length = None;
        let mut chunked = false;
        let mut switches = req
            .method
            .is_some_and(|m| m.eq_ignore_ascii_case("CONNECT"));
        for field in req.headers.iter() {
            if field.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked |= field
                    .value
                    .split(|&b| b == b',')
                    .any(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if field.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(field.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
            } else if field.name.eq_ignore_ascii_case("upgrade") {
                switches = true;
            }
        }
        self.pending.advance(len);
        self.state = match (chunked, length) {
            _ if switches => State::Passthrough,
            (true, _) => State::Chunked(ChunkDecoder::default()),
            (false, Some(n)) if n > 0 => State::Length(n),
            _ => State::Head,
        };
        if matches!(self.state, State::Passthrough) {
            self.pending = BytesMut::new();
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StrictH1<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if matches!(self.state, State::Refused) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && !matches!(self.state, State::Passthrough)
        {
            let new = buf.filled()[before..].to_vec();
            self.read_len = new.len();
            self.head_end = None;
            if let Err(why) = self.watch(&new) {
                // The bytes of the refused message go no further, and the connection reads as
                // ended: hyper fails the request's body (the visitor gets 400, the request
                // never completes upstream) and still writes that answer, where a read error
                // would have ended the connection unanswered.
                tracing::debug!(why, "request framing refused on the general path");
                buf.set_filled(before + self.head_end.unwrap_or(0));
                self.state = State::Refused;
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StrictH1<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch_all(input: &[u8], step: usize) -> Result<(), &'static str> {
        let mut strict = StrictH1::new((), 64 * 1024);
        for piece in input.chunks(step) {
            strict.watch(piece)?;
        }
        Ok(())
    }

    #[test]
    fn well_framed_requests_pass_at_any_split() {
        let input = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloPOST /b HTTP/1.1\r\nHost: a\r\n\
Transfer-Encoding: chunked\r\nTrailer: x\r\n\r\n5\r\nhello\r\n0\r\nX: 1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for step in 1..input.len() {
            assert_eq!(watch_all(input, step), Ok(()), "step {step}");
        }
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        for bad in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\nGET /s HTTP/1.1\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n folded\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\0\r\n\r\n",
        ] {
            assert!(watch_all(bad, 1).is_err(), "{:?}", String::from_utf8_lossy(bad));
            assert!(watch_all(bad, bad.len()).is_err());
        }
    }

    #[test]
    fn http2_and_upgrades_are_not_watched() {
        let mut h2 = H2_PREFACE.to_vec();
        h2.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0 and then anything \n\r\0");
        assert_eq!(watch_all(&h2, 3), Ok(()));
        let ws = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x05hello\n\0";
        assert_eq!(watch_all(ws, 7), Ok(()));
    }
}
