//! Runs a [`warren_proto::Mux`] over a WebSocket with tokio, for both the edge and the agent.
//!
//! After the handshake ([`handshake`]), [`spawn`] splits the WebSocket into a reader task and a
//! writer task that share the multiplexer behind a mutex (never held across `.await`).
//! [`prepare`] does the same in two steps, so the edge can register a session before it sends
//! the last handshake message.
//! Applications see a [`Session`] handle that opens streams, and [`Stream`]s that implement
//! `AsyncRead` + `AsyncWrite` with the multiplexer's flow control as backpressure.
//!
//! # Layout
//! - [`handshake`]: HELLO → WELCOME / REJECT on a fresh WebSocket, with timeouts and size caps.
//! - `session.rs`: the shared state and the [`Session`] handle (open, drain, close, events).
//! - `driver.rs`: the reader task (frames in, heartbeats) and the writer task (batches out).
//! - `stream.rs`: [`Stream`], a stream as a tokio I/O object.
//! - `error.rs`: how stream resets surface as `io::Error`s callers can inspect.
//! - [`ws`]: RFC 6455 framing of the session after its HTTP upgrade (no tungstenite on the
//!   data path).
#![forbid(unsafe_code)]

mod driver;
mod error;
pub mod handshake;
mod session;
mod stream;
pub mod ws;

pub use driver::{Unstarted, prepare, spawn, ws_config};
pub use error::{StreamReset, reset_code_of};
pub use session::{Incoming, Session, SessionEnd, SessionEvent};
pub use stream::Stream;
pub use ws::{WebSocket, WsRole};
