//! A lean HTTP/1.1 client on a raw `TcpStream`: it writes a prebuilt request and parses only
//! what it needs (status, `Content-Length` or chunked framing, `Connection: close`), discarding
//! the body in place, so the generator spends little CPU next to the system under test.

use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the client learned about one response.
#[derive(Debug, Clone, Copy)]
pub struct Response {
    pub status: u16,
    pub body_bytes: u64,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// A request head, built once and written as is.
pub fn request(method: &str, path: &str, host: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: warren-loadtest\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// One client connection with its receive buffer.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The start of the last body, if the caller asked to keep it (small bodies only).
    pub kept: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: std::net::SocketAddr, buf_size: usize) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: vec![0; buf_size],
            start: 0,
            end: 0,
            kept: Vec::new(),
        })
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads more bytes into the buffer (compacting it first); `Ok(0)` is EOF.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Err(io::Error::other("response head larger than the buffer"));
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Reads one response; with `keep` the first 4 KiB of the body are kept in [`Conn::kept`].
    pub async fn read_response(&mut self, keep: bool) -> io::Result<Response> {
        self.kept.clear();
        let (status, length, chunked, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.buf[self.start..self.end]) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = head_info(&parsed);
                    self.start += n;
                    break head;
                }
                Ok(httparse::Status::Partial) => {
                    if self.fill().await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        };
        let body_bytes = if chunked {
            self.read_chunked(keep).await?
        } else if let Some(n) = length {
            self.skip(n, keep).await?;
            n
        } else if status == 204 || status == 304 || status == 101 {
            0
        } else {
            self.read_to_eof(keep).await?
        };
        Ok(Response {
            status,
            body_bytes,
            close: close || (length.is_none() && !chunked && status != 204 && status != 304),
        })
    }

    fn take(&mut self, max: u64, keep: bool) -> u64 {
        let n = (self.end - self.start).min(usize::try_from(max).unwrap_or(usize::MAX));
        if keep && self.kept.len() < 4096 {
            let k = n.min(4096 - self.kept.len());
            self.kept
                .extend_from_slice(&self.buf[self.start..self.start + k]);
        }
        self.start += n;
        n as u64
    }

    async fn skip(&mut self, mut remaining: u64, keep: bool) -> io::Result<()> {
        while remaining > 0 {
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                if self.fill().await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            remaining -= self.take(remaining, keep);
        }
        Ok(())
    }

    async fn read_to_eof(&mut self, keep: bool) -> io::Result<u64> {
        let mut total = self.take(u64::MAX, keep);
        loop {
            self.start = 0;
            self.end = 0;
            if self.fill().await? == 0 {
                return Ok(total);
            }
            total += self.take(u64::MAX, keep);
        }
    }

    /// Reads a line ending in CRLF from the buffer; returns it without the CRLF.
    async fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            let window = &self.buf[self.start..self.end];
            if let Some(i) = window.windows(2).position(|w| w == b"\r\n") {
                let line = window[..i].to_vec();
                self.start += i + 2;
                return Ok(line);
            }
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    async fn read_chunked(&mut self, keep: bool) -> io::Result<u64> {
        let mut total = 0;
        loop {
            let line = self.line().await?;
            let hex = line.split(|&b| b == b';').next().unwrap_or(&[]);
            let size = std::str::from_utf8(hex)
                .ok()
                .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !self.line().await?.is_empty() {}
                return Ok(total);
            }
            self.skip(size, keep).await?;
            total += size;
            if !self.line().await?.is_empty() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad chunk end"));
            }
        }
    }
}

/// (status, content-length, chunked, connection: close)
fn head_info(parsed: &httparse::Response<'_, '_>) -> (u16, Option<u64>, bool, bool) {
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h.value.eq_ignore_ascii_case(b"chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        }
    }
    (parsed.code.unwrap_or(0), length, chunked, close)
}
