//! A visitor request on its way to the local service: rewrite its headers, send it down the
//! tunnel, stream the response back, and tell the agent how it went.

use crate::body::{EdgeBody, Metered, OnEnd};
use crate::error::EdgeError;
use crate::forwarding::{Forwarding, headers, trailers};
use crate::tunnel::LiveTunnel;
use crate::tunnel::request_log::RequestLogQueue;
use crate::visitor::RequestContext;
use crate::visitor::Visitors;
use crate::visitor::upgrade;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use warren_proto::TunnelId;
use warren_proto::control::RequestLog;

/// Longest path kept in a request log line.
const MAX_LOGGED_PATH: usize = 512;
/// Longest method kept in a request log line (extension methods can be any token).
const MAX_LOGGED_METHOD: usize = 32;

pub async fn forward(
    visitors: &Arc<Visitors>,
    tunnel: Arc<LiveTunnel>,
    mut req: Request<Incoming>,
    ctx: &RequestContext,
) -> Result<Response<EdgeBody>, EdgeError> {
    if req.method() == Method::CONNECT {
        return Err(EdgeError::BadRequest(
            "CONNECT is not supported: Warren serves tunnels, it is not a forward proxy".into(),
        ));
    }
    tunnel.counters.requests.fetch_add(1, Ordering::Relaxed);
    let visitor_version = req.version();
    let wants_upgrade = visitor_version == Version::HTTP_11 && headers::is_upgrade(req.headers());
    let visitor_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
    let mut log = tunnel
        .request_log
        .as_ref()
        .map(|queue| RequestLogger::new(queue.clone(), &tunnel, &req, ctx));
    let bytes_in = log.as_ref().map(|l| l.bytes_in.clone());

    let (mut parts, body) = req.into_parts();
    // The host the request was routed by (see `host::request_host`) is the one the local
    // service gets, unless the tunnel asked for another.
    let authority = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    let routed_host = authority
        .clone()
        .or_else(|| parts.headers.get(header::HOST).cloned());
    let routed_host = routed_host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .unwrap_or(&tunnel.hostname)
        .to_string();
    headers::join_cookies(&mut parts.headers);
    // The edge answered any `Expect: 100-continue` itself when it started reading the body.
    parts.headers.remove(header::EXPECT);
    // Without an authority (every HTTP/1.1 request in origin form) the visitor's `Host` is the
    // one routed by and stays as it is.
    if let Some(authority) = authority {
        parts.headers.insert(header::HOST, authority);
    }
    let forwarding = Forwarding {
        peer: ctx.peer.ip(),
        trusted: ctx.trusted,
        proto: ctx.proto,
        request_id: &ctx.request_id,
        host_override: tunnel.host_header.as_deref(),
    };
    headers::request_for_local(&mut parts.headers, &forwarding, &routed_host, wants_upgrade);
    headers::frame_unknown_length(&mut parts.headers, &body);
    parts.uri = origin_form(&parts.uri);
    parts.version = Version::HTTP_11;
    let body = Metered::new(body)
        .adding_to(tunnel.counters.bytes_in.clone())
        .filtering_trailers(trailers::filter_map);
    let body = match bytes_in {
        Some(counter) => body.counting_into(counter),
        None => body,
    };

    let mut response = match tunnel
        .send(
            Request::from_parts(parts, body),
            visitors.config.upstream_timeout,
        )
        .await
    {
        Ok(response) => response,
        Err(error) => {
            // The visitor gets the edge's error page: log its status, not "no response".
            if let Some(log) = log.take() {
                log.finish(error.status().as_u16(), 0, Some(error.code()));
            }
            return Err(error);
        }
    };

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(visitor_upgrade) = visitor_upgrade else {
            return Err(EdgeError::LocalError(
                "the local service switched protocols unasked".into(),
            ));
        };
        let local_upgrade = hyper::upgrade::on(&mut response);
        upgrade::splice(
            visitor_upgrade,
            local_upgrade,
            ctx.request_id.clone(),
            Some(&tunnel.counters),
            upgrade::Spliced {
                life: visitors.life.clone(),
                admission: ctx.admission.clone(),
                idle_timeout: visitors.config.websocket_idle_timeout,
            },
        );
        if let Some(log) = log.take() {
            log.finish(101, 0, None);
        }
        headers::response_for_visitor(response.headers_mut(), true);
        return Ok(response.map(|_| EdgeBody::empty()));
    }

    let (mut parts, body) = response.into_parts();
    headers::response_for_visitor(&mut parts.headers, false);
    // The visitor's connection has its own version (an HTTP/1.0 local service still answers
    // an HTTP/1.1 or HTTP/2 visitor in the visitor's version). An HTTP/1.0 visitor gets an
    // HTTP/1.1 response head, which hyper downgrades itself: given an HTTP/1.0 head, hyper
    // would close a connection the visitor asked to keep alive.
    parts.version = match visitor_version {
        Version::HTTP_10 => Version::HTTP_11,
        version => version,
    };
    let status = parts.status.as_u16();
    let body = Metered::new(body)
        .adding_to(tunnel.counters.bytes_out.clone())
        .filtering_trailers(trailers::filter_map);
    let body = match log {
        Some(mut log) => {
            log.status = status;
            body.on_end(Box::new(log))
        }
        None => body,
    };
    Ok(Response::from_parts(parts, EdgeBody::Proxied { body }))
}

/// `/path?query` for the request line to the local service.
fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(path)
}

/// Queues one `RequestLog` for the agent when the response ends (`tunnel/request_log.rs`).
pub(crate) struct RequestLogger {
    queue: Arc<RequestLogQueue>,
    tunnel: TunnelId,
    request_id: String,
    method: String,
    path: String,
    started: Instant,
    status: u16,
    bytes_in: Arc<AtomicU64>,
}

impl RequestLogger {
    fn new(
        queue: Arc<RequestLogQueue>,
        tunnel: &LiveTunnel,
        req: &Request<Incoming>,
        ctx: &RequestContext,
    ) -> RequestLogger {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        RequestLogger::start(
            queue,
            tunnel.id,
            ctx.request_id.clone(),
            req.method().as_str(),
            path,
            ctx.started,
        )
    }

    pub(crate) fn start(
        queue: Arc<RequestLogQueue>,
        tunnel: TunnelId,
        request_id: String,
        method: &str,
        path: &str,
        started: Instant,
    ) -> RequestLogger {
        RequestLogger {
            queue,
            tunnel,
            request_id,
            method: truncated(method, MAX_LOGGED_METHOD),
            path: truncated(path, MAX_LOGGED_PATH),
            started,
            status: 0,
            bytes_in: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records request body bytes sent on (the proxy core counts them itself).
    pub(crate) fn set_bytes_in(&self, bytes: u64) {
        self.bytes_in.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn finish(self, status: u16, bytes_out: u64, error: Option<&str>) {
        let log = RequestLog {
            tunnel: self.tunnel,
            request_id: self.request_id,
            method: self.method,
            path: self.path,
            status,
            duration_us: self.started.elapsed().as_micros() as u64,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out,
            error: error.map(str::to_string),
        };
        self.queue.push(log);
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncated(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

impl OnEnd for RequestLogger {
    fn on_end(self: Box<Self>, bytes: u64, complete: bool) {
        let status = self.status;
        let error = (!complete).then_some("response-interrupted");
        self.finish(status, bytes, error);
    }
}
