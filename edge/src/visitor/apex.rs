//! Requests for the edge's own domain: the tunnel endpoint, health checks, and the latency
//! probe agents time to pick the nearest region (`GET /_warren/probe`).

use crate::body::EdgeBody;
use crate::error::EdgeError;
use crate::limits::Listener;
use crate::tunnel::endpoint::{self, TUNNEL_PATH};
use crate::visitor::{RequestContext, Visitors};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::sync::Arc;

/// What agents time (a fresh connection plus one request) to choose a region.
pub const PROBE_PATH: &str = "/_warren/probe";

/// Whether `path` is one of the edge's own endpoints, served even on a connection over a cap.
pub fn is_own_endpoint(path: &str) -> bool {
    matches!(path, TUNNEL_PATH | PROBE_PATH | "/healthz" | "/readyz")
}

pub fn handle(
    visitors: &Arc<Visitors>,
    req: Request<Incoming>,
    ctx: &RequestContext,
) -> Result<Response<EdgeBody>, EdgeError> {
    match req.uri().path() {
        TUNNEL_PATH => {
            // A session counts against the agents' cap, whichever listener it came on.
            let admission = match ctx.listener {
                Listener::Tunnel => ctx.admission.clone(),
                _ => visitors
                    .limits
                    .admit(Listener::Tunnel)
                    .map(Arc::new)
                    .ok_or(EdgeError::Overloaded)?,
            };
            endpoint::accept(&visitors.agents, req, ctx.peer, admission)
        }
        PROBE_PATH => Ok(probe(&visitors.config.region)),
        "/healthz" => Ok(text(StatusCode::OK, "ok\n")),
        "/readyz" if visitors.life.draining.is_cancelled() => {
            Ok(text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"))
        }
        "/readyz" => Ok(text(StatusCode::OK, "ready\n")),
        "/" => Ok(text(
            StatusCode::OK,
            "Warren edge. Tunnels are served at NAME.<this domain>; agents connect to /_warren/tunnel.\n",
        )),
        _ => Err(EdgeError::NotFound),
    }
}

/// `204 No Content`, never cached (a cached answer would time the cache, not this edge), naming
/// the edge's region so a misrouted probe URL is visible.
pub fn probe(region: &str) -> Response<EdgeBody> {
    let mut response = Response::new(EdgeBody::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // A region id that is not a valid header value only loses the header, not the probe.
    if let Ok(value) = HeaderValue::from_str(region) {
        headers.insert(REGION_HEADER, value);
    }
    response
}

/// The header a probe answer names the edge's region in.
pub const REGION_HEADER: &str = "warren-region";

fn text(status: StatusCode, body: &'static str) -> Response<EdgeBody> {
    let mut response = Response::new(EdgeBody::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_an_uncached_204_naming_the_region() {
        let response = probe("eu");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(response.headers()[REGION_HEADER], "eu");
        let odd = probe("bad\nregion");
        assert_eq!(odd.status(), StatusCode::NO_CONTENT);
        assert!(odd.headers().get(REGION_HEADER).is_none());
    }
}
