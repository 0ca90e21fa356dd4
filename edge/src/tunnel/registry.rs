//! What this edge serves right now: tunnels by hostname, sessions by id. A request for a
//! tunnel held here is one map lookup, no I/O.

use crate::tunnel::request_log::RequestLogQueue;
use crate::tunnel::upstream::Pool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use warren_proto::TunnelId;
use warren_session::Session;

/// A tunnel served by a session on this edge.
pub struct LiveTunnel {
    pub hostname: String,
    pub public_url: String,
    pub id: TunnelId,
    pub session: Session,
    pub session_id: String,
    pub account_id: String,
    /// Where this tunnel's request logs go, if the agent asked for a log line per request
    /// (shared by the session's tunnels).
    pub request_log: Option<Arc<RequestLogQueue>>,
    /// The tunnel id from the grant the session presented (none for static tokens).
    pub tunnel_id: Option<String>,
    /// Cumulative traffic of this tunnel on this session.
    pub counters: Counters,
    /// Why the edge stopped serving it, when the edge decided (taken over, closed by the API,
    /// shutdown); first reason wins.
    pub close_reason: OnceLock<String>,
    pub(crate) pool: Pool,
}

/// Traffic counters, updated on the data path with relaxed atomic adds (no locks) and read by
/// the reporter. `bytes_in` is visitor → agent (request bodies, upgraded bytes up), `bytes_out`
/// agent → visitor.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes_in: Arc<AtomicU64>,
    pub bytes_out: Arc<AtomicU64>,
    pub requests: AtomicU64,
}

/// A reading of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub requests: u64,
}

impl Counters {
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

#[derive(Default)]
pub struct Registry {
    tunnels: RwLock<HashMap<String, Arc<LiveTunnel>>>,
    sessions: Mutex<HashMap<String, Session>>,
    /// Woken whenever a tunnel starts being served here (requests held for it proceed).
    served: Notify,
    /// Hostnames whose session ended without being closed on purpose, and when: an agent is
    /// probably reconnecting, so their visitors are held rather than told 404.
    lost: Mutex<HashMap<String, Instant>>,
}

impl Registry {
    pub fn lookup(&self, host: &str) -> Option<Arc<LiveTunnel>> {
        read(&self.tunnels).get(host).cloned()
    }

    /// Serves `tunnel` from now on; returns the tunnel it displaced, if any.
    pub fn insert_tunnel(&self, tunnel: Arc<LiveTunnel>) -> Option<Arc<LiveTunnel>> {
        lock(&self.lost).remove(&tunnel.hostname);
        let previous = write(&self.tunnels).insert(tunnel.hostname.clone(), tunnel);
        self.served.notify_waiters();
        previous
    }

    /// Waits until some tunnel starts being served here. Create the future, then check the
    /// registry, then await it: a tunnel inserted in between still wakes it.
    pub fn served(&self) -> Notified<'_> {
        self.served.notified()
    }

    /// Whether `host` lost its session less than `within` ago (and was not closed on purpose).
    pub fn recently_lost(&self, host: &str, within: Duration) -> bool {
        let mut lost = lock(&self.lost);
        lost.retain(|_, at| at.elapsed() < within);
        lost.contains_key(host)
    }

    /// Forgets that `host` was lost: it was closed on purpose, so nobody should wait for it.
    pub fn forget_lost(&self, host: &str) {
        lock(&self.lost).remove(host);
    }

    /// Stops serving `host` if `session_id` still serves it.
    pub fn remove_tunnel(&self, host: &str, session_id: &str) -> bool {
        let mut tunnels = write(&self.tunnels);
        if tunnels
            .get(host)
            .is_some_and(|t| t.session_id == session_id)
        {
            tunnels.remove(host);
            lock(&self.lost).insert(host.to_string(), Instant::now());
            return true;
        }
        false
    }

    /// Every tunnel served here now.
    pub fn tunnels(&self) -> Vec<Arc<LiveTunnel>> {
        read(&self.tunnels).values().cloned().collect()
    }

    /// Stops serving every tunnel opened with the grant tunnel id `tunnel_id`; returns them.
    pub fn remove_by_tunnel_id(&self, tunnel_id: &str) -> Vec<Arc<LiveTunnel>> {
        let mut tunnels = write(&self.tunnels);
        let hosts: Vec<String> = tunnels
            .iter()
            .filter(|(_, t)| t.tunnel_id.as_deref() == Some(tunnel_id))
            .map(|(host, _)| host.clone())
            .collect();
        hosts.iter().filter_map(|h| tunnels.remove(h)).collect()
    }

    pub fn add_session(&self, id: &str, session: Session) {
        lock(&self.sessions).insert(id.to_string(), session);
    }

    pub fn remove_session(&self, id: &str) {
        lock(&self.sessions).remove(id);
    }

    pub fn session(&self, id: &str) -> Option<Session> {
        lock(&self.sessions).get(id).cloned()
    }

    pub fn sessions(&self) -> Vec<Session> {
        lock(&self.sessions).values().cloned().collect()
    }

    /// Every session with its id.
    pub fn sessions_by_id(&self) -> Vec<(String, Session)> {
        lock(&self.sessions)
            .iter()
            .map(|(id, session)| (id.clone(), session.clone()))
            .collect()
    }

    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Drops every idle upstream connection (before draining).
    pub fn clear_pools(&self) {
        for tunnel in read(&self.tunnels).values() {
            tunnel.pool.clear();
        }
    }

    pub fn tunnel_count(&self) -> usize {
        read(&self.tunnels).len()
    }
}

// The maps are updated by single insert/remove calls, so a panic elsewhere cannot leave them
// half-changed: recovering a poisoned lock is safe.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|p| p.into_inner())
}
