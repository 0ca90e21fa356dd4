//! What every task of one edge shares.

use crate::auth::Authenticator;
use crate::config::EdgeConfig;
use crate::control_link::ControlLink;
use crate::relay::client::Relay;
use crate::routes::RouteTable;
use crate::tls::Tls;
use crate::tunnel::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct EdgeState {
    pub config: EdgeConfig,
    pub edge_id: String,
    pub registry: Registry,
    pub routes: Arc<dyn RouteTable>,
    pub auth: Arc<dyn Authenticator>,
    /// Where granted sessions are reported, when the edge is connected to control.
    pub control: Option<Arc<ControlLink>>,
    /// Cancelled when the edge starts shutting down.
    pub shutdown: CancellationToken,
    /// Every connection and session task, waited for on shutdown.
    pub tasks: TaskTracker,
    /// Caps visitor and agent connections together.
    pub connections: Arc<Semaphore>,
    /// The visitor listener's address, for public URLs.
    pub visitor_addr: Option<SocketAddr>,
    /// Caps visitor requests held while their agent reconnects.
    pub held: Arc<Semaphore>,
    /// In a cluster: how requests for tunnels held by other edges reach them.
    pub relay: Option<Relay>,
    /// HTTPS for visitors, when the edge serves it.
    pub tls: Option<Arc<Tls>>,
    /// The TLS listener's address: where the visitor listener redirects to.
    pub tls_addr: Option<SocketAddr>,
    request_counter: AtomicU64,
}

impl EdgeState {
    pub fn new(
        config: EdgeConfig,
        routes: Arc<dyn RouteTable>,
        auth: Arc<dyn Authenticator>,
        control: Option<Arc<ControlLink>>,
        visitor_addr: Option<SocketAddr>,
        shutdown: CancellationToken,
    ) -> EdgeState {
        let edge_id = config
            .edge_id
            .clone()
            .unwrap_or_else(|| format!("e_{:08x}", rand::random::<u32>()));
        EdgeState {
            connections: Arc::new(Semaphore::new(config.max_connections)),
            held: Arc::new(Semaphore::new(config.max_held)),
            config,
            edge_id,
            registry: Registry::default(),
            routes,
            auth,
            control,
            shutdown,
            tasks: TaskTracker::new(),
            visitor_addr,
            relay: None,
            tls: None,
            tls_addr: None,
            request_counter: AtomicU64::new(0),
        }
    }

    /// Makes this edge a cluster member that relays to the others.
    pub fn with_relay(mut self, relay: Option<Relay>) -> EdgeState {
        self.relay = relay;
        self
    }

    /// Makes this edge serve HTTPS on `addr` with `tls`.
    pub fn with_tls(mut self, tls: Arc<Tls>, addr: Option<SocketAddr>) -> EdgeState {
        self.tls = Some(tls);
        self.tls_addr = addr;
        self
    }

    pub fn public_url(&self, hostname: &str) -> String {
        // Public https URLs name the TLS listener's port (unless --public-port says otherwise).
        let listener = match (self.config.public_scheme.as_str(), self.tls_addr) {
            ("https", Some(tls)) => Some(tls),
            _ => self.visitor_addr,
        };
        self.config.public_url(hostname, listener)
    }

    /// A request id unique on this edge: its id and a counter (cheap: no randomness per request).
    pub fn next_request_id(&self) -> String {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        // `{edge_id}-{n:x}`, without the formatting machinery (it ran once per request).
        let mut id = String::with_capacity(self.edge_id.len() + 17);
        id.push_str(&self.edge_id);
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
