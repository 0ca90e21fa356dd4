//! What this edge serves right now: tunnels by hostname, sessions by id. A request for a
//! tunnel held here is one map lookup, no I/O.

use crate::tunnel::request_log::RequestLogQueue;
use crate::tunnel::upstream::Pool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use warren_proto::TunnelId;
use warren_proto::mux::OpenError;
use warren_session::{Session, Stream};

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
    /// The agent's other sessions to this edge that carry this tunnel too (`warren http
    /// --sessions N`); new streams are spread over `session` and these.
    pub lanes: Lanes,
    /// The `Host` the local service gets instead of the visitor's (`--host-header`).
    pub host_header: Option<String>,
    /// Opened after the handshake (`tunnel/dynamic.rs`): closing or losing it leaves the
    /// session, which serves other tunnels, open.
    pub dynamic: bool,
}

/// Extra sessions (lanes) of the agent that holds a tunnel. Each is its own connection, read
/// and written by its own tasks on both sides (and its own thread in the agent), so requests
/// are not queued behind one reader and one writer.
#[derive(Default)]
pub struct Lanes {
    sessions: RwLock<Vec<(String, Session)>>,
    /// How many lanes there are, read without the lock on the hot path.
    count: AtomicUsize,
    /// Round-robin position over the session and its lanes.
    next: AtomicUsize,
}

impl Lanes {
    pub fn add(&self, id: &str, session: Session) {
        let mut lanes = write(&self.sessions);
        lanes.push((id.to_string(), session));
        self.count.store(lanes.len(), Ordering::Relaxed);
    }

    pub fn remove(&self, id: &str) {
        let mut lanes = write(&self.sessions);
        lanes.retain(|(lane, _)| lane != id);
        self.count.store(lanes.len(), Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids of the lanes, for the admin view and tests.
    pub fn ids(&self) -> Vec<String> {
        read(&self.sessions)
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Opens a stream for `tunnel` on the next of `primary` and the lanes, in turn. A lane that
    /// is going away (or full) is passed over for `primary`, which decides the error.
    pub fn open(&self, primary: &Session, tunnel: TunnelId) -> Result<Stream, OpenError> {
        if self.is_empty() {
            return primary.open(tunnel);
        }
        {
            let lanes = read(&self.sessions);
            let turn = self.next.fetch_add(1, Ordering::Relaxed) % (lanes.len() + 1);
            if let Some((_, lane)) = turn.checked_sub(1).and_then(|i| lanes.get(i))
                && let Ok(stream) = lane.open(tunnel)
            {
                return Ok(stream);
            }
        }
        primary.open(tunnel)
    }
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

/// A session that lanes may join: its key and the account that holds it.
struct Joinable {
    key: [u8; 32],
    account_id: String,
    session: Session,
}

#[derive(Default)]
pub struct Registry {
    tunnels: RwLock<HashMap<String, Arc<LiveTunnel>>>,
    sessions: Mutex<HashMap<String, Session>>,
    /// Sessions that lanes may join, by session id (lanes themselves are not here).
    joinable: Mutex<HashMap<String, Joinable>>,
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

    /// Lets lanes join session `id` when they present the hash of `key` and `account_id`.
    pub fn allow_lanes(&self, id: &str, key: [u8; 32], account_id: &str, session: Session) {
        lock(&self.joinable).insert(
            id.to_string(),
            Joinable {
                key,
                account_id: account_id.to_string(),
                session,
            },
        );
    }

    pub fn forbid_lanes(&self, id: &str) {
        lock(&self.joinable).remove(id);
    }

    /// The session `id`, if `account_id` holds it and `key` (hashed) is its lane key. The
    /// comparison takes the same time wherever the keys differ.
    pub fn joinable(&self, id: &str, key: &[u8; 32], account_id: &str) -> Option<Session> {
        let joinable = lock(&self.joinable);
        let entry = joinable.get(id)?;
        let same_key = crate::auth::constant_time_eq(&entry.key, key);
        (same_key && entry.account_id == account_id).then(|| entry.session.clone())
    }

    /// The tunnels session `id` serves here.
    pub fn tunnels_of(&self, id: &str) -> Vec<Arc<LiveTunnel>> {
        read(&self.tunnels)
            .values()
            .filter(|t| t.session_id == id)
            .cloned()
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

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::mux::{Heartbeat, Role};
    use warren_proto::{Mux, Settings};

    fn session() -> Session {
        let heartbeat = Heartbeat {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(3),
        };
        let mux = Mux::new(
            Role::Edge,
            Settings::default(),
            Settings::default(),
            heartbeat,
            Instant::now(),
        );
        // Never started: enough for the registry, which only keeps handles.
        warren_session::prepare(mux).0
    }

    #[test]
    fn a_session_is_joinable_only_with_its_key_by_its_account() {
        let registry = Registry::default();
        let key = crate::auth::digest("the-key");
        registry.allow_lanes("s_1", key, "acct_a", session());
        assert!(registry.joinable("s_1", &key, "acct_a").is_some());
        assert!(
            registry.joinable("s_1", &key, "acct_b").is_none(),
            "another account, even with the key"
        );
        assert!(
            registry
                .joinable("s_1", &crate::auth::digest("other"), "acct_a")
                .is_none()
        );
        assert!(registry.joinable("s_2", &key, "acct_a").is_none());
        registry.forbid_lanes("s_1");
        assert!(registry.joinable("s_1", &key, "acct_a").is_none());
    }

    #[test]
    fn lanes_are_added_and_removed_by_id() {
        let lanes = Lanes::default();
        assert!(lanes.is_empty());
        lanes.add("l_1", session());
        lanes.add("l_2", session());
        assert_eq!(lanes.len(), 2);
        lanes.remove("l_1");
        assert_eq!(lanes.ids(), vec!["l_2".to_string()]);
        lanes.remove("l_2");
        assert!(lanes.is_empty());
    }
}
