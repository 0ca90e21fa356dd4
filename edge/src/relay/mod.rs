//! Edge-to-edge relay: any edge serves any hostname. A visitor request reaching this edge for a
//! tunnel held by another edge (same region or not) is relayed to that edge over an
//! authenticated, pooled internal HTTP channel and streams exactly like a local one (bodies,
//! SSE, WebSocket and other upgrades).
//!
//! # Layout (in the order a relayed request travels)
//! - `directory.rs`: the live edge directory in Redis (`edge:{ID}` → region, relay address).
//! - `client.rs`: on the edge the visitor reached: route lookup (cached briefly), then the
//!   request goes to the owning edge's relay listener.
//! - on the owning edge, `visitor/relayed.rs` checks the relay key and the hop count, then
//!   serves the request from its local sessions only (`visitor/forward.rs`).
//!
//! Visitors can never use the relay: it listens on its own internal address, every request
//! must carry the cluster's relay key (compared in constant time), and a relayed request is
//! never relayed again (hop limit 1), so routing loops cannot form.

pub mod client;
pub mod directory;

use http::HeaderName;

/// The cluster's relay key; never forwarded to an agent.
pub static RELAY_KEY: HeaderName = HeaderName::from_static("warren-relay-key");
/// The visitor's address as the first edge saw it.
pub static RELAY_VISITOR: HeaderName = HeaderName::from_static("warren-relay-visitor");
/// How many edges the request has crossed.
pub static RELAY_HOPS: HeaderName = HeaderName::from_static("warren-relay-hops");
/// The scheme the visitor used on the first edge (`http` or `https`): sent on to the agent as
/// `X-Forwarded-Proto`.
pub static RELAY_PROTO: HeaderName = HeaderName::from_static("warren-relay-proto");
/// The request id the first edge assigned.
pub static RELAY_REQUEST_ID: HeaderName = HeaderName::from_static("warren-relay-request-id");

/// On a relay response: the owning edge no longer serves the tunnel (its session ended or is
/// draining, the agent is moving); the first edge looks the route up again and retries.
pub static RELAY_MOVED: HeaderName = HeaderName::from_static("warren-relay-moved");

/// Removes every relay header (a visitor may not set them; an agent never sees them).
pub fn strip_relay_headers(headers: &mut http::HeaderMap) {
    for name in [
        &RELAY_KEY,
        &RELAY_VISITOR,
        &RELAY_HOPS,
        &RELAY_PROTO,
        &RELAY_REQUEST_ID,
    ] {
        headers.remove(name);
    }
}
