//! The agent: holds a tunnel session open to an edge and forwards each stream the edge opens
//! to the local service.
//!
//! - `options.rs`: what to connect where; the edge URL and local targets, validated.
//! - `connect.rs`: WebSocket connect and handshake, errors as sentences for the user.
//! - `run.rs`: the session loop: serve, reconnect with backoff, follow GOAWAY.
//! - `dynamic.rs`: a set of tunnels on one session that grows and shrinks (`warren mcp`).
//! - `lane.rs`: more sessions joined to the first (`--sessions N`), each on its own thread.
//! - `forward.rs`: one stream → one TCP connection to the local service, spliced both ways.
//! - `tls.rs`: whom the agent trusts for `wss://` (system roots, `--ca-file`, `--insecure`).
//! - `backoff.rs`: exponential backoff with jitter.
//! - `events.rs`: what the agent reports (printed as text or NDJSON by `crate::output`).

pub mod backoff;
pub mod connect;
pub mod dynamic;
pub mod events;
pub mod forward;
pub mod grant;
pub mod lane;
pub mod options;
pub mod run;
pub mod tls;

pub use connect::AgentError;
pub use events::AgentEvent;
pub use grant::Grant;
pub use options::{AgentOptions, LocalTarget, TunnelSpec};
pub use run::run;
