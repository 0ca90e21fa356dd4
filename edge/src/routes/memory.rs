//! The in-process route table: one edge, no Redis. Same semantics as the Redis table,
//! including leases, so the conformance suite holds for both.

use super::{Claimed, Route, RouteError, RouteTable};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// An in-process route table for a single edge.
pub struct MemoryRouteTable {
    routes: Mutex<HashMap<String, (Route, Instant)>>,
    lease: Duration,
}

impl Default for MemoryRouteTable {
    fn default() -> Self {
        MemoryRouteTable::with_lease(super::DEFAULT_LEASE)
    }
}

impl MemoryRouteTable {
    pub fn new() -> MemoryRouteTable {
        MemoryRouteTable::default()
    }

    pub fn with_lease(lease: Duration) -> MemoryRouteTable {
        MemoryRouteTable {
            routes: Mutex::new(HashMap::new()),
            lease,
        }
    }

    fn routes(&self) -> MutexGuard<'_, HashMap<String, (Route, Instant)>> {
        // Each operation is one map call; a poisoned lock still holds a consistent map.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The live route of `host`, dropping it if its lease ran out.
fn live<'a>(routes: &'a mut HashMap<String, (Route, Instant)>, host: &str) -> Option<&'a Route> {
    if routes
        .get(host)
        .is_some_and(|(_, until)| *until <= Instant::now())
    {
        routes.remove(host);
    }
    routes.get(host).map(|(route, _)| route)
}

#[async_trait]
impl RouteTable for MemoryRouteTable {
    async fn claim(&self, host: &str, route: &Route) -> Result<Claimed, RouteError> {
        let mut routes = self.routes();
        let outcome = match live(&mut routes, host) {
            Some(existing) if existing.account_id != route.account_id => {
                return Err(RouteError::Taken {
                    host: host.to_string(),
                });
            }
            Some(existing) if existing.session_id != route.session_id => {
                Claimed::TookOver(existing.clone())
            }
            _ => Claimed::New,
        };
        let until = Instant::now() + self.lease;
        routes.insert(host.to_string(), (route.clone(), until));
        Ok(outcome)
    }

    async fn lookup(&self, host: &str) -> Result<Option<Route>, RouteError> {
        Ok(live(&mut self.routes(), host).cloned())
    }

    async fn release(&self, host: &str, session_id: &str) -> Result<bool, RouteError> {
        let mut routes = self.routes();
        if live(&mut routes, host).is_some_and(|r| r.session_id == session_id) {
            routes.remove(host);
            return Ok(true);
        }
        Ok(false)
    }

    async fn renew(&self, host: &str, session_id: &str) -> Result<bool, RouteError> {
        let mut routes = self.routes();
        if live(&mut routes, host).is_none_or(|r| r.session_id != session_id) {
            return Ok(false);
        }
        if let Some((_, until)) = routes.get_mut(host) {
            *until = Instant::now() + self.lease;
        }
        Ok(true)
    }

    fn lease(&self) -> Duration {
        self.lease
    }
}
