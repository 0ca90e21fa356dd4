//! The origin: a lean hyper HTTP/1.1 server that every target (direct, Warren, peers) forwards
//! to. It runs as a child process (`warren-loadtest origin`) on one thread, like a one-worker
//! nginx, so its CPU is measured apart from the generator's.
//!
//! - `GET /bytes/N`: N bytes of a fixed pattern, with `Content-Length`, streamed in 1 MiB chunks.
//! - `POST /upload`: consumes the body, answers `BYTES SUM` (a byte sum as checksum).
//! - `GET /sse?n=K`: K Server-Sent Events, chunked.
//! - `GET /ws`: WebSocket echo.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

const CHUNK: usize = 1 << 20;

/// The payload pattern: byte i is `i % 251`, so a checksum of any prefix is predictable.
pub fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// The checksum the upload sink answers: the sum of all bytes.
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().map(|&b| u64::from(b)).sum()
}

/// Runs the origin on `listener` forever (one thread).
pub async fn serve(listener: TcpListener) -> anyhow::Result<()> {
    // 1 MiB is a multiple of 251 plus a remainder, so chunks restart the pattern at 0 each MiB;
    // the upload check uses the same chunking on the sending side.
    let chunk = pattern(CHUNK);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("origin: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let chunk = chunk.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, chunk.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

type Reply = Response<BoxBody<Bytes, Infallible>>;

async fn handle(req: Request<Incoming>, chunk: Bytes) -> Result<Reply, Infallible> {
    let path = req.uri().path().to_string();
    let reply = if let Some(n) = path.strip_prefix("/bytes/") {
        match n.parse::<u64>() {
            Ok(len) => ok(Repeat {
                chunk,
                remaining: len,
            }
            .boxed()),
            Err(_) => status(StatusCode::BAD_REQUEST),
        }
    } else if path == "/upload" {
        upload(req).await
    } else if path == "/sse" {
        let n = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("n="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(10);
        let mut r = ok(Sse { next: 0, count: n }.boxed());
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        r
    } else if path == "/ws" {
        websocket(req)
    } else {
        status(StatusCode::NOT_FOUND)
    };
    Ok(reply)
}

fn ok(body: BoxBody<Bytes, Infallible>) -> Reply {
    Response::new(body)
}

fn status(code: StatusCode) -> Reply {
    let mut r = Response::new(http_body_util::Full::new(Bytes::new()).boxed());
    *r.status_mut() = code;
    r
}

async fn upload(req: Request<Incoming>) -> Reply {
    let mut body = req.into_body();
    let (mut bytes, mut sum) = (0u64, 0u64);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    bytes += data.len() as u64;
                    sum += checksum(data);
                }
            }
            Err(_) => return status(StatusCode::BAD_REQUEST),
        }
    }
    ok(http_body_util::Full::new(Bytes::from(format!("{bytes} {sum}"))).boxed())
}

fn websocket(req: Request<Incoming>) -> Reply {
    let Some(key) = req.headers().get("sec-websocket-key") else {
        return status(StatusCode::BAD_REQUEST);
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_binary() || msg.is_text()) && ws.send(msg).await.is_err() {
                return;
            }
        }
    });
    let mut r = status(StatusCode::SWITCHING_PROTOCOLS);
    let h = r.headers_mut();
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    r
}

/// N bytes of the pattern as 1 MiB chunks that share one buffer.
struct Repeat {
    chunk: Bytes,
    remaining: u64,
}

impl Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// `count` events, one per frame, without delay.
struct Sse {
    next: u64,
    count: u64,
}

impl Body for Sse {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.next == self.count {
            return Poll::Ready(None);
        }
        self.next += 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(format!(
            "id: {}\ndata: event {}\n\n",
            self.next, self.next
        ))))))
    }
}

/// The body length of `GET /sse?n=K`.
pub fn sse_len(n: u64) -> u64 {
    (1..=n)
        .map(|i| format!("id: {i}\ndata: event {i}\n\n").len() as u64)
        .sum()
}
