//! A request another edge relayed here (`relay/`), on the relay listener: only requests
//! carrying the cluster's relay key, never relayed again, served from this edge's own sessions.

use crate::body::EdgeBody;
use crate::error::EdgeError;
use crate::host::{self, Target};
use crate::relay::{
    RELAY_HOPS, RELAY_KEY, RELAY_MOVED, RELAY_PROTO, RELAY_REQUEST_ID, RELAY_VISITOR,
    strip_relay_headers,
};
use crate::visitor::RequestContext;
use crate::visitor::Visitors;
use crate::visitor::forward;
use crate::visitor::serve::Conn;
use http::{Request, Response};
use hyper::body::Incoming;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// Most edges a request may cross; a relayed request is served locally or fails.
pub const MAX_HOPS: u32 = 1;

pub async fn handle(
    visitors: &Arc<Visitors>,
    mut req: Request<Incoming>,
    conn: &Conn,
) -> Result<Response<EdgeBody>, EdgeError> {
    let peer = conn.peer;
    let Some(relay) = visitors.relay.as_ref() else {
        return Err(EdgeError::NotFound);
    };
    let authentic = req
        .headers()
        .get(&RELAY_KEY)
        .is_some_and(|key| relay.accepts(key.as_bytes()));
    if !authentic {
        tracing::warn!(peer = %peer, "relay request without a valid relay key refused");
        return Err(EdgeError::NotFound);
    }
    let hops: u32 = header_str(&req, &RELAY_HOPS)
        .and_then(|h| h.parse().ok())
        .unwrap_or(u32::MAX);
    if hops > MAX_HOPS {
        return Err(EdgeError::BadRequest(
            "the request was relayed too many times".into(),
        ));
    }
    let visitor: IpAddr = header_str(&req, &RELAY_VISITOR)
        .and_then(|v| v.parse().ok())
        .unwrap_or(peer.ip());
    let request_id = header_str(&req, &RELAY_REQUEST_ID)
        .filter(|id| !id.is_empty() && id.len() <= 128)
        .map_or_else(|| visitors.next_request_id(), str::to_string);
    // Only the two schemes an edge listens with; anything else is treated as plain HTTP.
    let proto = match header_str(&req, &RELAY_PROTO) {
        Some("https") => "https",
        _ => "http",
    };
    strip_relay_headers(req.headers_mut());
    // The first edge passed on the client-address fields only from its trusted proxies, so
    // what arrives is extended, as from a trusted proxy.
    let ctx = RequestContext {
        peer: SocketAddr::new(visitor, 0),
        trusted: true,
        proto,
        request_id,
        started: Instant::now(),
        listener: conn.listener,
        admission: conn.admission.clone(),
    };
    let hostname =
        match host::classify_among(&host::request_host(&req)?, visitors.config.domains())? {
            Target::Tunnel(hostname) | Target::Custom(hostname) => hostname,
            Target::Apex => return Err(EdgeError::NotFound),
        };
    // No second hop: if this edge lost the session meanwhile (or it is draining while its
    // agent moves to another edge), the first edge is told to look again and hold or retry.
    match visitors.agents.registry.lookup(&hostname) {
        Some(tunnel) if !tunnel.session.is_going_away() => {
            forward::forward(visitors, tunnel, req, &ctx).await
        }
        _ => Ok(moved(&ctx.request_id)),
    }
}

/// A 502 `agent-unreachable` marked [`RELAY_MOVED`]: the first edge retries it elsewhere.
fn moved(request_id: &str) -> Response<EdgeBody> {
    let mut response =
        crate::forwarding::error_page::render(&EdgeError::AgentUnreachable, false, request_id);
    response
        .headers_mut()
        .insert(&RELAY_MOVED, http::HeaderValue::from_static("1"));
    response
}

fn header_str<'a>(req: &'a Request<Incoming>, name: &http::HeaderName) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}
