//! The agent side of the edge: where agents connect, and the live tunnels they serve.
//!
//! - `endpoint.rs`: the WebSocket upgrade at `/_warren/tunnel`.
//! - `attach.rs`: one session's life: handshake, authentication, route claims, serving, cleanup.
//! - `lane.rs`: an extra connection of the same agent joining its session (`--sessions N`).
//! - `lease.rs`: renews this edge's route leases, re-registers lost ones, drops stale tunnels.
//! - `registry.rs`: the tunnels and sessions live on this edge.
//! - `upstream.rs`: sending a visitor request down a tunnel, over pooled streams.
//! - `request_log.rs`: the per-request log lines sent to the agent, in batches.

pub mod attach;
pub mod endpoint;
pub mod lane;
pub mod lease;
pub mod registry;
pub mod request_log;
pub mod upstream;

pub use registry::{LiveTunnel, Registry};
