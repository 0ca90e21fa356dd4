//! A local service that records every request exactly as it arrived — request line, fields in
//! order with their case, the decoded body and trailer fields — and answers each with a small
//! `200`. Used to compare what both of the edge's HTTP engines send on (`edge/tests/engines.rs`)
//! and to count what reaches a local service (`edge/tests/smuggling.rs`).
//!
//! With [`Leniency::Lenient`] it parses the way permissive servers do — a bare LF ends a line
//! anywhere — so that a request smuggled past the edge would show up here as one more request.

use bytes::{Buf, BytesMut};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, DropGuard};

/// One request as the origin received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    /// Fields in the order they came, with their case.
    pub fields: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    /// `chunked`, `length` or `none`: how the body was framed.
    pub framing: &'static str,
    /// Which upstream connection it came on (0, 1, ...).
    pub connection: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leniency {
    /// Lines end in CRLF; anything else ends the connection.
    Strict,
    /// A bare LF ends a line (in heads, chunk lines and trailers), as permissive servers do.
    Lenient,
}

pub struct RecordingOrigin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
    _stop: DropGuard,
}

impl RecordingOrigin {
    pub async fn start(leniency: Leniency) -> anyhow::Result<RecordingOrigin> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let token = stop.clone();
        let record = seen.clone();
        tokio::spawn(async move {
            let mut connection = 0;
            loop {
                let accepted = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else { continue };
                let record = record.clone();
                let token = token.clone();
                let id = connection;
                connection += 1;
                tokio::spawn(async move {
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = serve(stream, record, leniency, id) => {}
                    }
                });
            }
        });
        Ok(RecordingOrigin {
            addr,
            seen,
            _stop: stop.drop_guard(),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forgets the requests received so far.
    pub fn clear(&self) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

async fn serve(
    mut stream: TcpStream,
    seen: Arc<Mutex<Vec<Recorded>>>,
    leniency: Leniency,
    connection: usize,
) -> anyhow::Result<()> {
    let mut buf = BytesMut::new();
    loop {
        let (method, target, fields) = loop {
            if let Some(head) = take_head(&mut buf, leniency)? {
                break head;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let value = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let chunked = value("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let length: usize = value("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (body, trailers, framing) = if chunked {
            let (body, trailers) = read_chunked(&mut stream, &mut buf, leniency).await?;
            (body, trailers, "chunked")
        } else {
            while buf.len() < length {
                if stream.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
            }
            let framing = if length > 0 { "length" } else { "none" };
            (buf.split_to(length).to_vec(), Vec::new(), framing)
        };
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Recorded {
                method,
                target,
                fields,
                body,
                trailers,
                framing,
                connection,
            });
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await?;
    }
}

type Head = (String, String, Vec<(String, String)>);

/// A whole head from the front of `buf`, if one is there.
fn take_head(buf: &mut BytesMut, leniency: Leniency) -> anyhow::Result<Option<Head>> {
    let lines = match split_lines(buf, leniency) {
        Some((lines, used)) if lines.last().is_some_and(String::is_empty) => {
            buf.advance(used);
            lines
        }
        _ => return Ok(None),
    };
    let mut lines = lines.into_iter();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let fields = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        })
        .collect();
    Ok(Some((method, target, fields)))
}

/// Lines up to and including the first empty one, and how many bytes they took.
fn split_lines(buf: &[u8], leniency: Leniency) -> Option<(Vec<String>, usize)> {
    let mut lines = Vec::new();
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        let lf = rest.iter().position(|&b| b == b'\n')?;
        let line = match (leniency, lf.checked_sub(1).map(|i| rest[i])) {
            (_, Some(b'\r')) => &rest[..lf - 1],
            (Leniency::Lenient, _) => &rest[..lf],
            (Leniency::Strict, _) => return None,
        };
        let text = String::from_utf8_lossy(line).into_owned();
        at += lf + 1;
        let empty = text.is_empty();
        lines.push(text);
        if empty {
            return Some((lines, at));
        }
    }
}

async fn read_chunked(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    leniency: Leniency,
) -> anyhow::Result<(Vec<u8>, Vec<(String, String)>)> {
    let mut body = Vec::new();
    loop {
        let line = loop {
            if let Some(lf) = buf.iter().position(|&b| b == b'\n') {
                let line = buf.split_to(lf + 1);
                let line = String::from_utf8_lossy(&line).into_owned();
                break line.trim_end_matches(['\r', '\n']).to_string();
            }
            anyhow::ensure!(stream.read_buf(buf).await? > 0, "closed in a chunk line");
        };
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)?;
        if size == 0 {
            break;
        }
        while buf.len() < size + 2 {
            anyhow::ensure!(stream.read_buf(buf).await? > 0, "closed in a chunk");
        }
        body.extend_from_slice(&buf[..size]);
        buf.advance(size);
        // CRLF (or, leniently, LF) after the data.
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
        } else if leniency == Leniency::Lenient && buf.starts_with(b"\n") {
            buf.advance(1);
        } else {
            anyhow::bail!("chunk data not followed by CRLF");
        }
    }
    let trailers = loop {
        match split_lines(buf, leniency) {
            Some((lines, used)) => {
                buf.advance(used);
                break lines
                    .into_iter()
                    .filter(|l| !l.is_empty())
                    .filter_map(|l| {
                        l.split_once(':')
                            .map(|(n, v)| (n.to_string(), v.trim().to_string()))
                    })
                    .collect();
            }
            None => anyhow::ensure!(stream.read_buf(buf).await? > 0, "closed in trailers"),
        }
    };
    Ok((body, trailers))
}
