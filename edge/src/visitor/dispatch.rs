//! Where a visitor request goes: the edge itself, or a tunnel. Every failure on the way
//! becomes an error page here, in one place.

use crate::body::EdgeBody;
use crate::error::EdgeError;
use crate::forwarding::error_page;
use crate::host::{self, Target};
use crate::limits::Refusal;
use crate::visitor::Visitors;
use crate::visitor::serve::Conn;
use crate::visitor::{RequestContext, apex, forward, hold};
use http::{Request, Response};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

pub use crate::limits::Listener;

pub async fn handle(
    visitors: Arc<Visitors>,
    req: Request<Incoming>,
    conn: &Conn,
) -> Result<Response<EdgeBody>, Infallible> {
    let listener = conn.listener;
    let peer = conn.peer;
    let ctx = RequestContext {
        peer,
        trusted: visitors.trusted.trusts(peer.ip()),
        proto: if listener == Listener::Tls {
            "https"
        } else {
            "http"
        },
        request_id: request_id(&visitors, &req),
        started: Instant::now(),
        listener,
        admission: conn.admission.clone(),
    };
    let html = error_page::wants_html(req.headers());
    let result = match (listener, conn.admission.refusal()) {
        (Listener::Visitor | Listener::Tls, Some(refusal)) => {
            refused(&visitors, req, &ctx, refusal)
        }
        (Listener::Tunnel, _) => apex::handle(&visitors, req, &ctx),
        (Listener::Visitor, None) if visitors.tls.is_some() => {
            redirect_or_route(&visitors, req, &ctx).await
        }
        (Listener::Visitor | Listener::Tls, None) => route(&visitors, req, &ctx).await,
        (Listener::Relay, _) => crate::visitor::relayed::handle(&visitors, req, conn).await,
        (Listener::Admin, _) => {
            crate::admin::handle(visitors.tls.as_deref(), &visitors.limits, req).await
        }
    };
    Ok(result.unwrap_or_else(|error| {
        tracing::debug!(visitor = %peer, request_id = %ctx.request_id, %error, side = ?error.side(), "request failed");
        let mut page = error_page::render(&error, html, &ctx.request_id);
        if conn.admission.refusal().is_some() {
            // A connection over a cap is answered once, then closed.
            page.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        page
    }))
}

/// A connection over a cap (`limits.rs`): the edge's own endpoints on its own domain are still
/// served — an agent connecting, a health check — and everything else is refused, the
/// connection closing after the answer.
fn refused(
    visitors: &Arc<Visitors>,
    req: Request<Incoming>,
    ctx: &RequestContext,
    refusal: Refusal,
) -> Result<Response<EdgeBody>, EdgeError> {
    let apex = host::request_host(&req)
        .and_then(|host| host::classify_among(&host, visitors.config.domains()))
        .is_ok_and(|target| target == Target::Apex);
    if apex && apex::is_own_endpoint(req.uri().path()) {
        return apex::handle(visitors, req, ctx);
    }
    Err(match refusal {
        Refusal::Full => EdgeError::EdgeBusy,
        Refusal::TooManyFromAddress => EdgeError::TooManyConnections,
    })
}

async fn route(
    visitors: &Arc<Visitors>,
    req: Request<Incoming>,
    ctx: &RequestContext,
) -> Result<Response<EdgeBody>, EdgeError> {
    let host = host::request_host(&req)?;
    match host::classify_among(&host, visitors.config.domains())? {
        Target::Apex => apex::handle(visitors, req, ctx),
        Target::Tunnel(hostname) => match visitors.agents.registry.lookup(&hostname) {
            // A session on this edge serves it: no Redis round trip.
            Some(tunnel) if !tunnel.session.is_going_away() => {
                forward::forward(visitors, tunnel, req, ctx).await
            }
            // Not here, its session just died and is being cleaned up, or it is draining (its
            // agent is moving to another edge).
            _ => hold::elsewhere(visitors, hostname, req, ctx).await,
        },
        // A custom domain: served like a tunnel hostname when a session (here or on another
        // edge) holds its route; otherwise the name is simply not one of this Warren's.
        Target::Custom(hostname) => match visitors.agents.registry.lookup(&hostname) {
            Some(tunnel) if !tunnel.session.is_going_away() => {
                forward::forward(visitors, tunnel, req, ctx).await
            }
            _ => match hold::elsewhere(visitors, hostname, req, ctx).await {
                Err(EdgeError::UnknownTunnel { host }) => Err(EdgeError::UnknownHost { host }),
                other => other,
            },
        },
    }
}

/// With TLS on, the plain listener answers ACME HTTP-01 challenges and the edge's own
/// `/_warren/*` endpoints (agents, probes, health), and redirects everything else to HTTPS.
async fn redirect_or_route(
    visitors: &Arc<Visitors>,
    req: Request<Incoming>,
    ctx: &RequestContext,
) -> Result<Response<EdgeBody>, EdgeError> {
    let path = req.uri().path();
    if let Some(token) = path.strip_prefix(ACME_CHALLENGE_PREFIX) {
        return acme_challenge(visitors, token).await;
    }
    if path.starts_with("/_warren/") || path == "/healthz" || path == "/readyz" {
        return route(visitors, req, ctx).await;
    }
    let host = host::request_host(&req)?;
    let port = match (
        visitors.config.public_scheme.as_str(),
        visitors.config.public_port,
    ) {
        ("https", Some(port)) => Some(port),
        _ => visitors.tls_addr.map(|a| a.port()),
    };
    let authority = match port {
        Some(443) | None => host,
        Some(port) => format!("{host}:{port}"),
    };
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{authority}{path_and_query}");
    let mut response = Response::new(EdgeBody::empty());
    *response.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
    let location = http::HeaderValue::from_str(&location)
        .map_err(|_| EdgeError::BadRequest("the request target cannot be redirected".into()))?;
    response
        .headers_mut()
        .insert(http::header::LOCATION, location);
    Ok(response)
}

/// Where ACME HTTP-01 validation requests arrive (RFC 8555 §8.3).
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

async fn acme_challenge(visitors: &Visitors, token: &str) -> Result<Response<EdgeBody>, EdgeError> {
    let manager = visitors.tls.as_ref().and_then(|t| t.manager.as_ref());
    let Some(manager) = manager else {
        return Err(EdgeError::NotFound);
    };
    let answer = manager
        .http01_answer(token)
        .await
        .ok_or(EdgeError::NotFound)?;
    let mut response = Response::new(EdgeBody::full(answer));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

/// The visitor's own `X-Request-Id` if it is sane, else a fresh one.
fn request_id(visitors: &Visitors, req: &Request<Incoming>) -> String {
    req.headers()
        .get(&crate::forwarding::headers::X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| visitors.next_request_id())
}
