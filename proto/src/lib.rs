//! Warren's tunnel protocol: the wire format between an agent and an edge, and the stream
//! multiplexer that runs on top of it. Sans-I/O: nothing here touches a socket, a clock or a
//! runtime, so the agent and the edge share one implementation and it is tested without I/O.
//!
//! A **session** is one WebSocket between an agent and an edge. Each binary WebSocket message
//! carries one or more [`Frame`]s; a frame never spans two messages. The first frame is the
//! agent's [`Hello`](control::Hello), answered by a [`Welcome`](control::Welcome) or a
//! [`Reject`](control::Reject). After that, many **streams** (one per visitor connection) are
//! multiplexed on the session by [`Mux`], with per-stream and per-session credit windows.
//!
//! # Layout
//! - [`frame`]: the binary frame header, every frame kind, encode and decode side by side.
//! - [`control`]: the JSON messages carried by control frames (handshake, events).
//! - [`mux`]: the stream multiplexer: stream states, flow-control windows, heartbeats, GOAWAY.
//! - [`ids`]: stream, tunnel and session identifiers.
//! - [`names`]: subdomain rules, the stable default name, custom domain rules.
//! - [`grant`]: the claims of the signed ticket control issues and edges verify.
//! - [`report`]: what an edge reports to control about its sessions.
//! - [`held`]: whether control's accounts hold names (asked by edges with static tokens).
//! - [`error`]: protocol errors and stream reset codes.
//!
//! `docs/protocol.md` describes the format for readers who do not read Rust.
#![forbid(unsafe_code)]

pub mod control;
pub mod error;
pub mod frame;
pub mod grant;
pub mod held;
pub mod ids;
pub mod mux;
pub mod names;
pub mod report;
pub mod request_logs;

pub use control::PROTOCOL_VERSION;
pub use error::{FrameError, ProtoError, ResetCode};
pub use frame::Frame;
pub use ids::{StreamId, TunnelId};
pub use mux::{BadSettings, Event, Mux, Role, Settings};
