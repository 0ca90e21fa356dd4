//! Getting the response head for a request: a stream from the tunnel's pool (or a new one,
//! which costs no round trip), the request head written to it, the body started, and the
//! response head read and checked — the request going once more on a fresh stream if a
//! pooled one turns out closed before any byte came back.

use crate::error::EdgeError;
use crate::tunnel::LiveTunnel;
use crate::visitor::h1::Visitor;
use crate::visitor::h1::head::{self, ResponseFacts};
use crate::visitor::h1::request_body::{Upload, UploadError};
use crate::visitor::h1::response_body::{CHUNK, Unread, poll_hangup};
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
    up: &mut Unread,
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
    up: &mut Unread,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forwarding::trailers::Declared;
    use crate::visitor::h1::framing::BodyKind;
    use crate::visitor::h1::testing::{SessionPair, visitor_pipe};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Sends a bodiless request and lets the local service answer `answer` (then close, if
    /// `close`); returns the outcome and the head written for the visitor.
    async fn head_for(
        answer: &'static [u8],
        close: bool,
        timeout: Duration,
    ) -> (HeadOutcome, String) {
        let mut pair = SessionPair::start();
        let stream = pair.open();
        let (edge_side, visitor_end) = visitor_pipe();
        let mut visitor = Visitor {
            io: edge_side,
            buf: BytesMut::new(),
            peer: "192.0.2.1:1".parse().expect("addr"),
            trusted: false,
            proto: "http",
            out: BytesMut::new(),
            spare_head: BytesMut::new(),
        };
        let local = async {
            let mut agent = pair.accept().await;
            let mut head = [0u8; 10];
            agent.read_exact(&mut head).await.expect("request head");
            agent.write_all(answer).await.expect("answer");
            if close {
                // FIN without a byte: the local service closed its connection unanswered.
                agent.shutdown().await.expect("FIN");
            }
            // Otherwise the stream stays open: a local service that is still thinking.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        };
        let mut up = Unread::default();
        let mut upload = Upload::new(BodyKind::None, Declared::default());
        let head = Bytes::from_static(b"GET / \r\n\r\n");
        let outcome = tokio::select! {
            outcome = exchange_head(&mut visitor, &stream, &mut up, &head, &mut upload, timeout, false) => outcome,
            () = local => unreachable!("the local side never finishes first"),
        };
        drop(visitor_end);
        (outcome, String::from_utf8_lossy(&visitor.out).into_owned())
    }

    #[tokio::test]
    async fn interim_responses_are_skipped_and_the_head_rewritten() {
        let (outcome, head) = head_for(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nKeep-Alive: 5\r\nwarren-relay-moved: 1\r\nContent-Length: 2\r\n\r\nok",
            false,
            Duration::from_secs(5),
        )
        .await;
        let HeadOutcome::Head(facts) = outcome else {
            panic!("no head");
        };
        assert_eq!((facts.status, facts.body), (200, BodyKind::Length(2)));
        assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
    }

    #[tokio::test]
    async fn an_invalid_answer_a_silent_close_and_a_slow_service_are_told_apart() {
        let (outcome, _) = head_for(
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            false,
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(
            outcome,
            HeadOutcome::Failed(UpstreamFailure::Invalid(_))
        ));
        let (outcome, _) = head_for(b"", true, Duration::from_secs(5)).await;
        assert!(matches!(
            outcome,
            HeadOutcome::Failed(UpstreamFailure::ClosedEarly)
        ));
        let (outcome, _) = head_for(b"HTTP/1.1 200", false, Duration::from_millis(300)).await;
        assert!(matches!(
            outcome,
            HeadOutcome::Failed(UpstreamFailure::Timeout)
        ));
    }
}
