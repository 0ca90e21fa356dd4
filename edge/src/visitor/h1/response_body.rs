//! A local service's response body on its way to the visitor: taken from the tunnel stream
//! as it arrives (no copy), checked against its framing, and written in the visitor's framing
//! — whatever has arrived in one vectored write, chunks of a chunked or close-delimited body
//! included. The visitor's connection is watched for a hang-up while the response waits.

use crate::forwarding::trailers::{self, Declared};
use crate::visitor::h1::framing::{self, BodyKind, ChunkDecoder, Piece};
use bytes::{Buf, Bytes, BytesMut};
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker, ready};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::time::Sleep;
use tokio_util::io::poll_read_buf;
use warren_proto::mux::COMPACT_AFTER;
use warren_session::Stream;

/// Most bytes taken from a stream at once.
pub(super) const CHUNK: usize = 256 * 1024;

/// The local side of an exchange: bytes read from the stream but not yet used. They stay in
/// the piece they arrived in (`held`, no copy) unless several pieces must be joined (`buf`: a
/// head split across frames, a chunked body); at most one of the two holds bytes.
#[derive(Default)]
pub(super) struct Unread {
    held: Bytes,
    buf: BytesMut,
    /// Response body bytes passed to the visitor.
    pub(super) body_bytes: u64,
}

impl Unread {
    pub(super) fn is_empty(&self) -> bool {
        self.held.is_empty() && self.buf.is_empty()
    }

    /// The unused bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        if self.buf.is_empty() {
            &self.held
        } else {
            &self.buf
        }
    }

    pub(super) fn advance(&mut self, n: usize) {
        if self.buf.is_empty() {
            self.held.advance(n);
        } else {
            self.buf.advance(n);
        }
    }

    /// Adds a piece received from the stream.
    pub(super) fn push(&mut self, piece: Bytes) {
        if self.is_empty() {
            self.held = piece;
        } else {
            self.joined().extend_from_slice(&piece);
        }
    }

    /// Takes all the unused bytes, as one piece.
    pub(super) fn take(&mut self) -> Bytes {
        if self.buf.is_empty() {
            std::mem::take(&mut self.held)
        } else {
            self.buf.split().freeze()
        }
    }

    /// The unused bytes in one growable buffer (copied there if they were held).
    pub(super) fn joined(&mut self) -> &mut BytesMut {
        if !self.held.is_empty() {
            self.buf.extend_from_slice(&self.held);
            self.held = Bytes::new();
        }
        &mut self.buf
    }
}

/// Why a response body stopped short: the local side (its stream ended or reset, or it sent
/// a malformed body) or the visitor (gone, or not reading within the write deadline).
pub(super) enum Interrupted {
    Upstream,
    Visitor,
}

/// Writes the response head and streams the body to the visitor in its framing.
pub(super) async fn send_body<D: ToVisitor>(
    io: &mut D,
    stream: &Stream,
    up: &mut Unread,
    head: &[u8],
    (kind, declared): (BodyKind, &Declared),
    counter: &AtomicU64,
) -> Result<(), Interrupted> {
    match kind {
        BodyKind::None => write_all(io, [head])
            .await
            .map_err(|_| Interrupted::Visitor),
        BodyKind::Length(total) => {
            let mut remaining = total;
            let mut head = Some(head);
            let mut batch: Vec<Bytes> = Vec::new();
            loop {
                batch.clear();
                if up.is_empty() {
                    if let Some(h) = head.take() {
                        // Head first: the visitor learns the status without waiting for the body.
                        write_all(io, [h]).await.map_err(|_| Interrupted::Visitor)?;
                    }
                    match next_chunk(stream, io).await? {
                        Some(chunk) => batch.push(chunk),
                        None => return Err(Interrupted::Upstream),
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
                write_batch(io, head.take(), &mut batch)
                    .await
                    .map_err(|_| Interrupted::Visitor)?;
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
                        let Ok(trailers) = trailers::rewrite(&trailers, declared) else {
                            tracing::debug!("the local service sent a malformed trailer section");
                            return Err(Interrupted::Upstream);
                        };
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
                            None => return Err(Interrupted::Upstream),
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "the local service sent a malformed chunked body");
                        return Err(Interrupted::Upstream);
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
async fn next_chunk<D: ToVisitor>(
    stream: &Stream,
    down: &mut D,
) -> Result<Option<Bytes>, Interrupted> {
    poll_fn(|cx| {
        match stream.poll_read_chunk(cx, CHUNK) {
            Poll::Ready(Ok(chunk)) => return Poll::Ready(Ok(chunk)),
            Poll::Ready(Err(_)) => return Poll::Ready(Err(Interrupted::Upstream)),
            Poll::Pending => {}
        }
        match down.poll_hangup(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Interrupted::Visitor)),
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
    async fn write<D: ToVisitor>(
        &mut self,
        io: &mut D,
        head: Option<&[u8]>,
    ) -> Result<(), Interrupted> {
        if head.is_none() && self.pieces.is_empty() {
            return Ok(());
        }
        write_batch(io, head, &mut self.pieces)
            .await
            .map_err(|_| Interrupted::Visitor)?;
        self.pieces.clear();
        self.bytes = 0;
        Ok(())
    }
}

/// Writes an optional head and a batch of pieces with vectored writes, then flushes.
///
/// The pieces are slices of messages received on the tunnel session, which carry other
/// streams' bytes too. A visitor that stops reading would keep those whole messages alive for
/// the few bytes of its own in them, so once a write has waited [`COMPACT_AFTER`] what is left
/// is copied into one buffer of its own, and the shared pieces are let go (the session does the
/// same for bytes still unread on the stream: `warren_proto::mux`, "Memory"). A write that
/// proceeds costs nothing more.
async fn write_batch<S: AsyncWrite + Unpin>(
    io: &mut S,
    head: Option<&[u8]>,
    pieces: &mut [Bytes],
) -> io::Result<()> {
    let mut head = head.unwrap_or_default();
    let mut at = 0;
    let mut waiting: Option<Pin<Box<Sleep>>> = None;
    let mut copied = false;
    poll_fn(|cx| {
        loop {
            while pieces.get(at).is_some_and(Bytes::is_empty) {
                at += 1;
            }
            if head.is_empty() && at == pieces.len() {
                return Poll::Ready(Ok(()));
            }
            let mut storage = [IoSlice::new(&[]); MAX_SLICES];
            let mut used = 0;
            for part in std::iter::once(head)
                .chain(pieces[at..].iter().map(|p| &p[..]))
                .filter(|p| !p.is_empty())
                .take(MAX_SLICES)
            {
                storage[used] = IoSlice::new(part);
                used += 1;
            }
            let polled = Pin::new(&mut *io).poll_write_vectored(cx, &storage[..used]);
            match polled {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(mut n)) => {
                    waiting = None;
                    let from_head = n.min(head.len());
                    head = &head[from_head..];
                    n -= from_head;
                    while n > 0 {
                        let piece = &mut pieces[at];
                        let k = n.min(piece.len());
                        piece.advance(k);
                        n -= k;
                        if piece.is_empty() {
                            at += 1;
                        }
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if copied || at == pieces.len() => return Poll::Pending,
                Poll::Pending => {
                    let sleep =
                        waiting.get_or_insert_with(|| Box::pin(tokio::time::sleep(COMPACT_AFTER)));
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let rest = &mut pieces[at..];
                    let mut own = BytesMut::with_capacity(rest.iter().map(Bytes::len).sum());
                    for piece in rest.iter_mut() {
                        own.extend_from_slice(piece);
                        *piece = Bytes::new();
                    }
                    rest[0] = own.freeze();
                    copied = true;
                    // Polled again at once: the write registers the waker.
                }
            }
        }
    })
    .await?;
    io.flush().await
}

/// Most slices handed to one vectored write (the kernel takes up to 1024).
const MAX_SLICES: usize = 64;

/// Most bytes read ahead from a visitor (pipelined requests) while a response is under
/// way; beyond it the connection is not watched until the next request.
const READ_AHEAD: usize = 64 * 1024;

/// Ready when the visitor has closed its connection (or it failed). Bytes that arrive
/// meanwhile (a pipelined request) are kept for later.
pub(super) fn poll_hangup<R: AsyncRead + Unpin>(
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
pub(super) trait ToVisitor: AsyncWrite + Unpin {
    fn poll_hangup(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// The whole visitor connection: writes go out, reads watch for a hang-up.
pub(super) struct WatchedVisitor<'a, S> {
    pub(super) io: &'a mut S,
    pub(super) buf: &'a mut BytesMut,
}

/// The writing half of a visitor connection whose reading half is busy elsewhere.
pub(super) struct VisitorWriteHalf<W>(pub(super) W);

impl<S: AsyncRead + AsyncWrite + Unpin> ToVisitor for WatchedVisitor<'_, S> {
    fn poll_hangup(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        poll_hangup(cx, self.io, self.buf)
    }
}

impl<W: AsyncWrite + Unpin> ToVisitor for VisitorWriteHalf<W> {
    fn poll_hangup(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedVisitor<'_, S> {
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

impl<W: AsyncWrite + Unpin> AsyncWrite for VisitorWriteHalf<W> {
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
pub(super) async fn write_all<S: AsyncWrite + Unpin, const N: usize>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::visitor::h1::testing::{SessionPair, visitor_pipe};
    use tokio::io::AsyncReadExt as _;

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_lets_the_shared_message_go() {
        // One received message; the pieces to write are slices of it.
        let message = Bytes::from(vec![7u8; 256 * 1024]);
        let mut pieces = vec![message.slice(..64 * 1024), message.slice(128 * 1024..)];
        let (mut edge_side, mut visitor) = tokio::io::duplex(4096);
        let write =
            tokio::spawn(
                async move { write_batch(&mut edge_side, Some(b"HEAD"), &mut pieces).await },
            );
        // The visitor reads nothing: the write waits. Past COMPACT_AFTER the message is no
        // longer referenced by the waiting write (only by this test).
        tokio::time::sleep(COMPACT_AFTER * 2).await;
        tokio::task::yield_now().await;
        assert!(
            message.is_unique(),
            "the waiting write still holds the received message"
        );
        // Everything still arrives, in order.
        let mut got = Vec::new();
        let reader = async {
            let mut buf = vec![0u8; 64 * 1024];
            while got.len() < 4 + 192 * 1024 {
                let n = visitor.read(&mut buf).await.expect("read");
                got.extend_from_slice(&buf[..n]);
            }
        };
        reader.await;
        write.await.expect("task").expect("written");
        assert_eq!(&got[..4], b"HEAD");
        assert!(got[4..].iter().all(|b| *b == 7));
    }

    #[tokio::test]
    async fn a_write_that_proceeds_copies_nothing() {
        let message = Bytes::from(vec![1u8; 8 * 1024]);
        let mut pieces = vec![message.slice(..1024), message.slice(4096..)];
        let (mut edge_side, mut visitor) = tokio::io::duplex(64 * 1024);
        write_batch(&mut edge_side, None, &mut pieces)
            .await
            .expect("written");
        let mut got = vec![0u8; 1024 + 4096];
        visitor.read_exact(&mut got).await.expect("read");
        assert!(got.iter().all(|b| *b == 1));
    }

    /// The local service answers `body` (after the head the edge already parsed); returns what
    /// the visitor received and how the body ended.
    async fn respond(
        kind: BodyKind,
        declared: &str,
        body: &[u8],
        close_after: bool,
    ) -> (Vec<u8>, Result<(), &'static str>) {
        let mut pair = SessionPair::start();
        let mut stream = pair.open();
        stream.write_all(b"request").await.expect("request");
        let mut agent = pair.accept().await;
        let mut request = [0u8; 7];
        agent
            .read_exact(&mut request)
            .await
            .expect("request arrives");
        agent.write_all(body).await.expect("agent writes");
        if close_after {
            agent.shutdown().await.expect("FIN");
        }
        let (mut edge_side, mut visitor) = visitor_pipe();
        let mut read_buf = BytesMut::new();
        let mut down = WatchedVisitor {
            io: &mut edge_side,
            buf: &mut read_buf,
        };
        let mut declared_trailers = Declared::default();
        declared_trailers.add(declared.as_bytes());
        let counter = AtomicU64::new(0);
        let mut up = Unread::default();
        let sent = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            send_body(
                &mut down,
                &stream,
                &mut up,
                b"HTTP/1.1 200 OK\r\n\r\n",
                (kind, &declared_trailers),
                &counter,
            ),
        )
        .await
        .expect("the body ends");
        let sent = sent.map_err(|cut| match cut {
            Interrupted::Upstream => "upstream",
            Interrupted::Visitor => "visitor",
        });
        drop(edge_side);
        let mut got = Vec::new();
        visitor.read_to_end(&mut got).await.expect("visitor reads");
        (got, sent)
    }

    #[tokio::test]
    async fn a_length_body_arrives_exactly() {
        let (got, sent) = respond(BodyKind::Length(5), "", b"hello", false).await;
        assert_eq!(sent, Ok(()));
        assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\nhello");
    }

    #[tokio::test]
    async fn a_chunked_body_keeps_declared_trailers_only() {
        let body = b"5\r\nhello\r\n0\r\nServer-Timing: db\r\nSet-Cookie: x\r\nX-No: 1\r\n\r\n";
        let (got, sent) =
            respond(BodyKind::Chunked, "server-timing, set-cookie", body, false).await;
        assert_eq!(sent, Ok(()));
        assert_eq!(
            String::from_utf8_lossy(&got),
            "HTTP/1.1 200 OK\r\n\r\n5\r\nhello\r\n0\r\nserver-timing: db\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn malformed_trailers_from_the_local_service_cut_the_response() {
        let body = b"5\r\nhello\r\n0\r\nX: a\nY: b\r\n\r\n";
        let (got, sent) = respond(BodyKind::Chunked, "x", body, false).await;
        assert_eq!(sent, Err("upstream"));
        assert!(!String::from_utf8_lossy(&got).contains("Y: b"));
    }

    #[tokio::test]
    async fn a_body_until_close_is_sent_chunked() {
        let (got, sent) = respond(BodyKind::UntilClose, "", b"all of it", true).await;
        assert_eq!(sent, Ok(()));
        assert_eq!(
            String::from_utf8_lossy(&got),
            "HTTP/1.1 200 OK\r\n\r\n9\r\nall of it\r\n0\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_length_body_cut_short_is_the_upstreams_fault() {
        let (got, sent) = respond(BodyKind::Length(100), "", b"short", true).await;
        assert_eq!(sent, Err("upstream"));
        assert!(got.ends_with(b"short"));
    }
}
