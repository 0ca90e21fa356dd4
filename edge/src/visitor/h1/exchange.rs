//! One visitor request through a tunnel stream, and its response back.
//!
//! The head goes first; the request body follows at the visitor's pace while the response
//! head is awaited (a local service may answer before it has read the body): `checkout.rs`.
//! The response body streams to the visitor as it arrives (`response_body.rs`), with flow
//! control on the stream holding the local service back when the visitor reads slowly; a
//! body still coming up meanwhile goes on beside it (`request_body.rs`). A stream whose
//! exchange ended cleanly goes back to the tunnel's pool for the next request.

use crate::error::EdgeError;
use crate::forwarding::error_page;
use crate::forwarding::trailers::Declared;
use crate::visitor::h1::checkout::{HeadOutcome, UpstreamFailure, exchange_head};
use crate::visitor::h1::framing::BodyKind;
use crate::visitor::h1::head;
use crate::visitor::h1::request_body::{Upload, UploadError};
use crate::visitor::h1::response_body::{
    Interrupted, Unread, VisitorWriteHalf, WatchedVisitor, send_body, write_all,
};
use crate::visitor::h1::{Next, Prepared, Visitor};
use bytes::{Buf, BytesMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use warren_proto::ResetCode;
use warren_session::Stream;

/// How long a closing connection keeps reading what the visitor still sends, so that its
/// unread bytes do not turn the close into a reset that destroys the response.
const LINGER: Duration = Duration::from_secs(1);

/// Proxies one request. Every failure before the response head is written becomes the
/// edge's error page; after it, the visitor's connection is closed so a cut response is
/// never mistaken for a whole one.
pub(crate) async fn run<S>(
    visitors: &crate::visitor::Visitors,
    visitor: &mut Visitor<S>,
    prepared: Prepared,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Prepared {
        tunnel,
        facts,
        head,
        request_id,
        log,
    } = prepared;
    visitor.buf.advance(facts.head_len);
    tunnel.counters.requests.fetch_add(1, Ordering::Relaxed);
    let head = head.freeze();
    let timeout = visitors.config.upstream_timeout;

    let mut upload = Upload::new(facts.body, facts.trailers.clone());
    let mut attempt = 0;
    let (stream, response, mut up) = loop {
        attempt += 1;
        let (stream, reused) = match tunnel.stream() {
            Ok(pair) => pair,
            Err(error) => {
                return fail(visitor, &facts, &request_id, log, &error, upload.done).await;
            }
        };
        let mut up = Unread::default();
        let outcome = exchange_head(
            visitor,
            &stream,
            &mut up,
            &head,
            &mut upload,
            timeout,
            facts.is_head,
        )
        .await;
        match outcome {
            HeadOutcome::Head(response) => break (stream, response, up),
            // A pooled stream the local service closed just as it was taken: nothing was
            // sent to anyone, so the request goes once more, on a fresh stream.
            HeadOutcome::Failed(UpstreamFailure::ClosedEarly)
                if reused && attempt == 1 && upload.untouched() =>
            {
                continue;
            }
            HeadOutcome::Failed(failure) => {
                let error = failure.into_error(&tunnel, timeout);
                stream.reset(ResetCode::Cancel);
                return fail(visitor, &facts, &request_id, log, &error, upload.done).await;
            }
            HeadOutcome::BadBody(reason) => {
                stream.reset(ResetCode::Cancel);
                let error =
                    EdgeError::BadRequest(format!("the request body could not be read: {reason}"));
                return fail(visitor, &facts, &request_id, log, &error, false).await;
            }
            HeadOutcome::VisitorGone => {
                stream.reset(ResetCode::Cancel);
                return Next::Linger;
            }
        }
    };
    // The visitor's connection carries on only if this request was read to its end.
    let close_visitor = facts.close || !upload.done || visitors.life.draining.is_cancelled();
    let rfacts = response;
    // The response head was written into the connection's reusable buffer.
    let mut bytes = std::mem::take(&mut visitor.out);
    head::finish_response(&mut bytes, close_visitor);
    let status = rfacts.status;
    let sent = if upload.done || upload.failed {
        let mut down = WatchedVisitor {
            io: &mut visitor.io,
            buf: &mut visitor.buf,
        };
        send_body(
            &mut down,
            &stream,
            &mut up,
            &bytes,
            (rfacts.body, &rfacts.trailers),
            &tunnel.counters.bytes_out,
        )
        .await
    } else {
        // The local service answered before the request body ended (an echo, or a refusal):
        // the rest of the body still goes up while the response comes down.
        duplex(
            visitor,
            &stream,
            &mut up,
            &mut upload,
            &bytes,
            (rfacts.body, &rfacts.trailers),
            &tunnel.counters.bytes_out,
        )
        .await
    };
    keep_for_reuse(&mut visitor.out, bytes);
    if let Some(log) = &log {
        log.set_bytes_in(upload.sent);
    }
    tunnel
        .counters
        .bytes_in
        .fetch_add(upload.sent, Ordering::Relaxed);
    let (next, error) = match sent {
        Ok(()) => {
            let reusable = !rfacts.upstream_closes && upload.done && up.is_empty();
            if reusable {
                tunnel.reuse_stream(stream);
            }
            let next = if !close_visitor {
                Next::KeepAlive
            } else if facts.close && upload.done && visitor.buf.is_empty() {
                // The visitor asked to close, sent its request whole and nothing after it:
                // no lingering needed.
                Next::CloseNow
            } else {
                Next::Linger
            };
            (next, None)
        }
        Err(Interrupted::Upstream) => {
            stream.reset(ResetCode::Cancel);
            (Next::Linger, Some("response-interrupted"))
        }
        Err(Interrupted::Visitor) => {
            stream.reset(ResetCode::Cancel);
            (Next::Linger, Some("response-interrupted"))
        }
    };
    if let Some(log) = log {
        log.finish(status, up.body_bytes, error);
    }
    // The request head's buffer serves the next request, unless the session still holds it.
    drop(upload);
    if let Ok(spare) = head.try_into_mut() {
        keep_for_reuse(&mut visitor.spare_head, spare);
    }
    next
}

/// Largest head buffer a connection keeps between requests: an idle keep-alive connection
/// does not hold on to the room an unusually large head once needed.
const KEPT_HEAD_BUFFER: usize = 8 * 1024;

/// Keeps `buf` (emptied) in `slot` for the next head, unless it grew unusually large.
fn keep_for_reuse(slot: &mut BytesMut, mut buf: BytesMut) {
    if buf.capacity() <= KEPT_HEAD_BUFFER {
        buf.clear();
        *slot = buf;
    }
}

/// Writes the edge's error page for a request that failed before its response began.
async fn fail<S>(
    visitor: &mut Visitor<S>,
    facts: &head::RequestFacts,
    request_id: &str,
    log: Option<crate::visitor::forward::RequestLogger>,
    error: &EdgeError,
    body_read: bool,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tracing::debug!(visitor = %visitor.peer, request_id, %error, side = ?error.side(), "request failed");
    if let Some(log) = log {
        log.finish(error.status().as_u16(), 0, Some(error.code()));
    }
    // Whatever of the body was not read cannot be told apart from the next request.
    let close = facts.close || !(body_read || facts.body == BodyKind::None);
    let page = error_page::http1_bytes(error, facts.html, request_id, close);
    if write_all(&mut visitor.io, [&page]).await.is_err() || close {
        return Next::Linger;
    }
    Next::KeepAlive
}

/// Ends a connection whose visitor asked for the close and has sent nothing more: a TLS
/// connection says close_notify; a plain one is simply closed (FIN), without the half-close and
/// read of [`close`] (one shutdown, one read and one wake-up less per connection; what nginx
/// does when no more data is expected).
pub async fn close_now<S>(visitor: &mut Visitor<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if visitor.proto == "https" {
        let _ = tokio::time::timeout(LINGER, visitor.io.shutdown()).await;
    }
}

/// Closes a visitor connection gracefully: FIN, then a short read of whatever the visitor
/// was still sending.
pub async fn close<S>(visitor: &mut Visitor<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = visitor.io.shutdown().await;
    let drain = async {
        let mut sink = [0u8; 8192];
        while let Ok(n) = visitor.io.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Streams the response down while the rest of the request body goes up. The response
/// decides: when it ends, whatever is left of the upload is abandoned.
async fn duplex<S>(
    visitor: &mut Visitor<S>,
    stream: &Stream,
    up: &mut Unread,
    upload: &mut Upload,
    head: &[u8],
    body: (BodyKind, &Declared),
    bytes_out: &AtomicU64,
) -> Result<(), Interrupted>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, writer) = tokio::io::split(&mut visitor.io);
    let buf = &mut visitor.buf;
    // The upload reads the visitor's side and notices a hang-up itself.
    let mut down = VisitorWriteHalf(writer);
    let body = send_body(&mut down, stream, up, head, body, bytes_out);
    tokio::pin!(body);
    let mut uploading = true;
    loop {
        tokio::select! {
            result = &mut body => return result,
            result = upload.drive(&mut reader, buf, stream), if uploading => match result {
                Ok(()) => uploading = false,
                Err(UploadError::Upstream(e)) => {
                    tracing::debug!(error = %e, "the local service stopped taking the request body");
                    upload.failed = true;
                    uploading = false;
                }
                Err(UploadError::Visitor(_)) => return Err(Interrupted::Visitor),
            },
        }
    }
}
