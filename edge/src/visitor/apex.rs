//! Requests for the edge's own domain: the tunnel endpoint and health checks.

use crate::error::EdgeError;
use crate::state::EdgeState;
use crate::tunnel::endpoint::{self, TUNNEL_PATH};
use crate::visitor::body::EdgeBody;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;

pub fn handle(
    state: &Arc<EdgeState>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<EdgeBody>, EdgeError> {
    match req.uri().path() {
        TUNNEL_PATH => endpoint::accept(state, req, peer),
        "/healthz" => Ok(text(StatusCode::OK, "ok\n")),
        "/readyz" if state.shutdown.is_cancelled() => {
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

fn text(status: StatusCode, body: &'static str) -> Response<EdgeBody> {
    let mut response = Response::new(EdgeBody::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
