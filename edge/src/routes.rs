//! The route table: which session serves which hostname, cluster-wide.
//!
//! A route is claimed when an agent's session is welcomed and released when it ends. Claims are
//! atomic: a hostname held by another account is refused; one held by the same account is taken
//! over (the agent reconnected, or restarted, before its old session was noticed dead).
//! Releases are compare-and-delete, so a stale session can never remove its successor's route.
//!
//! [`MemoryRouteTable`] is the embedded default (one edge); a Redis implementation serves a
//! cluster. Both must pass the same conformance tests (`tests/route_table.rs`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// Who serves a hostname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub edge_id: String,
    pub session_id: String,
    pub tunnel_id: u32,
    pub account_id: String,
    pub region: String,
}

/// The outcome of a successful claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// Nobody held the hostname.
    New,
    /// The same account held it with another session, which must now stop serving it.
    TookOver(Route),
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("{host} is in use by another account")]
    Taken { host: String },
    #[error("route table unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait RouteTable: Send + Sync + 'static {
    /// Claims `host` for `route` (see the module docs for the takeover rule).
    async fn claim(&self, host: &str, route: &Route) -> Result<Claimed, RouteError>;
    /// The route for `host`, if any.
    async fn lookup(&self, host: &str) -> Result<Option<Route>, RouteError>;
    /// Removes `host` only if `session_id` still holds it. True if it did.
    async fn release(&self, host: &str, session_id: &str) -> Result<bool, RouteError>;
}

/// An in-process route table for a single edge.
#[derive(Default)]
pub struct MemoryRouteTable {
    routes: Mutex<HashMap<String, Route>>,
}

impl MemoryRouteTable {
    pub fn new() -> MemoryRouteTable {
        MemoryRouteTable::default()
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Route>> {
        // Each operation is one map call; a poisoned lock still holds a consistent map.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl RouteTable for MemoryRouteTable {
    async fn claim(&self, host: &str, route: &Route) -> Result<Claimed, RouteError> {
        let mut routes = self.routes();
        match routes.get(host) {
            Some(existing) if existing.account_id != route.account_id => Err(RouteError::Taken {
                host: host.to_string(),
            }),
            Some(existing) if existing.session_id == route.session_id => {
                routes.insert(host.to_string(), route.clone());
                Ok(Claimed::New)
            }
            Some(_) => {
                let previous = routes.insert(host.to_string(), route.clone());
                Ok(previous.map_or(Claimed::New, Claimed::TookOver))
            }
            None => {
                routes.insert(host.to_string(), route.clone());
                Ok(Claimed::New)
            }
        }
    }

    async fn lookup(&self, host: &str) -> Result<Option<Route>, RouteError> {
        Ok(self.routes().get(host).cloned())
    }

    async fn release(&self, host: &str, session_id: &str) -> Result<bool, RouteError> {
        let mut routes = self.routes();
        if routes.get(host).is_some_and(|r| r.session_id == session_id) {
            routes.remove(host);
            return Ok(true);
        }
        Ok(false)
    }
}
