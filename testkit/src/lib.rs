//! Test helpers shared by Warren's integration tests and load test: everything runs on loopback,
//! on ports the OS picks, inside the caller's tokio runtime.
//!
//! # Layout
//! - `balancer`: a TCP load balancer that skips backends which refuse connections (failover tests).
//! - `origin`: the local service behind a tunnel, with endpoints for each kind of traffic.
//! - `pattern`: the deterministic byte pattern large transfers carry and are checked against.
//! - `cluster`: an edge and agents, started through the same `run` functions as the binaries.
//! - `multi`: several edges of one cluster on loopback addresses, sharing a real Redis.
//! - `client`: HTTP/1.1 and WebSocket helpers that set an arbitrary `Host` (tunnels route by it).
//! - `challtestsrv`: a real DNS server (`pebble-challtestsrv`) whose TXT and CNAME records tests set.
//! - `redis`: real `redis-server` processes (one, or a Redis Cluster) on free loopback ports.
//! - `pebble`: a real ACME server (`pebble`) and its DNS (`pebble-challtestsrv`) on free ports.
//! - `recording`: a local service that records requests exactly as they arrived.
//! - `tls`: an HTTPS client for tests that trusts only the roots it is given.
//! - `pki`: throwaway CAs and the server/client certificates they sign.
//! - `latency_proxy`: a TCP proxy that adds a (changeable) delay each way, for latency tests.
//! - `http`: end-to-end helpers: a whole tunnel in one call, raw HTTP/1.x, HTTP/2, a scripted
//!   origin, process memory.

pub mod balancer;
pub mod challtestsrv;
pub mod client;
pub mod cluster;
pub mod http;
pub mod latency_proxy;
pub mod multi;
pub mod origin;
pub mod pattern;
pub mod pebble;
pub mod pki;
pub mod recording;
pub mod redis;
pub mod tls;
