//! A multiplexed stream as a tokio I/O object.

use crate::error::to_io;
use crate::session::Shared;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use warren_proto::{ResetCode, StreamId, TunnelId};

/// One stream of a session. Reads wait for data; writes wait for flow-control credit, so a
/// slow reader at the far end slows this writer and nothing else. Dropping the stream releases
/// it like closing a socket (FIN if everything was read, RST otherwise).
pub struct Stream {
    id: StreamId,
    tunnel: TunnelId,
    shared: Arc<Shared>,
}

impl Stream {
    pub(crate) fn new(id: StreamId, tunnel: TunnelId, shared: Arc<Shared>) -> Stream {
        Stream { id, tunnel, shared }
    }

    pub fn id(&self) -> StreamId {
        self.id
    }

    /// The tunnel this stream was opened for.
    pub fn tunnel(&self) -> TunnelId {
        self.tunnel
    }

    /// True once either side of this stream's session sent GOAWAY or the session ended: the
    /// stream should not be reused for another exchange.
    pub fn is_going_away(&self) -> bool {
        let inner = self.shared.lock();
        inner.mux.is_going_away() || inner.mux.is_closed()
    }

    /// Abandons the stream in both directions, telling the peer why.
    pub fn reset(&self, code: ResetCode) {
        let id = self.id;
        self.shared.with_mux(|inner| inner.mux.reset(id, code));
    }
}

impl Stream {
    /// The next queued chunk of at most `max` bytes, handed out without copying it;
    /// `Ok(None)` at the end of the stream. For readers that pass bytes on as they are (the
    /// edge's HTTP/1.1 proxy core), where `poll_read` would copy them into a buffer first.
    pub fn poll_read_chunk(
        &self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<Option<bytes::Bytes>>> {
        let id = self.id;
        self.shared
            .with_mux(|inner| match inner.mux.read_chunk(id, max.max(1)) {
                Ok(Some(chunk)) => Poll::Ready(Ok(Some(chunk))),
                Ok(None) if inner.mux.is_eof(id) => Poll::Ready(Ok(None)),
                Ok(None) => {
                    inner.register_reader(id, cx.waker());
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Err(to_io(e))),
            })
    }
}

impl Stream {
    /// Queues as much of `data` as flow control allows (`AsyncWrite::poll_write` through a
    /// shared reference, so one task can read and write the stream at once).
    pub fn poll_write_data(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let id = self.id;
        self.shared
            .with_mux(|inner| match inner.mux.write(id, data) {
                Ok(0) if !data.is_empty() => {
                    inner.register_writer(id, cx.waker());
                    Poll::Pending
                }
                Ok(n) => Poll::Ready(Ok(n)),
                Err(e) => Poll::Ready(Err(to_io(e))),
            })
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("tunnel", &self.tunnel)
            .finish()
    }
}

impl AsyncRead for Stream {
    /// Copies whole queued chunks into `buf`, never touching its spare capacity otherwise:
    /// zero-filling the caller's buffer on every poll (`initialize_unfilled`) was most of the
    /// edge's CPU, and it happened under the session lock.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let id = self.id;
        self.shared.with_mux(|inner| {
            let mut copied = false;
            while buf.remaining() > 0 {
                match inner.mux.read_chunk(id, buf.remaining()) {
                    Ok(Some(chunk)) => {
                        buf.put_slice(&chunk);
                        copied = true;
                    }
                    Ok(None) => break,
                    // Bytes already copied are returned first; the error comes on the next poll.
                    Err(_) if copied => break,
                    Err(e) => return Poll::Ready(Err(to_io(e))),
                }
            }
            if copied || buf.remaining() == 0 || inner.mux.is_eof(id) {
                Poll::Ready(Ok(()))
            } else {
                inner.register_reader(id, cx.waker());
                Poll::Pending
            }
        })
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_data(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Accepted bytes are already queued for the session's writer task, which flushes
        // whenever it has written what is queued.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let id = self.id;
        Poll::Ready(
            self.shared
                .with_mux(|inner| inner.mux.finish(id))
                .map_err(to_io),
        )
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let id = self.id;
        self.shared.with_mux(|inner| {
            inner.forget(id);
            inner.mux.release(id);
        });
    }
}
