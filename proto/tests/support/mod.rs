//! Helpers shared by the integration tests.
//!
//! # Layout
//! - `pair.rs`: an edge and an agent `Mux` joined by a simulated transport.
//! - `model.rs`: what each stream carried, per direction, as the muxes must report it.
//! - `app.rs`: application calls (write, read, finish, reset, release) checked against the model.
//! - `settle.rs`: running both sides to the end, and the checks that follow.

mod app;
pub mod model;
pub mod pair;
mod settle;
