//! The origin's HTTP endpoints, except `/ws` (see `websocket.rs`). Every body streams: none is
//! held whole in memory, whatever its size.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt as _, stream};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::{Frame, Incoming};
use sha2::{Digest, Sha256};

use super::wire_head::WireField;
use crate::client::{BoxBody, empty, full};
use crate::pattern::{hex, pattern_body, pattern_body_chunked};

/// `GET /hello`.
pub(super) fn hello() -> Response<BoxBody> {
    text(StatusCode::OK, "hello from origin")
}

/// `ANY /echo`: the request body streams back as it arrives. The response has no size hint, so it
/// is sent chunked even when the request had a `Content-Length`.
pub(super) fn echo(req: Request<Incoming>) -> Response<BoxBody> {
    let method = header_value(req.method().as_str());
    let uri = header_value(&req.uri().to_string());
    let data = BodyStream::new(req.into_body()).filter_map(|frame| async move {
        match frame {
            // Trailers are dropped: the echo is of the bytes only.
            Ok(frame) => frame.into_data().ok().map(|data| Ok(Frame::data(data))),
            Err(error) => Some(Err(io::Error::other(error))),
        }
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(data)));
    let headers = response.headers_mut();
    headers.insert("x-echo-method", method);
    headers.insert("x-echo-uri", uri);
    response
}

/// `GET /headers`: the request as received, as JSON. Repeated fields are separate entries. When
/// the head was recovered from the wire (`case_preserved: true`) names are spelled and ordered as
/// sent; otherwise they are hyper's lower-case names, grouped by name in first-seen order.
pub(super) fn headers(req: &Request<Incoming>, wire: Option<Vec<WireField>>) -> Response<BoxBody> {
    let case_preserved = wire.is_some();
    let fields = wire.unwrap_or_else(|| {
        req.headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect()
    });
    let body = serde_json::json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "version": format!("{:?}", req.version()),
        "headers": fields,
        "case_preserved": case_preserved,
    });
    json(&body)
}

/// `GET /bytes/{n}[?chunked=1]`: `n` pattern bytes.
pub(super) fn bytes(req: &Request<Incoming>, len: &str) -> Response<BoxBody> {
    let Ok(len) = len.parse::<u64>() else {
        return text(StatusCode::BAD_REQUEST, "bytes: length must be a number");
    };
    let body = if query(req, "chunked") == Some("1") {
        pattern_body_chunked(len).boxed()
    } else {
        pattern_body(len).boxed()
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// `POST|PUT /upload`: hashes the body as it arrives.
pub(super) async fn upload(req: Request<Incoming>) -> Response<BoxBody> {
    let mut body = req.into_body();
    let mut hasher = Sha256::new();
    let mut count = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("upload: body failed: {error}"),
                );
            }
        };
        if let Some(data) = frame.data_ref() {
            hasher.update(data);
            count += data.len() as u64;
        }
    }
    json(&serde_json::json!({ "bytes": count, "sha256": hex(&hasher.finalize()) }))
}

/// `GET /sse?count=N&interval_ms=M`: N events, M ms apart, each in its own body frame so hyper
/// flushes it before waiting for the next.
pub(super) fn sse(req: &Request<Incoming>) -> Response<BoxBody> {
    let (Some(count), Some(interval)) = (number(req, "count", 1), number(req, "interval_ms", 0))
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "sse: count and interval_ms must be numbers",
        );
    };
    let interval = Duration::from_millis(interval);
    let events = stream::unfold(0u64, move |i| async move {
        if i >= count {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        let event = Bytes::from(format!("id: {i}\ndata: event {i}\n\n"));
        Some((Ok(Frame::data(event)), i + 1))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(events)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /slow?ms=N`.
pub(super) async fn slow(req: &Request<Incoming>) -> Response<BoxBody> {
    let Some(ms) = number(req, "ms", 0) else {
        return text(StatusCode::BAD_REQUEST, "slow: ms must be a number");
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    text(StatusCode::OK, "slow done")
}

/// `GET /status/{code}`: codes 200 to 599; 204, 205 and 304 have no body.
pub(super) fn status(code: &str) -> Response<BoxBody> {
    let status = match code.parse::<u16>().map(StatusCode::from_u16) {
        Ok(Ok(status)) if (200..600).contains(&status.as_u16()) => status,
        _ => return text(StatusCode::BAD_REQUEST, "status: code must be 200 to 599"),
    };
    if matches!(status.as_u16(), 204 | 205 | 304) {
        let mut response = Response::new(empty());
        *response.status_mut() = status;
        return response;
    }
    text(status, &format!("status {status}"))
}

/// `GET /stall?bytes=N`: N pattern bytes, then a chunked body that never ends. The connection
/// task ends when the client goes away or the origin is dropped.
pub(super) fn stall(req: &Request<Incoming>) -> Response<BoxBody> {
    let Some(len) = number(req, "bytes", 0) else {
        return text(StatusCode::BAD_REQUEST, "stall: bytes must be a number");
    };
    let frames = BodyStream::new(pattern_body(len)).chain(stream::pending());
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// A `text/plain` response.
pub(super) fn text(status: StatusCode, body: &str) -> Response<BoxBody> {
    let mut response = Response::new(full(body.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(value: &serde_json::Value) -> Response<BoxBody> {
    let mut response = Response::new(full(value.to_string()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The value of query parameter `name`, undecoded (the origin's parameters are all numbers).
fn query<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// Query parameter `name` as a number, `default` when absent, `None` when not a number.
fn number(req: &Request<Incoming>, name: &str, default: u64) -> Option<u64> {
    query(req, name).map_or(Some(default), |value| value.parse().ok())
}

fn header_value(value: &str) -> HeaderValue {
    // Methods and request targets are visible ASCII once parsed by hyper, so this never falls back.
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
