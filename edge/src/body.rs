//! Response and request bodies as the edge passes them on: streamed frame by frame (never
//! collected), counted, and reporting to the agent's request log when they end.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

/// Called once when a metered body ends (completely, with an error, or dropped early), with
/// the number of bytes that went through.
pub trait OnEnd: Send + 'static {
    fn on_end(self: Box<Self>, bytes: u64, complete: bool);
}

pin_project! {
    /// A body that counts its bytes, optionally into a shared counter, and reports its end.
    pub struct Metered {
        #[pin]
        inner: Incoming,
        bytes: u64,
        shared: Option<Arc<AtomicU64>>,
        total: Option<Arc<AtomicU64>>,
        on_end: Option<Box<dyn OnEnd>>,
        trailers: Option<fn(&mut http::HeaderMap)>,
    }

    impl PinnedDrop for Metered {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(on_end) = this.on_end.take() {
                on_end.on_end(*this.bytes, false);
            }
        }
    }
}

impl Metered {
    pub fn new(inner: Incoming) -> Metered {
        Metered {
            inner,
            bytes: 0,
            shared: None,
            total: None,
            on_end: None,
            trailers: None,
        }
    }

    /// Passes every trailer section through `filter` (the forwarding policy's).
    pub fn filtering_trailers(mut self, filter: fn(&mut http::HeaderMap)) -> Metered {
        self.trailers = Some(filter);
        self
    }

    /// Also adds every byte to `counter` (read by whoever logs the request).
    pub fn counting_into(mut self, counter: Arc<AtomicU64>) -> Metered {
        self.shared = Some(counter);
        self
    }

    /// Also adds every byte to the tunnel's cumulative counter `total` (reported to control).
    pub fn adding_to(mut self, total: Arc<AtomicU64>) -> Metered {
        self.total = Some(total);
        self
    }

    pub fn on_end(mut self, on_end: Box<dyn OnEnd>) -> Metered {
        self.on_end = Some(on_end);
        self
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let mut polled = this.inner.as_mut().poll_frame(cx);
        if let (Some(filter), Poll::Ready(Some(Ok(frame)))) = (this.trailers, &mut polled)
            && let Some(trailers) = frame.trailers_mut()
        {
            filter(trailers);
        }
        let ended = match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    *this.bytes += n;
                    if let Some(shared) = this.shared {
                        shared.fetch_add(n, Ordering::Relaxed);
                    }
                    if let Some(total) = this.total {
                        total.fetch_add(n, Ordering::Relaxed);
                    }
                }
                // With a known length the server stops polling after the last byte, so the
                // end is noticed here rather than by a final `None`.
                this.inner.is_end_stream()
            }
            Poll::Ready(None) => true,
            Poll::Ready(Some(Err(_))) | Poll::Pending => false,
        };
        if ended && let Some(on_end) = this.on_end.take() {
            on_end.on_end(*this.bytes, true);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// Every response the edge sends: proxied from the tunnel, or made by the edge itself.
    #[project = EdgeBodyProj]
    pub enum EdgeBody {
        Proxied { #[pin] body: Metered },
        Local { #[pin] body: Full<Bytes> },
    }
}

impl EdgeBody {
    pub fn full(bytes: impl Into<Bytes>) -> EdgeBody {
        EdgeBody::Local {
            body: Full::new(bytes.into()),
        }
    }

    pub fn empty() -> EdgeBody {
        EdgeBody::full(Bytes::new())
    }
}

impl Body for EdgeBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            EdgeBodyProj::Proxied { body } => body.poll_frame(cx),
            EdgeBodyProj::Local { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EdgeBody::Proxied { body } => body.is_end_stream(),
            EdgeBody::Local { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EdgeBody::Proxied { body } => body.size_hint(),
            EdgeBody::Local { body } => body.size_hint(),
        }
    }
}

pin_project! {
    /// A response body that holds `guard` until it is done (sent or dropped): how a hyper
    /// connection knows a request is still in flight.
    pub struct Tracked<G> {
        #[pin]
        inner: EdgeBody,
        guard: G,
    }
}

impl<G> Tracked<G> {
    pub fn new(inner: EdgeBody, guard: G) -> Tracked<G> {
        Tracked { inner, guard }
    }
}

impl<G> Body for Tracked<G> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
