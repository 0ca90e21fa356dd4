//! A switched protocol (WebSocket, or any `Upgrade`): after the 101, bytes flow both ways
//! between the visitor and the tunnel stream (or the owning edge, for a relayed one) until
//! either side closes. Bytes read from each side are added to the tunnel's counters as they
//! pass, so a long-lived WebSocket shows its traffic before it closes.
//!
//! An upgraded connection outlives the HTTP exchange that made it, so the splice holds the
//! connection's place under the caps (`limits.rs`) until it ends, is tracked for shutdown
//! (closed when the grace period is over), and ends after `--websocket-idle-timeout` with no
//! byte either way when one is set. The visitor's side keeps its write deadline.

use crate::lifecycle::Lifecycle;
use crate::limits::Admission;
use crate::tunnel::registry::Counters;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::Instrument;

/// What holds an upgraded connection open, and what ends it.
pub struct Spliced {
    pub life: Lifecycle,
    pub admission: Arc<Admission>,
    pub idle_timeout: Option<Duration>,
}

/// Joins the visitor's upgraded connection to the far side's, in a task of its own. Traffic is
/// counted into `counters` when given (`bytes_in`: from the visitor).
pub fn splice(
    visitor: OnUpgrade,
    far: OnUpgrade,
    request_id: String,
    counters: Option<&Counters>,
    hold: Spliced,
) {
    let span = tracing::debug_span!("upgrade", request_id = %request_id);
    let up = counters.map(|c| c.bytes_in.clone());
    let down = counters.map(|c| c.bytes_out.clone());
    let Spliced {
        life,
        admission,
        idle_timeout,
    } = hold;
    let closing = life.closing.clone();
    life.tasks.spawn(
        async move {
            let (visitor, far) = match tokio::try_join!(visitor, far) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade did not complete");
                    return;
                }
            };
            let started = Instant::now();
            let last = Arc::new(AtomicU64::new(0));
            let mut visitor = Counting::new(TokioIo::new(visitor), up, last.clone(), started);
            let mut far = Counting::new(TokioIo::new(far), down, last.clone(), started);
            let copy = tokio::io::copy_bidirectional(&mut visitor, &mut far);
            tokio::select! {
                result = copy => match result {
                    Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
                    Err(e) => tracing::debug!(error = %e, "upgraded connection failed"),
                },
                () = closing.cancelled() => tracing::debug!("upgraded connection closed: the edge is stopping"),
                () = idle(last, started, idle_timeout) => tracing::debug!("upgraded connection closed: idle"),
            }
            drop(admission);
        }
        .instrument(span),
    );
}

/// Resolves once nothing moved either way for `timeout` (never without one).
async fn idle(last: Arc<AtomicU64>, started: Instant, timeout: Option<Duration>) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    loop {
        let since = Duration::from_millis(last.load(Ordering::Relaxed));
        let quiet_for = started.elapsed().saturating_sub(since);
        if quiet_for >= timeout {
            return;
        }
        tokio::time::sleep(timeout - quiet_for).await;
    }
}

pin_project! {
    /// An I/O object that adds the bytes read from it to a counter, and notes when anything
    /// was last read (milliseconds after `started`).
    struct Counting<T> {
        #[pin]
        inner: T,
        read: Option<Arc<AtomicU64>>,
        last: Arc<AtomicU64>,
        started: Instant,
    }
}

impl<T> Counting<T> {
    fn new(
        inner: T,
        read: Option<Arc<AtomicU64>>,
        last: Arc<AtomicU64>,
        started: Instant,
    ) -> Counting<T> {
        Counting {
            inner,
            read,
            last,
            started,
        }
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
            if let Some(read) = this.read {
                read.fetch_add(n, Ordering::Relaxed);
            }
            let at = this.started.elapsed().as_millis() as u64;
            this.last.store(at, Ordering::Relaxed);
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
