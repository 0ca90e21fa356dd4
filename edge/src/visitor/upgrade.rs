//! A switched protocol (WebSocket, or any `Upgrade`): after the 101, bytes flow both ways
//! between the visitor and the tunnel stream until either side closes. Bytes read from each
//! side are added to the tunnel's counters as they pass, so a long-lived WebSocket shows its
//! traffic before it closes.

use crate::tunnel::registry::Counters;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::Instrument;

/// Joins the visitor's upgraded connection to the local service's, in a task of its own.
pub fn splice(visitor: OnUpgrade, local: OnUpgrade, request_id: String, counters: &Counters) {
    let span = tracing::debug_span!("upgrade", request_id = %request_id);
    let up = counters.bytes_in.clone();
    let down = counters.bytes_out.clone();
    tokio::spawn(
        async move {
            let (visitor, local) = match tokio::try_join!(visitor, local) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade did not complete");
                    return;
                }
            };
            let mut visitor = Counting::new(TokioIo::new(visitor), up);
            let mut local = Counting::new(TokioIo::new(local), down);
            match tokio::io::copy_bidirectional(&mut visitor, &mut local).await {
                Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
                Err(e) => tracing::debug!(error = %e, "upgraded connection failed"),
            }
        }
        .instrument(span),
    );
}

pin_project! {
    /// An I/O object that adds the bytes read from it to a counter.
    struct Counting<T> {
        #[pin]
        inner: T,
        read: Arc<AtomicU64>,
    }
}

impl<T> Counting<T> {
    fn new(inner: T, read: Arc<AtomicU64>) -> Counting<T> {
        Counting { inner, read }
    }
}

impl<T: AsyncRead> AsyncRead for Counting<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.inner.poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before) as u64;
        if n > 0 {
            this.read.fetch_add(n, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite> AsyncWrite for Counting<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
