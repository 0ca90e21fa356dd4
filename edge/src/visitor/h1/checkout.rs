//! Getting the response head for a request: a stream from the tunnel's pool (or a new one,
//! which costs no round trip), the request head written to it, the body started, and the
//! response head read and checked — the request going once more on a fresh stream if a
//! pooled one turns out closed before any byte came back.

use crate::error::EdgeError;
use crate::tunnel::LiveTunnel;
use crate::visitor::h1::Visitor;
use crate::visitor::h1::head::{self, ResponseFacts};
use crate::visitor::h1::request_body::{Upload, UploadError};
use crate::visitor::h1::response_body::{CHUNK, Upstream, poll_hangup};
use bytes::{Bytes, BytesMut};
use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::AsyncRead;
use warren_session::{Stream, reset_code_of};

/// Largest response head accepted from a local service.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

pub(super) enum HeadOutcome {
    /// The response head, written for the visitor (without its last line, see
    /// `head::finish_response`) into the connection's `out` buffer.
    Head(ResponseFacts),
    Failed(UpstreamFailure),
    /// The visitor's request body is malformed.
    BadBody(String),
    /// The visitor went away while its request was under way.
    VisitorGone,
}

/// Why no response head came from the local service.
pub(super) enum UpstreamFailure {
    /// The stream ended before a single response byte.
    ClosedEarly,
    Io(io::Error),
    Invalid(String),
    Timeout,
}

impl UpstreamFailure {
    pub(super) fn into_error(self, tunnel: &LiveTunnel, timeout: Duration) -> EdgeError {
        match self {
            UpstreamFailure::Timeout => EdgeError::LocalTimeout(timeout.as_secs()),
            UpstreamFailure::Invalid(reason) => EdgeError::LocalError(reason),
            UpstreamFailure::Io(e) => match reset_code_of(&e) {
                Some(code) => EdgeError::from_reset(code),
                None if tunnel.session.is_ended() => EdgeError::AgentUnreachable,
                None => EdgeError::LocalError(e.to_string()),
            },
            UpstreamFailure::ClosedEarly if tunnel.session.is_ended() => {
                EdgeError::AgentUnreachable
            }
            UpstreamFailure::ClosedEarly => EdgeError::LocalError(
                "the local service closed the connection without answering".into(),
            ),
        }
    }
}

/// Sends the head, then the body while waiting for the response head. The wait for the
/// answer is bounded by `timeout`, counted from the last byte of progress (a long upload
/// at the visitor's pace is not a slow local service).
pub(super) async fn exchange_head<S>(
    visitor: &mut Visitor<S>,
    stream: &Stream,
    up: &mut Upstream,
    head: &Bytes,
    upload: &mut Upload,
    timeout: Duration,
    facts_is_head: bool,
) -> HeadOutcome
where
    S: AsyncRead + Unpin,
{
    upload.restart(head.clone());
    let is_head = facts_is_head;
    let sleep = tokio::time::sleep(timeout);
    tokio::pin!(sleep);
    let mut progress = upload.sent;
    poll_fn(|cx| {
        if !upload.done && !upload.failed {
            match upload.poll(cx, &mut visitor.io, &mut visitor.buf, stream) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(UploadError::Visitor(None))) => {
                    return Poll::Ready(HeadOutcome::VisitorGone);
                }
                Poll::Ready(Err(UploadError::Visitor(Some(bad)))) => {
                    return Poll::Ready(HeadOutcome::BadBody(bad));
                }
                // The local service stopped reading (it may have answered already, or be
                // about to): wait for its answer.
                Poll::Ready(Err(UploadError::Upstream(e))) => {
                    tracing::debug!(error = %e, "the local service stopped taking the request body");
                    upload.failed = true;
                }
                Poll::Pending => {}
            }
        }
        match poll_response_head(cx, stream, up, is_head, &mut visitor.out) {
            Poll::Ready(Ok(head)) => return Poll::Ready(HeadOutcome::Head(head)),
            Poll::Ready(Err(failure)) => return Poll::Ready(HeadOutcome::Failed(failure)),
            Poll::Pending => {}
        }
        // A visitor that gives up waiting releases its stream at once.
        if (upload.done || upload.failed)
            && poll_hangup(cx, &mut visitor.io, &mut visitor.buf).is_ready()
        {
            return Poll::Ready(HeadOutcome::VisitorGone);
        }
        if upload.sent != progress {
            progress = upload.sent;
            sleep.as_mut().reset(tokio::time::Instant::now() + timeout);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(HeadOutcome::Failed(UpstreamFailure::Timeout)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Reads and parses the response head, skipping interim (1xx) responses.
fn poll_response_head(
    cx: &mut Context<'_>,
    stream: &Stream,
    up: &mut Upstream,
    is_head: bool,
    out: &mut BytesMut,
) -> Poll<Result<ResponseFacts, UpstreamFailure>> {
    loop {
        if !up.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(up.bytes()) {
                Ok(httparse::Status::Complete(len)) => {
                    let facts = head::inspect_response(&resp, len, is_head)
                        .map_err(|e| UpstreamFailure::Invalid(e.0))?;
                    if facts.interim {
                        up.advance(len);
                        continue;
                    }
                    out.clear();
                    head::write_response(out, &resp, &facts, is_head);
                    up.advance(len);
                    return Poll::Ready(Ok(facts));
                }
                Ok(httparse::Status::Partial) if up.bytes().len() <= MAX_RESPONSE_HEAD => {}
                Ok(httparse::Status::Partial) => {
                    return Poll::Ready(Err(UpstreamFailure::Invalid(
                        "the local service sent a response head over 64 KiB".into(),
                    )));
                }
                Err(e) => {
                    return Poll::Ready(Err(UpstreamFailure::Invalid(format!(
                        "the local service sent an invalid response: {e}"
                    ))));
                }
            }
        }
        match ready!(stream.poll_read_chunk(cx, CHUNK)) {
            Ok(Some(chunk)) => up.push(chunk),
            Ok(None) if up.is_empty() => {
                return Poll::Ready(Err(UpstreamFailure::ClosedEarly));
            }
            Ok(None) => {
                return Poll::Ready(Err(UpstreamFailure::Invalid(
                    "the local service closed the connection in the middle of its response head"
                        .into(),
                )));
            }
            Err(e) => return Poll::Ready(Err(UpstreamFailure::Io(e))),
        }
    }
}
