//! The route table: which session serves which hostname, cluster-wide.
//!
//! A route is claimed when an agent's session is welcomed and released when it ends. Claims are
//! atomic: a hostname held by another account is refused; one held by the same account is taken
//! over (the agent reconnected, or restarted, before its old session was noticed dead).
//! Releases are compare-and-delete, so a stale session can never remove its successor's route.
//!
//! Routes are **leases**: the edge holding a session renews them ([`RouteTable::renew`]); a
//! route whose edge died disappears when its lease runs out, so no edge ever has to clean up
//! after another.
//!
//! # Layout
//! - [`memory`]: [`MemoryRouteTable`], the embedded default (one edge, in-process).
//! - [`redis`]: [`RedisRouteTable`], the cluster-wide table in Redis (single node or Redis
//!   Cluster), with atomic claims and compare-and-delete releases in Lua.
//!
//! Both pass the same conformance suite (`testkit/tests/route_table.rs`).

mod memory;
pub mod redis;

pub use memory::MemoryRouteTable;
pub use redis::RedisRouteTable;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a route lives without renewal. The holding edge renews it every third of this.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

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

impl From<warren_bus::BusError> for RouteError {
    fn from(e: warren_bus::BusError) -> RouteError {
        let warren_bus::BusError::Unavailable(message) = e;
        RouteError::Unavailable(message)
    }
}

#[async_trait]
pub trait RouteTable: Send + Sync + 'static {
    /// Claims `host` for `route` (see the module docs for the takeover rule).
    async fn claim(&self, host: &str, route: &Route) -> Result<Claimed, RouteError>;
    /// The route for `host`, if any.
    async fn lookup(&self, host: &str) -> Result<Option<Route>, RouteError>;
    /// Removes `host` only if `session_id` still holds it. True if it did.
    async fn release(&self, host: &str, session_id: &str) -> Result<bool, RouteError>;
    /// Extends the lease of `host` if `session_id` still holds it. False means the route was
    /// lost (taken over, or expired while the table was unreachable): the session must claim
    /// it again or stop serving it.
    async fn renew(&self, host: &str, session_id: &str) -> Result<bool, RouteError>;
    /// The lease a claim or renewal grants.
    fn lease(&self) -> Duration;
}
