//! The visitor's edge side of a relay: find the edge that holds the tunnel, send the request
//! to its relay listener, stream the answer back.

use super::directory::Directory;
use super::{
    RELAY_HOPS, RELAY_KEY, RELAY_PROTO, RELAY_REQUEST_ID, RELAY_VISITOR, strip_relay_headers,
};
use crate::body::{EdgeBody, Metered};
use crate::error::EdgeError;
use crate::forwarding::headers;
use crate::routes::{Route, RouteTable};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body::Body as _;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What goes to the owning edge: the visitor's body (handed over on first poll), or nothing.
type RelayBody = Either<Deferred, Empty<Bytes>>;

/// The visitor's body, left with this edge until the relay first asks it for data. If the
/// attempt fails before that (the owning edge is gone: connection refused), nothing was sent,
/// so the request — body included — can be held and sent again.
pub struct Deferred {
    slot: Arc<Mutex<Option<Incoming>>>,
    taken: Option<Incoming>,
    hint: http_body::SizeHint,
}

impl Deferred {
    fn new(body: Incoming) -> (Deferred, Arc<Mutex<Option<Incoming>>>) {
        let hint = body.size_hint();
        let slot = Arc::new(Mutex::new(Some(body)));
        (
            Deferred {
                slot: slot.clone(),
                taken: None,
                hint,
            },
            slot,
        )
    }
}

impl http_body::Body for Deferred {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        if self.taken.is_none() {
            let body = take(&self.slot);
            self.taken = body;
        }
        match self.taken.as_mut() {
            Some(body) => std::pin::Pin::new(body).poll_frame(cx),
            // Given back to the visitor's request after a failure: this attempt is over.
            None => std::task::Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.hint
    }
}

/// Takes the body out of its slot; a poisoned lock still holds a whole `Option`.
fn take(slot: &Mutex<Option<Incoming>>) -> Option<Incoming> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// How long a looked-up route is trusted before Redis is asked again.
const ROUTE_CACHE_FOR: Duration = Duration::from_secs(2);
/// How long a hostname nobody serves is remembered as such: a flood of requests for random
/// hostnames then costs one Redis round trip per hostname per second, not one per request.
const ABSENT_FOR: Duration = Duration::from_secs(1);
/// Most hostnames remembered as absent (past it, expired ones go, then all).
const MAX_ABSENT: usize = 100_000;

/// What this edge needs to relay: the directory, a pooled client and the relay key.
pub struct Relay {
    pub directory: Directory,
    client: Client<HttpConnector, RelayBody>,
    key: HeaderValue,
    routes: Mutex<HashMap<String, (Route, Instant)>>,
    /// Hostnames the route table had no route for, and when it said so.
    absent: Mutex<HashMap<String, Instant>>,
}

/// A relay key that cannot travel in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the relay key must be printable ASCII")]
pub struct BadRelayKey;

impl Relay {
    pub fn new(directory: Directory, key: &str) -> Result<Relay, BadRelayKey> {
        let mut key = HeaderValue::from_str(key).map_err(|_| BadRelayKey)?;
        key.set_sensitive(true);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(Relay {
            directory,
            client,
            key,
            routes: Mutex::new(HashMap::new()),
            absent: Mutex::new(HashMap::new()),
        })
    }

    /// Checks a presented relay key in constant time.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let expected = self.key.as_bytes();
        presented.len() == expected.len()
            && presented
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    fn cached(&self) -> MutexGuard<'_, HashMap<String, (Route, Instant)>> {
        // Each use is one map call; a poisoned lock still holds a consistent map.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn absent(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        // Each use is one map call; a poisoned lock still holds a consistent map.
        self.absent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember_absent(&self, hostname: &str) {
        let mut absent = self.absent();
        if absent.len() >= MAX_ABSENT {
            absent.retain(|_, at| at.elapsed() < ABSENT_FOR);
            if absent.len() >= MAX_ABSENT {
                absent.clear();
            }
        }
        absent.insert(hostname.to_string(), Instant::now());
    }

    fn recently_absent(&self, hostname: &str) -> bool {
        self.absent()
            .get(hostname)
            .is_some_and(|at| at.elapsed() < ABSENT_FOR)
    }

    fn forget(&self, hostname: &str, edge_id: &str) {
        self.cached().remove(hostname);
        self.directory.invalidate(edge_id);
    }
}

/// Who serves a hostname this edge does not.
pub enum Owner {
    /// The route names this edge, but no session here serves it: the session just ended or
    /// its agent is reconnecting.
    Here,
    /// Another edge, reachable at its relay address.
    Remote { edge_id: String, relay_addr: String },
    /// The route names an edge that is not in the directory (it died; its lease will expire).
    Gone,
}

/// The owning edge's answer. After a 101, the caller joins the two upgraded connections
/// (`upgrade`: the visitor's, the owning edge's).
pub struct Relayed {
    pub response: Response<EdgeBody>,
    pub upgrade: Option<(OnUpgrade, OnUpgrade)>,
}

/// Why a relay did not produce a response.
pub enum RelayFailure {
    /// The owning edge could not be reached. A request whose body had not been touched (or
    /// that had none) is given back, so it can be held and sent again.
    Unreachable(Option<Box<Request<Incoming>>>),
    /// Anything else, as the visitor will see it.
    Failed(EdgeError),
}

/// What the owning edge is told about the visitor's request (as the first edge saw it).
pub struct Origin<'a> {
    pub visitor: std::net::IpAddr,
    /// Whether the visitor's peer is a trusted proxy: only then do its client-address fields
    /// travel on (the owning edge extends what arrives).
    pub trusted: bool,
    /// `http` or `https`.
    pub proto: &'static str,
    pub request_id: &'a str,
}

/// Finds the owner of `hostname` (this edge is `edge_id`); `None` when nobody holds it. A
/// hostname found absent within the last second is not looked up again unless `fresh` (a
/// held request waiting for its agent to come back wants the newest answer).
pub async fn resolve(
    relay: &Relay,
    routes: &dyn RouteTable,
    edge_id: &str,
    hostname: &str,
    fresh: bool,
) -> Result<Option<Owner>, EdgeError> {
    if !fresh && relay.recently_absent(hostname) {
        return Ok(None);
    }
    let Some(route) = route(relay, routes, hostname).await? else {
        return Ok(None);
    };
    if route.edge_id == edge_id {
        relay.cached().remove(hostname);
        return Ok(Some(Owner::Here));
    }
    match relay.directory.lookup(&route.edge_id).await {
        Ok(Some(entry)) => Ok(Some(Owner::Remote {
            edge_id: route.edge_id,
            relay_addr: entry.relay_addr,
        })),
        Ok(None) => {
            relay.forget(hostname, &route.edge_id);
            Ok(Some(Owner::Gone))
        }
        Err(e) => {
            tracing::warn!(error = %e, "edge directory unavailable");
            Err(EdgeError::AgentUnreachable)
        }
    }
}

/// Sends the request to the edge at `relay_addr` and streams its answer back; `timeout` bounds
/// the wait for the response head.
pub async fn relay(
    relay: &Relay,
    (edge_id, relay_addr): (&str, &str),
    hostname: &str,
    req: Request<Incoming>,
    origin: &Origin<'_>,
    timeout: Duration,
) -> Result<Relayed, RelayFailure> {
    let visitor_version = req.version();
    let (mut parts, body) = req.into_parts();
    // The request can be sent again if this attempt fails before the body was touched; keep
    // its parts, and the body until the relay asks for it.
    let (outbound_body, kept_body) = if body.is_end_stream() {
        (
            Either::Right(Empty::new()),
            Arc::new(Mutex::new(Some(body))),
        )
    } else {
        let (deferred, slot) = Deferred::new(body);
        (Either::Left(deferred), slot)
    };
    let mut outbound = outbound_request(relay, &parts, outbound_body, relay_addr, hostname, origin)
        .map_err(RelayFailure::Failed)?;
    let (mut head, body) = outbound.into_parts();
    headers::frame_unknown_length(&mut head.headers, &body);
    outbound = Request::from_parts(head, body);
    let sent = tokio::time::timeout(timeout, relay.client.request(outbound));
    let mut response = match sent.await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            tracing::debug!(edge = %edge_id, error = %e, "relay to the owning edge failed");
            relay.forget(hostname, edge_id);
            let given_back =
                take(&kept_body).map(|body| Box::new(Request::from_parts(parts, body)));
            return Err(RelayFailure::Unreachable(given_back));
        }
        Err(_) => {
            return Err(RelayFailure::Failed(EdgeError::LocalTimeout(
                timeout.as_secs(),
            )));
        }
    };
    if response.headers().contains_key(&super::RELAY_MOVED) {
        // The owner no longer serves it (draining, or its session just ended): nothing reached
        // the agent, so a request without a body is tried again once the route has moved.
        tracing::debug!(edge = %edge_id, host = %hostname, "the owning edge no longer serves the tunnel");
        relay.forget(hostname, edge_id);
        let given_back = take(&kept_body).map(|body| Box::new(Request::from_parts(parts, body)));
        return Err(RelayFailure::Unreachable(given_back));
    }
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(visitor_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(RelayFailure::Failed(EdgeError::LocalError(
                "the owning edge switched protocols unasked".into(),
            )));
        };
        let owner_upgrade = hyper::upgrade::on(&mut response);
        headers::response_for_visitor(response.headers_mut(), true);
        return Ok(Relayed {
            response: response.map(|_| EdgeBody::empty()),
            upgrade: Some((visitor_upgrade, owner_upgrade)),
        });
    }
    let (mut parts, body) = response.into_parts();
    headers::response_for_visitor(&mut parts.headers, false);
    parts.version = match visitor_version {
        Version::HTTP_10 => Version::HTTP_11,
        version => version,
    };
    Ok(Relayed {
        response: Response::from_parts(
            parts,
            EdgeBody::Proxied {
                body: Metered::new(body),
            },
        ),
        upgrade: None,
    })
}

/// The route of `hostname`: from the short cache, else from the route table.
async fn route(
    relay: &Relay,
    routes: &dyn RouteTable,
    hostname: &str,
) -> Result<Option<Route>, EdgeError> {
    if let Some((route, at)) = relay.cached().get(hostname)
        && at.elapsed() < ROUTE_CACHE_FOR
    {
        return Ok(Some(route.clone()));
    }
    match routes.lookup(hostname).await {
        Ok(Some(route)) => {
            relay
                .cached()
                .insert(hostname.to_string(), (route.clone(), Instant::now()));
            Ok(Some(route))
        }
        Ok(None) => {
            relay.remember_absent(hostname);
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(error = %e, "route table unavailable");
            Err(EdgeError::AgentUnreachable)
        }
    }
}

fn outbound_request(
    relay: &Relay,
    parts: &http::request::Parts,
    body: RelayBody,
    relay_addr: &str,
    hostname: &str,
    origin: &Origin<'_>,
) -> Result<Request<RelayBody>, EdgeError> {
    let wants_upgrade = parts.version == Version::HTTP_11 && headers::is_upgrade(&parts.headers);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = Uri::try_from(format!("http://{relay_addr}{path}"))
        .map_err(|_| EdgeError::BadRequest("the request target is not a valid path".into()))?;
    let mut headers = parts.headers.clone();
    headers::strip_hop_by_hop(&mut headers, wants_upgrade);
    strip_relay_headers(&mut headers);
    if !origin.trusted {
        headers::strip_client_fields(&mut headers);
    }
    headers.remove(header::EXPECT);
    let host = HeaderValue::from_str(hostname)
        .map_err(|_| EdgeError::BadRequest("the host is not valid".into()))?;
    headers.insert(header::HOST, host);
    headers.insert(&RELAY_KEY, relay.key.clone());
    headers.insert(&RELAY_HOPS, HeaderValue::from_static("1"));
    headers.insert(&RELAY_PROTO, HeaderValue::from_static(origin.proto));
    if let Ok(visitor) = HeaderValue::from_str(&origin.visitor.to_string()) {
        headers.insert(&RELAY_VISITOR, visitor);
    }
    if let Ok(id) = HeaderValue::from_str(origin.request_id) {
        headers.insert(&RELAY_REQUEST_ID, id);
    }
    let mut outbound = Request::new(body);
    *outbound.method_mut() = parts.method.clone();
    *outbound.uri_mut() = uri;
    *outbound.version_mut() = Version::HTTP_11;
    *outbound.headers_mut() = headers;
    Ok(outbound)
}
