//! What this edge serves right now: tunnels by hostname, sessions by id. A request for a
//! tunnel held here is one map lookup, no I/O.

use crate::tunnel::upstream::Pool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
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
    /// The agent asked for a log line per request.
    pub request_log: bool,
    pub(crate) pool: Pool,
}

#[derive(Default)]
pub struct Registry {
    tunnels: RwLock<HashMap<String, Arc<LiveTunnel>>>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Registry {
    pub fn lookup(&self, host: &str) -> Option<Arc<LiveTunnel>> {
        read(&self.tunnels).get(host).cloned()
    }

    /// Serves `tunnel` from now on; returns the tunnel it displaced, if any.
    pub fn insert_tunnel(&self, tunnel: Arc<LiveTunnel>) -> Option<Arc<LiveTunnel>> {
        write(&self.tunnels).insert(tunnel.hostname.clone(), tunnel)
    }

    /// Stops serving `host` if `session_id` still serves it.
    pub fn remove_tunnel(&self, host: &str, session_id: &str) -> bool {
        let mut tunnels = write(&self.tunnels);
        if tunnels
            .get(host)
            .is_some_and(|t| t.session_id == session_id)
        {
            tunnels.remove(host);
            return true;
        }
        false
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
