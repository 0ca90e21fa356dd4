//! Sending a visitor request down a tunnel.
//!
//! Each upstream connection is an HTTP/1.1 client connection (hyper) over one tunnel stream;
//! the agent splices that stream to one TCP connection to the local service. Connections are
//! kept in a per-tunnel pool and reused, so most requests open nothing: no stream, no local
//! connection.

use crate::body::Metered;
use crate::error::EdgeError;
use crate::tunnel::LiveTunnel;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Duration;
use tracing::Instrument;
use warren_proto::mux::OpenError;
use warren_session::{Stream, reset_code_of};

type Sender = SendRequest<Metered>;

/// Idle upstream connections of one tunnel, most recently used last: hyper client
/// connections (the general path) and bare streams (the HTTP/1.1 proxy core, `visitor/h1/`).
pub(crate) struct Pool {
    idle: Mutex<Vec<Sender>>,
    streams: Mutex<Vec<Stream>>,
    max_idle: usize,
}

impl Pool {
    pub(crate) fn new(max_idle: usize) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            streams: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// An idle stream whose local connection is still open. A stream the local service
    /// closed (or wrote to, unasked) while it sat here is dropped.
    pub(crate) fn checkout_stream(&self) -> Option<Stream> {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let stream = self
                .streams
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()?;
            if stream.poll_read_chunk(&mut cx, 1).is_pending() {
                return Some(stream);
            }
        }
    }

    pub(crate) fn checkin_stream(&self, stream: Stream) {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if streams.len() < self.max_idle {
            streams.push(stream);
        }
    }

    fn checkout(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(sender) = idle.pop() {
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    fn checkin(&self, sender: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(sender);
        }
    }

    /// Drops every idle connection (their streams close).
    pub(crate) fn clear(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let streams = std::mem::take(&mut *self.streams.lock().unwrap_or_else(|p| p.into_inner()));
        drop(streams);
    }
}

impl LiveTunnel {
    /// Sends `request` to the local service behind this tunnel and waits up to `timeout` for
    /// the response head. The body streams afterwards, at the visitor's pace.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<Metered>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, EdgeError> {
        let exchange = async {
            // A pooled connection can be closed by the local service between checkout and use;
            // hyper hands the request back if it was not sent, and it goes on a fresh one.
            if let Some(mut sender) = self.pool.checkout() {
                match sender.try_send_request(request).await {
                    Ok(response) => return Ok((sender, response)),
                    Err(mut e) => match e.take_message() {
                        Some(unsent) => request = unsent,
                        None => return Err(self.classify(&e.into_error())),
                    },
                }
            }
            let mut sender = self.connect().await?;
            match sender.send_request(request).await {
                Ok(response) => Ok((sender, response)),
                Err(e) => Err(self.classify(&e)),
            }
        };
        let (mut sender, response) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| EdgeError::LocalTimeout(timeout.as_secs()))??;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            // The connection is reusable once the response body has been read to the end.
            let tunnel = self.clone();
            tokio::spawn(async move {
                if sender.ready().await.is_ok() && !tunnel.session.is_going_away() {
                    tunnel.pool.checkin(sender);
                }
            });
        }
        Ok(response)
    }

    /// An idle upstream stream from the pool, else a new one (no round trip: the request
    /// follows the OPEN frame). The flag says whether it was reused.
    pub(crate) fn stream(&self) -> Result<(Stream, bool), EdgeError> {
        if let Some(stream) = self.pool.checkout_stream() {
            return Ok((stream, true));
        }
        self.open_stream().map(|s| (s, false))
    }

    pub(crate) fn open_stream(&self) -> Result<Stream, EdgeError> {
        self.lanes
            .open(&self.session, self.id)
            .map_err(|e| match e {
                OpenError::TooManyStreams(_) => EdgeError::Overloaded,
                OpenError::GoingAway | OpenError::Closed | OpenError::IdsExhausted => {
                    EdgeError::AgentUnreachable
                }
            })
    }

    /// Returns a stream whose exchange ended cleanly, for the next request.
    pub(crate) fn reuse_stream(&self, stream: Stream) {
        // The stream's own session decides (it may be a lane that is draining, even one already
        // out of the rotation); with lanes, the tunnel's session going away ends them all too.
        let tunnel_closing = !self.lanes.is_empty() && self.session.is_going_away();
        if !stream.is_going_away() && !tunnel_closing {
            self.pool.checkin_stream(stream);
        }
    }

    /// Opens a stream and starts an HTTP/1.1 client connection on it. No round trip: the
    /// request follows the OPEN frame at once.
    async fn connect(&self) -> Result<Sender, EdgeError> {
        let stream = self.open_stream()?;
        let stream_id = stream.id();
        let (sender, connection) = http1::Builder::new()
            .preserve_header_case(true)
            .title_case_headers(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| EdgeError::LocalError(e.to_string()))?;
        let span = tracing::debug_span!("upstream", stream = %stream_id, host = %self.hostname);
        tokio::spawn(
            async move {
                if let Err(e) = connection.with_upgrades().await {
                    tracing::debug!(error = %e, "upstream connection ended");
                }
            }
            .instrument(span),
        );
        Ok(sender)
    }

    /// What a failed exchange means for the visitor.
    pub fn classify(&self, error: &hyper::Error) -> EdgeError {
        if let Some(code) = reset_code_of(error) {
            return EdgeError::from_reset(code);
        }
        // The request body is the visitor's (a `Metered` over the visitor's connection): when
        // reading it fails, the request was malformed or cut short, not the local service.
        if error.is_user()
            && let Some(visitor) = error
                .source()
                .and_then(|source| source.downcast_ref::<hyper::Error>())
        {
            return EdgeError::BadRequest(format!("the request body could not be read: {visitor}"));
        }
        if self.session.is_ended() {
            return EdgeError::AgentUnreachable;
        }
        EdgeError::LocalError(error.to_string())
    }
}
