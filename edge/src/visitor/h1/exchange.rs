//! One visitor request through a tunnel stream, and its response back.
//!
//! The head goes first; the request body follows at the visitor's pace while the response
//! head is awaited (a local service may answer before it has read the body). The response
//! body streams to the visitor as it arrives, chunk by chunk, with flow control on the
//! stream holding the local service back when the visitor reads slowly. A stream whose
//! exchange ended cleanly goes back to the tunnel's pool for the next request.

use crate::error::EdgeError;
use crate::tunnel::LiveTunnel;
use crate::visitor::error_page;
use crate::visitor::h1::framing::{self, BodyKind, ChunkDecoder, Piece};
use crate::visitor::h1::head::{self, ResponseFacts};
use crate::visitor::h1::{Next, Prepared, Visitor};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_util::io::poll_read_buf;
use warren_proto::ResetCode;
use warren_session::{Stream, reset_code_of};

/// Largest response head accepted from a local service.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most bytes taken from a stream at once.
const CHUNK: usize = 256 * 1024;
/// Visitor read size for request bodies.
const BODY_READ: usize = 64 * 1024;
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

    let mut upload = Upload::new(facts.body);
    let mut attempt = 0;
    let (stream, response, mut up) = loop {
        attempt += 1;
        let (stream, reused) = match tunnel.stream() {
            Ok(pair) => pair,
            Err(error) => {
                return fail(visitor, &facts, &request_id, log, &error, upload.done).await;
            }
        };
        let mut up = Upstream::default();
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
                return Next::Close;
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
        let mut down = Watched {
            io: &mut visitor.io,
            buf: &mut visitor.buf,
        };
        send_body(&mut down, &stream, &mut up, &bytes, rfacts.body, &tunnel).await
    } else {
        // The local service answered before the request body ended (an echo, or a refusal):
        // the rest of the body still goes up while the response comes down.
        duplex(
            visitor,
            &stream,
            &mut up,
            &mut upload,
            &bytes,
            rfacts.body,
            &tunnel,
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
                Next::Done
            } else {
                Next::Close
            };
            (next, None)
        }
        Err(Cut::Upstream) => {
            stream.reset(ResetCode::Cancel);
            (Next::Close, Some("response-interrupted"))
        }
        Err(Cut::Visitor) => {
            stream.reset(ResetCode::Cancel);
            (Next::Close, Some("response-interrupted"))
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
        return Next::Close;
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

/// The local side of an exchange: bytes read from the stream but not yet used. They stay in
/// the piece they arrived in (`held`, no copy) unless several pieces must be joined (`buf`: a
/// head split across frames, a chunked body); at most one of the two holds bytes.
#[derive(Default)]
struct Upstream {
    held: Bytes,
    buf: BytesMut,
    /// Response body bytes passed to the visitor.
    body_bytes: u64,
}

impl Upstream {
    fn is_empty(&self) -> bool {
        self.held.is_empty() && self.buf.is_empty()
    }

    /// The unused bytes.
    fn bytes(&self) -> &[u8] {
        if self.buf.is_empty() {
            &self.held
        } else {
            &self.buf
        }
    }

    fn advance(&mut self, n: usize) {
        if self.buf.is_empty() {
            self.held.advance(n);
        } else {
            self.buf.advance(n);
        }
    }

    /// Adds a piece received from the stream.
    fn push(&mut self, piece: Bytes) {
        if self.is_empty() {
            self.held = piece;
        } else {
            self.joined().extend_from_slice(&piece);
        }
    }

    /// Takes all the unused bytes, as one piece.
    fn take(&mut self) -> Bytes {
        if self.buf.is_empty() {
            std::mem::take(&mut self.held)
        } else {
            self.buf.split().freeze()
        }
    }

    /// The unused bytes in one growable buffer (copied there if they were held).
    fn joined(&mut self) -> &mut BytesMut {
        if !self.held.is_empty() {
            self.buf.extend_from_slice(&self.held);
            self.held = Bytes::new();
        }
        &mut self.buf
    }
}

enum HeadOutcome {
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
enum UpstreamFailure {
    /// The stream ended before a single response byte.
    ClosedEarly,
    Io(io::Error),
    Invalid(String),
    Timeout,
}

impl UpstreamFailure {
    fn into_error(self, tunnel: &LiveTunnel, timeout: Duration) -> EdgeError {
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
async fn exchange_head<S>(
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

/// The request body on its way to the local service.
struct Upload {
    kind: BodyKind,
    /// Bytes of a length-delimited body still to come.
    remaining: u64,
    decoder: ChunkDecoder,
    /// Encoded bytes accepted from the visitor, not yet taken by the stream.
    pending: VecDeque<Bytes>,
    /// The whole body was read from the visitor (some of it may still be in `pending`).
    read_all: bool,
    /// The whole body was read from the visitor and taken by the stream.
    done: bool,
    /// The stream stopped taking the body (the local service closed or answered early).
    failed: bool,
    sent: u64,
}

enum UploadError {
    /// The visitor's body is malformed (`Some`) or the visitor went away (`None`).
    Visitor(Option<String>),
    Upstream(io::Error),
}

impl Upload {
    fn new(kind: BodyKind) -> Upload {
        Upload {
            kind,
            remaining: match kind {
                BodyKind::Length(n) => n,
                _ => 0,
            },
            decoder: ChunkDecoder::default(),
            pending: VecDeque::new(),
            read_all: false,
            done: false,
            failed: false,
            sent: 0,
        }
    }

    /// Drives the upload until the body is all queued to the stream.
    async fn drive<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        buf: &mut BytesMut,
        stream: &Stream,
    ) -> Result<(), UploadError> {
        poll_fn(|cx| self.poll(cx, io, buf, stream)).await
    }

    /// Whether no body byte was taken from the visitor yet (the request can be sent again).
    fn untouched(&self) -> bool {
        self.sent == 0 && matches!(self.kind, BodyKind::None)
    }

    /// Queues the head for a (new) stream.
    fn restart(&mut self, head: Bytes) {
        self.pending.clear();
        self.pending.push_back(head);
        self.read_all = false;
        self.done = false;
    }

    fn poll<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut R,
        buf: &mut BytesMut,
        stream: &Stream,
    ) -> Poll<Result<(), UploadError>> {
        loop {
            while let Some(front) = self.pending.front_mut() {
                match stream.poll_write_data(cx, front) {
                    Poll::Ready(Ok(n)) => {
                        front.advance(n);
                        if front.is_empty() {
                            self.pending.pop_front();
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(UploadError::Upstream(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.read_all {
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            match self.kind {
                BodyKind::None | BodyKind::UntilClose => {
                    self.read_all = true;
                    continue;
                }
                BodyKind::Length(_) => {
                    if !buf.is_empty() {
                        let take = usize::try_from(self.remaining)
                            .unwrap_or(usize::MAX)
                            .min(buf.len());
                        self.pending.push_back(buf.split_to(take).freeze());
                        self.remaining -= take as u64;
                        self.sent += take as u64;
                        self.read_all = self.remaining == 0;
                        continue;
                    }
                }
                BodyKind::Chunked => match self.decoder.decode(buf) {
                    Ok(Some(Piece::Data(data))) => {
                        self.sent += data.len() as u64;
                        self.pending.push_back(framing::chunk_header(data.len()));
                        self.pending.push_back(data);
                        self.pending.push_back(Bytes::from_static(b"\r\n"));
                        continue;
                    }
                    Ok(Some(Piece::End(trailers))) => {
                        self.pending.push_back(framing::last_chunk(&trailers));
                        self.read_all = true;
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Err(UploadError::Visitor(Some(e.to_string())))),
                },
            }
            buf.reserve(BODY_READ);
            match ready!(poll_read_buf(Pin::new(&mut *io), cx, buf)) {
                Ok(0) | Err(_) => return Poll::Ready(Err(UploadError::Visitor(None))),
                Ok(_) => {}
            }
        }
    }
}

/// Streams the response down while the rest of the request body goes up. The response
/// decides: when it ends, whatever is left of the upload is abandoned.
async fn duplex<S>(
    visitor: &mut Visitor<S>,
    stream: &Stream,
    up: &mut Upstream,
    upload: &mut Upload,
    head: &[u8],
    kind: BodyKind,
    tunnel: &LiveTunnel,
) -> Result<(), Cut>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, writer) = tokio::io::split(&mut visitor.io);
    let buf = &mut visitor.buf;
    // The upload reads the visitor's side and notices a hang-up itself.
    let mut down = Unwatched(writer);
    let body = send_body(&mut down, stream, up, head, kind, tunnel);
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
                Err(UploadError::Visitor(_)) => return Err(Cut::Visitor),
            },
        }
    }
}

/// Why a response body stopped short.
enum Cut {
    Upstream,
    Visitor,
}

/// Writes the response head and streams the body to the visitor in its framing.
async fn send_body<D: Downstream>(
    io: &mut D,
    stream: &Stream,
    up: &mut Upstream,
    head: &[u8],
    kind: BodyKind,
    tunnel: &LiveTunnel,
) -> Result<(), Cut> {
    let counter = &tunnel.counters.bytes_out;
    match kind {
        BodyKind::None => write_all(io, [head]).await.map_err(|_| Cut::Visitor),
        BodyKind::Length(total) => {
            let mut remaining = total;
            let mut head = Some(head);
            let mut batch: Vec<Bytes> = Vec::new();
            loop {
                batch.clear();
                if up.is_empty() {
                    if let Some(h) = head.take() {
                        // Head first: the visitor learns the status without waiting for the body.
                        write_all(io, [h]).await.map_err(|_| Cut::Visitor)?;
                    }
                    match next_chunk(stream, io).await? {
                        Some(chunk) => batch.push(chunk),
                        None => return Err(Cut::Upstream),
                    }
                    // Whatever else has arrived goes out in the same write.
                    gather(stream, &mut batch, remaining);
                } else {
                    batch.push(up.take());
                }
                let mut taken = 0u64;
                for chunk in &mut batch {
                    let room = remaining - taken;
                    if chunk.len() as u64 > room {
                        // Bytes after the declared length: the stream is not reusable.
                        let extra = chunk.split_off(usize::try_from(room).unwrap_or(0));
                        up.push(extra);
                    }
                    taken += chunk.len() as u64;
                }
                remaining -= taken;
                up.body_bytes += taken;
                counter.fetch_add(taken, Ordering::Relaxed);
                match (head.take(), batch.as_slice()) {
                    (Some(h), [data]) => write_all(io, [h, data]).await,
                    (None, [data]) => write_all(io, [data]).await,
                    (h, _) => write_batch(io, h, &batch).await,
                }
                .map_err(|_| Cut::Visitor)?;
                if remaining == 0 {
                    return Ok(());
                }
            }
        }
        BodyKind::Chunked => {
            // Chunks decoded from what has arrived leave together: an event stream's chunks
            // are small and many (one system call each cost SSE most of its CPU), and they
            // are written before waiting for more, so none waits for the next.
            let mut decoder = ChunkDecoder::default();
            let mut head = Some(head);
            let mut out = ChunkBatch::default();
            loop {
                match decoder.decode(up.joined()) {
                    Ok(Some(Piece::Data(data))) => {
                        up.body_bytes += data.len() as u64;
                        counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                        out.push(data);
                        if out.is_full() {
                            out.write(io, head.take()).await?;
                        }
                    }
                    Ok(Some(Piece::End(trailers))) => {
                        out.pieces.push(framing::last_chunk(&trailers));
                        return out.write(io, head.take()).await;
                    }
                    Ok(None) => {
                        // More of the body already waiting on the stream joins this batch.
                        if let Some(chunk) = ready_chunk(stream) {
                            up.push(chunk);
                            continue;
                        }
                        out.write(io, head.take()).await?;
                        match next_chunk(stream, io).await? {
                            Some(chunk) => up.push(chunk),
                            None => return Err(Cut::Upstream),
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "the local service sent a malformed chunked body");
                        return Err(Cut::Upstream);
                    }
                }
            }
        }
        BodyKind::UntilClose => {
            // Re-encoded as chunks (the visitor's connection stays reusable), and like a
            // chunked body's, the pieces that have arrived leave in one vectored write.
            let mut head = Some(head);
            let mut out = ChunkBatch::default();
            loop {
                let data = if !up.is_empty() {
                    up.take()
                } else if let Some(chunk) = ready_chunk(stream) {
                    chunk
                } else {
                    out.write(io, head.take()).await?;
                    match next_chunk(stream, io).await? {
                        Some(chunk) => chunk,
                        None => {
                            out.pieces.push(framing::last_chunk(&[]));
                            return out.write(io, head.take()).await;
                        }
                    }
                };
                up.body_bytes += data.len() as u64;
                counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                out.push(data);
                if out.is_full() {
                    out.write(io, head.take()).await?;
                }
            }
        }
    }
}

/// The next piece of the response from the stream (`None` at its end), unless the visitor
/// hangs up first.
async fn next_chunk<D: Downstream>(stream: &Stream, down: &mut D) -> Result<Option<Bytes>, Cut> {
    poll_fn(|cx| {
        match stream.poll_read_chunk(cx, CHUNK) {
            Poll::Ready(Ok(chunk)) => return Poll::Ready(Ok(chunk)),
            Poll::Ready(Err(_)) => return Poll::Ready(Err(Cut::Upstream)),
            Poll::Pending => {}
        }
        match down.poll_hangup(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Cut::Visitor)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Most chunks written to the visitor in one system call.
const MAX_BATCH: usize = 64;

/// Adds the chunks already waiting on the stream to `batch`, up to `limit` bytes in all.
fn gather(stream: &Stream, batch: &mut Vec<Bytes>, limit: u64) {
    // A no-op waker: nothing waits on this poll; the next wait registers the real one.
    let mut cx = Context::from_waker(Waker::noop());
    let mut total: u64 = batch.iter().map(|c| c.len() as u64).sum();
    while total < limit && batch.len() < MAX_BATCH {
        match stream.poll_read_chunk(&mut cx, CHUNK) {
            Poll::Ready(Ok(Some(chunk))) => {
                total += chunk.len() as u64;
                batch.push(chunk);
            }
            _ => break,
        }
    }
}

/// The next piece of the response if it has already arrived (no waiting).
fn ready_chunk(stream: &Stream) -> Option<Bytes> {
    // A no-op waker: nothing waits on this poll; the next wait registers the real one.
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_chunk(&mut cx, CHUNK) {
        Poll::Ready(Ok(Some(chunk))) => Some(chunk),
        _ => None,
    }
}

/// Re-encoded chunks of a chunked body waiting to be written in one vectored write.
#[derive(Default)]
struct ChunkBatch {
    /// Chunk lines, data and CRLFs, in order.
    pieces: Vec<Bytes>,
    bytes: usize,
}

impl ChunkBatch {
    /// Most pieces per write (three per chunk; the kernel takes up to 1024 slices).
    const MAX_PIECES: usize = 3 * MAX_BATCH;
    /// Most body bytes held before writing.
    const MAX_BYTES: usize = 256 * 1024;

    fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            // A zero-size chunk would end the body.
            return;
        }
        self.bytes += data.len();
        self.pieces.push(framing::chunk_header(data.len()));
        self.pieces.push(data);
        self.pieces.push(Bytes::from_static(b"\r\n"));
    }

    fn is_full(&self) -> bool {
        self.pieces.len() >= Self::MAX_PIECES || self.bytes >= Self::MAX_BYTES
    }

    /// Writes `head` (if not yet sent) and the batch, then empties it.
    async fn write<D: Downstream>(&mut self, io: &mut D, head: Option<&[u8]>) -> Result<(), Cut> {
        if head.is_none() && self.pieces.is_empty() {
            return Ok(());
        }
        write_batch(io, head, &self.pieces)
            .await
            .map_err(|_| Cut::Visitor)?;
        self.pieces.clear();
        self.bytes = 0;
        Ok(())
    }
}

/// Writes an optional head and a batch of chunks with vectored writes, then flushes.
async fn write_batch<S: AsyncWrite + Unpin>(
    io: &mut S,
    head: Option<&[u8]>,
    batch: &[Bytes],
) -> io::Result<()> {
    let mut storage: Vec<IoSlice<'_>> = Vec::with_capacity(batch.len() + 1);
    storage.extend(head.filter(|h| !h.is_empty()).map(IoSlice::new));
    storage.extend(
        batch
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| IoSlice::new(c)),
    );
    let mut slices = &mut storage[..];
    while !slices.is_empty() {
        let n = io.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    io.flush().await
}

/// Most bytes read ahead from a visitor (pipelined requests) while a response is under
/// way; beyond it the connection is not watched until the next request.
const READ_AHEAD: usize = 64 * 1024;

/// Ready when the visitor has closed its connection (or it failed). Bytes that arrive
/// meanwhile (a pipelined request) are kept for later.
fn poll_hangup<R: AsyncRead + Unpin>(
    cx: &mut Context<'_>,
    io: &mut R,
    buf: &mut BytesMut,
) -> Poll<()> {
    loop {
        if buf.len() >= READ_AHEAD {
            return Poll::Pending;
        }
        buf.reserve(4096);
        match ready!(poll_read_buf(Pin::new(&mut *io), cx, buf)) {
            Ok(0) | Err(_) => return Poll::Ready(()),
            Ok(_) => {}
        }
    }
}

/// Where a response goes: the visitor's connection, which is watched for a hang-up while
/// the response waits on the local service.
trait Downstream: AsyncWrite + Unpin {
    fn poll_hangup(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// The whole visitor connection: writes go out, reads watch for a hang-up.
struct Watched<'a, S> {
    io: &'a mut S,
    buf: &'a mut BytesMut,
}

/// The writing half of a visitor connection whose reading half is busy elsewhere.
struct Unwatched<W>(W);

impl<S: AsyncRead + AsyncWrite + Unpin> Downstream for Watched<'_, S> {
    fn poll_hangup(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        poll_hangup(cx, self.io, self.buf)
    }
}

impl<W: AsyncWrite + Unpin> Downstream for Unwatched<W> {
    fn poll_hangup(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_shutdown(cx)
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Unwatched<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Writes every part (with vectored writes where the socket takes them), then flushes (TLS
/// holds records until flushed).
async fn write_all<S: AsyncWrite + Unpin, const N: usize>(
    io: &mut S,
    parts: [&[u8]; N],
) -> io::Result<()> {
    let mut storage = [IoSlice::new(&[]); N];
    let mut used = 0;
    for part in parts.into_iter().filter(|p| !p.is_empty()) {
        storage[used] = IoSlice::new(part);
        used += 1;
    }
    let mut slices = &mut storage[..used];
    while !slices.is_empty() {
        let n = if slices.len() == 1 {
            io.write(&slices[0]).await?
        } else {
            io.write_vectored(slices).await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    io.flush().await
}
