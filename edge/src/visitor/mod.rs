//! The visitor side of the edge, in the order a request travels:
//!
//! - `proxy_protocol.rs`, `deadline.rs`, `rewind.rs`: what wraps a connection before HTTP.
//! - `serve.rs`: one visitor connection, its limits and its shutdown. HTTP/1.1 requests for
//!   tunnels served here go through the proxy core, `h1/`; everything else (HTTP/2, upgrades,
//!   the edge's own endpoints, tunnels on other edges, errors) through hyper and the files
//!   below.
//! - `dispatch.rs`: which target the request is for (the edge itself, or a tunnel), by host.
//! - `apex.rs`: the edge's own endpoints (tunnel endpoint, health).
//! - `hold.rs`: a tunnel not served here: relayed to the edge that serves it (`relay/`), or held
//!   while its agent reconnects.
//! - `relayed.rs`: a request another edge relayed here, for a tunnel served here.
//! - `forward.rs`: sending the request down the tunnel and streaming the response back.
//! - `upgrade.rs`: WebSocket and other protocol switches, spliced both ways.
//! - every failure becomes a response in `forwarding/error_page.rs`.
//!
//! What the edge changes in requests and responses on the way is decided in `forwarding/`.

pub mod apex;
pub mod deadline;
pub mod dispatch;
pub mod forward;
pub mod h1;
pub mod hold;
pub mod proxy_protocol;
pub mod relayed;
pub mod rewind;
pub mod serve;
pub mod upgrade;

use crate::config::EdgeConfig;
use crate::forwarding::client::TrustedProxies;
use crate::lifecycle::Lifecycle;
use crate::limits::{Admission, ConnectionLimits};
use crate::relay::client::Relay;
use crate::tls::Tls;
use crate::tunnel::Agents;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Semaphore;

/// Facts about one visitor request that outlive its parts.
pub struct RequestContext {
    /// The address the edge saw (the PROXY header's, with `--proxy-protocol`).
    pub peer: SocketAddr,
    /// Whether `peer` is a trusted proxy (`--trusted-proxy`).
    pub trusted: bool,
    /// `https` on the TLS listener, else `http`: sent on as `X-Forwarded-Proto`.
    pub proto: &'static str,
    pub request_id: String,
    pub started: std::time::Instant,
    /// The listener the request came on.
    pub listener: crate::limits::Listener,
    /// The connection's place under the caps, held by an upgraded connection for its life.
    pub admission: Arc<Admission>,
}

/// The visitor side's shared handles.
pub struct Visitors {
    pub config: Arc<EdgeConfig>,
    /// The tunnels served here, and where agents connect.
    pub agents: Arc<Agents>,
    /// In a cluster: how requests for tunnels held by other edges reach them.
    pub relay: Option<Relay>,
    /// HTTPS for visitors, when the edge serves it.
    pub tls: Option<Arc<Tls>>,
    /// The TLS listener's address: where the visitor listener redirects to.
    pub tls_addr: Option<SocketAddr>,
    /// Caps visitor requests held while their agent reconnects.
    pub held: Arc<Semaphore>,
    /// Peers whose client-address fields are believed (`--trusted-proxy`).
    pub trusted: TrustedProxies,
    /// Admission of connections on every listener.
    pub limits: ConnectionLimits,
    pub life: Lifecycle,
    request_counter: AtomicU64,
}

impl Visitors {
    pub fn new(
        agents: Arc<Agents>,
        relay: Option<Relay>,
        tls: Option<Arc<Tls>>,
        tls_addr: Option<SocketAddr>,
        trusted: TrustedProxies,
        limits: ConnectionLimits,
    ) -> Visitors {
        Visitors {
            trusted,
            limits,
            config: agents.config.clone(),
            held: Arc::new(Semaphore::new(agents.config.max_held)),
            life: agents.life.clone(),
            agents,
            relay,
            tls,
            tls_addr,
            request_counter: AtomicU64::new(0),
        }
    }

    /// A request id unique on this edge: its id and a counter (cheap: no randomness per request).
    pub fn next_request_id(&self) -> String {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        let edge_id = &self.agents.edge_id;
        // `{edge_id}-{n:x}`, without the formatting machinery (it ran once per request).
        let mut id = String::with_capacity(edge_id.len() + 17);
        id.push_str(edge_id);
        id.push('-');
        push_hex(&mut id, n);
        id
    }
}

/// Appends `n` in lower-case hexadecimal, no leading zeros (as `{n:x}`).
fn push_hex(out: &mut String, n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(char::from(DIGITS[((n >> (i * 4)) & 0xf) as usize]));
    }
}

#[cfg(test)]
mod hex_tests {
    #[test]
    fn push_hex_matches_the_format_macro() {
        for n in [
            0,
            1,
            9,
            10,
            15,
            16,
            255,
            256,
            0xdead_beef,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let mut out = String::new();
            super::push_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}"));
        }
    }
}
