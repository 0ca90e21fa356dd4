//! The Redis link of a Warren cluster.
//!
//! - `connection.rs`: [`RedisConnection`], one type for a single Redis and a Redis Cluster,
//!   used by the edge's route table and edge directory and by control.
//! - `events.rs`: session events flow from edges to control over the Redis Stream
//!   `warren:events`, read by control through the consumer group `control`: an entry is
//!   acknowledged only once applied to the database, so history is complete even when control
//!   stops or crashes in the middle (its pending entries are read again when it returns).
//! - `close.rs`: control publishes tunnels to close (closed through the API, token revoked) on
//!   the channel `warren:close`; every edge subscribes and closes the ones it holds at once.
//!
//! Pub/sub is fire-and-forget, so it is the fast path only: edges also ask control for the
//! closed tunnels every few seconds and right after they (re)subscribe.
#![forbid(unsafe_code)]

pub mod close;
pub mod connection;
pub mod events;

pub use connection::{BusError, OPERATION_TIMEOUT, RedisConnection, redact};

/// A message on the bus that is not what it should be (too large, not JSON of the right
/// shape); the text says what was wrong. Such a message is dropped, never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);
