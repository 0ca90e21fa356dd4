//! Admission: how many connections each listener takes, and how many one address may hold.
//!
//! Every listener has its own cap, so a flood on one never starves another: visitors filling
//! the public listeners do not stop agents reconnecting on theirs, other edges relaying, or
//! operators reading `/healthz` on the admin listener. Public listeners also cap connections
//! per client address (an IPv6 client by its /64, since one host usually holds a whole /64).
//!
//! A public connection over either cap is not simply dropped: up to [`OVERFLOW`] of them at once
//! are served by a refusal path that answers every request with 503 (listener full) or 429
//! (address over its cap) — except the edge's own endpoints on its own domain (agents
//! connecting at `/_warren/tunnel`, `/healthz`, `/readyz`), which are served, so an agent
//! that shares the public listener with visitors still gets in. Beyond that the connection is
//! closed at once. Every refusal is counted.
//!
//! Permits are held by [`Admission`], which is shared (an `Arc`) by whatever outlives the
//! connection's HTTP exchange: an upgraded connection (WebSocket) or an agent's session holds
//! its connection's permit until it ends.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most connections served by the refusal path at once, per edge.
pub const OVERFLOW: usize = 512;

/// Which listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The public listener: tunnels by host, and the edge's own domain.
    Visitor,
    /// A dedicated listener for agents: only the edge's own endpoints, whatever the host.
    Tunnel,
    /// The internal listener other edges relay visitor requests to (`visitor/relayed.rs`).
    Relay,
    /// The public HTTPS listener: like `Visitor`, over TLS.
    Tls,
    /// Operators only: certificate expiry, metrics and health (`admin.rs`).
    Admin,
}

impl Listener {
    /// Whether visitors reach it (and per-address caps apply).
    pub fn is_public(self) -> bool {
        matches!(self, Listener::Visitor | Listener::Tls)
    }
}

/// The caps, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub visitors: usize,
    pub agents: usize,
    pub relay: usize,
    pub admin: usize,
    pub per_address: usize,
    /// Whether loopback clients are held to `per_address` too (they are not by default:
    /// `warren dev`, local load tests and a local TLS terminator all come from there).
    pub limit_loopback: bool,
}

/// Why a public connection is served only by the refusal path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener is at its cap.
    Full,
    /// The client's address holds its cap of connections already.
    TooManyFromAddress,
}

/// A connection's place under the caps, released when the last holder drops it.
pub struct Admission {
    refusal: Option<Refusal>,
    _permit: OwnedSemaphorePermit,
    /// Uncounted from its address when dropped.
    _address: Option<AddressSlot>,
}

impl Admission {
    /// `None` for a connection served normally; why it is refused otherwise.
    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal
    }
}

/// Refusals so far (for `/metrics`).
#[derive(Debug, Default)]
pub struct Refused {
    pub full: AtomicU64,
    pub per_address: AtomicU64,
    /// Closed at once: over a cap with the refusal path full too.
    pub dropped: AtomicU64,
}

pub struct ConnectionLimits {
    caps: Caps,
    visitors: Arc<Semaphore>,
    agents: Arc<Semaphore>,
    relay: Arc<Semaphore>,
    admin: Arc<Semaphore>,
    overflow: Arc<Semaphore>,
    addresses: Arc<Addresses>,
    pub refused: Refused,
}

impl ConnectionLimits {
    pub fn new(caps: Caps) -> ConnectionLimits {
        ConnectionLimits {
            caps,
            visitors: Arc::new(Semaphore::new(caps.visitors)),
            agents: Arc::new(Semaphore::new(caps.agents)),
            relay: Arc::new(Semaphore::new(caps.relay)),
            admin: Arc::new(Semaphore::new(caps.admin)),
            overflow: Arc::new(Semaphore::new(OVERFLOW)),
            addresses: Arc::new(Addresses::default()),
            refused: Refused::default(),
        }
    }

    /// Admits a connection on `listener` under the listener's cap (or, over it, on the
    /// refusal path); `None`: close it at once. Never waits: an accept loop that waited for a
    /// permit would leave connections queued in the kernel, where nothing bounds their time.
    /// Public connections are then counted against their client's address
    /// ([`ConnectionLimits::count_address`]) once the address is known (after a PROXY header).
    pub fn admit(&self, listener: Listener) -> Option<Admission> {
        let semaphore = match listener {
            Listener::Visitor | Listener::Tls => &self.visitors,
            Listener::Tunnel => &self.agents,
            Listener::Relay => &self.relay,
            Listener::Admin => &self.admin,
        };
        match semaphore.clone().try_acquire_owned() {
            Ok(permit) => Some(Admission {
                refusal: None,
                _permit: permit,
                _address: None,
            }),
            Err(_) if listener.is_public() => self.refuse(Refusal::Full),
            Err(_) => {
                self.refused.dropped.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Counts a public connection against `peer`'s address; one over the per-address cap is
    /// moved to the refusal path (its listener permit freed at once), or closed.
    pub fn count_address(&self, admission: Admission, peer: IpAddr) -> Option<Admission> {
        if admission.refusal.is_some() || (peer.is_loopback() && !self.caps.limit_loopback) {
            return Some(admission);
        }
        match self.addresses.take(peer, self.caps.per_address) {
            Some(slot) => Some(Admission {
                _address: Some(slot),
                ..admission
            }),
            None => {
                drop(admission);
                self.refuse(Refusal::TooManyFromAddress)
            }
        }
    }

    fn refuse(&self, refusal: Refusal) -> Option<Admission> {
        match self.overflow.clone().try_acquire_owned() {
            Ok(permit) => {
                let counter = match refusal {
                    Refusal::Full => &self.refused.full,
                    Refusal::TooManyFromAddress => &self.refused.per_address,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                Some(Admission {
                    refusal: Some(refusal),
                    _permit: permit,
                    _address: None,
                })
            }
            Err(_) => {
                self.refused.dropped.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Connections open from `peer`'s address (its /64 for IPv6).
    #[cfg(test)]
    pub fn open_from(&self, peer: IpAddr) -> usize {
        self.addresses.count(peer)
    }
}

/// Open connections per client address.
#[derive(Default)]
struct Addresses {
    counts: Mutex<HashMap<AddressKey, usize>>,
}

/// A client address as the per-address cap counts it: IPv4 as is, IPv6 by its /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AddressKey {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl AddressKey {
    fn of(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V4(v4) => AddressKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey::V4(v4.octets()),
                None => AddressKey::V6(prefix64(v6)),
            },
        }
    }
}

fn prefix64(v6: Ipv6Addr) -> [u8; 8] {
    let octets = v6.octets();
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&octets[..8]);
    prefix
}

/// One connection counted against its address; uncounted on drop.
struct AddressSlot {
    key: AddressKey,
    addresses: Arc<Addresses>,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.addresses.counts);
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

impl Addresses {
    /// Counts one more connection from `ip`, unless it holds `cap` already.
    fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<AddressSlot> {
        let key = AddressKey::of(ip);
        let mut counts = lock(&self.counts);
        let n = counts.entry(key).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            key,
            addresses: self.clone(),
        })
    }

    #[cfg(test)]
    fn count(&self, ip: IpAddr) -> usize {
        lock(&self.counts)
            .get(&AddressKey::of(ip))
            .copied()
            .unwrap_or(0)
    }
}

/// Failed agent authentications per client address, in one-minute windows: past the limit,
/// an address's handshakes are refused before their credential is even checked (a grant with
/// an unknown key would otherwise make the edge fetch control's keys). Memory is bounded: at
/// most [`AuthThrottle::MAX_ADDRESSES`] addresses are tracked; past that, expired windows are
/// dropped, and if none are, the oldest half goes.
pub struct AuthThrottle {
    per_minute: u32,
    failures: Mutex<HashMap<AddressKey, (u32, std::time::Instant)>>,
}

impl AuthThrottle {
    pub const MAX_ADDRESSES: usize = 100_000;
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

    pub fn new(per_minute: u32) -> AuthThrottle {
        AuthThrottle {
            per_minute,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` used up its failures for this minute.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        let failures = lock(&self.failures);
        failures
            .get(&AddressKey::of(ip))
            .is_some_and(|&(n, since)| n >= self.per_minute && since.elapsed() < Self::WINDOW)
    }

    /// Counts one failed authentication from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let mut failures = lock(&self.failures);
        if failures.len() >= Self::MAX_ADDRESSES {
            failures.retain(|_, (_, since)| since.elapsed() < Self::WINDOW);
            if failures.len() >= Self::MAX_ADDRESSES {
                let mut ages: Vec<std::time::Instant> = failures.values().map(|v| v.1).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                failures.retain(|_, (_, since)| *since > cut);
            }
        }
        let entry = failures
            .entry(AddressKey::of(ip))
            .or_insert((0, std::time::Instant::now()));
        if entry.1.elapsed() >= Self::WINDOW {
            *entry = (0, std::time::Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        lock(&self.failures).len()
    }
}

// Each use is a single map operation, so a panic elsewhere cannot leave the map half-changed.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(visitors: usize, per_address: usize) -> Caps {
        Caps {
            visitors,
            agents: 2,
            relay: 2,
            admin: 1,
            per_address,
            limit_loopback: false,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    fn admit(limits: &ConnectionLimits, listener: Listener, peer: &str) -> Option<Admission> {
        let admission = limits.admit(listener)?;
        if listener.is_public() {
            limits.count_address(admission, ip(peer))
        } else {
            Some(admission)
        }
    }

    #[test]
    fn each_listener_has_its_own_cap() {
        let limits = ConnectionLimits::new(caps(1, 10));
        let visitor = admit(&limits, Listener::Visitor, "192.0.2.1").expect("admitted");
        assert_eq!(visitor.refusal(), None);
        let over = admit(&limits, Listener::Tls, "192.0.2.2").expect("refusal path");
        assert_eq!(over.refusal(), Some(Refusal::Full));
        // The other listeners are untouched by the full public one.
        let agent = admit(&limits, Listener::Tunnel, "192.0.2.3").expect("agent");
        assert_eq!(agent.refusal(), None);
        let admin = admit(&limits, Listener::Admin, "192.0.2.4");
        assert!(admin.is_some());
        assert!(
            admit(&limits, Listener::Admin, "192.0.2.4").is_none(),
            "admin cap 1"
        );
        drop(visitor);
        let again = admit(&limits, Listener::Visitor, "192.0.2.5").expect("admitted");
        assert_eq!(again.refusal(), None, "a released permit is reused");
        assert_eq!(limits.refused.full.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn addresses_are_capped_ipv6_by_prefix_and_loopback_is_exempt() {
        let limits = ConnectionLimits::new(caps(100, 2));
        let a = admit(&limits, Listener::Visitor, "2001:db8:1:2::1").expect("1");
        let b = admit(&limits, Listener::Visitor, "2001:db8:1:2::ffff").expect("2");
        assert!(a.refusal().is_none() && b.refusal().is_none());
        let c = admit(&limits, Listener::Visitor, "2001:db8:1:2:abcd::9").expect("3");
        assert_eq!(c.refusal(), Some(Refusal::TooManyFromAddress), "same /64");
        let other = admit(&limits, Listener::Visitor, "2001:db8:1:3::1").expect("other /64");
        assert!(other.refusal().is_none());
        assert_eq!(limits.open_from(ip("2001:db8:1:2::7")), 2);
        drop((a, c));
        assert_eq!(limits.open_from(ip("2001:db8:1:2::7")), 1);
        let mapped = admit(&limits, Listener::Visitor, "::ffff:192.0.2.9").expect("v4");
        assert!(mapped.refusal().is_none());
        assert_eq!(
            limits.open_from(ip("192.0.2.9")),
            1,
            "mapped IPv4 counts as IPv4"
        );
        for _ in 0..10 {
            let local = admit(&limits, Listener::Visitor, "127.0.0.1").expect("loopback");
            assert!(local.refusal().is_none());
            std::mem::forget(local);
        }
        assert_eq!(
            limits.open_from(ip("127.0.0.1")),
            0,
            "loopback is not counted"
        );
    }

    #[test]
    fn failed_authentications_block_an_address_and_memory_stays_bounded() {
        let throttle = AuthThrottle::new(3);
        let bad = ip("198.51.100.1");
        for _ in 0..3 {
            assert!(!throttle.is_blocked(bad));
            throttle.failed(bad);
        }
        assert!(throttle.is_blocked(bad));
        assert!(!throttle.is_blocked(ip("198.51.100.2")), "others are not");
        for i in 0..(AuthThrottle::MAX_ADDRESSES as u32 + 10) {
            throttle.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert!(throttle.tracked() <= AuthThrottle::MAX_ADDRESSES);
    }

    #[test]
    fn loopback_is_limited_when_asked() {
        let limits = ConnectionLimits::new(Caps {
            limit_loopback: true,
            ..caps(100, 1)
        });
        let first = admit(&limits, Listener::Visitor, "127.0.0.1").expect("first");
        let second = admit(&limits, Listener::Visitor, "127.0.0.1").expect("second");
        assert!(first.refusal().is_none());
        assert_eq!(second.refusal(), Some(Refusal::TooManyFromAddress));
        assert_eq!(limits.refused.per_address.load(Ordering::Relaxed), 1);
    }
}
