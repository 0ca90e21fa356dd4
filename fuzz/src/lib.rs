//! The parsers under fuzzing, compiled from their own source files with `#[path]`, in a
//! module tree that mirrors the crates they come from (so their `crate::…` and `super::…`
//! imports resolve the same way). The harnesses (`edge/src/fuzzing.rs`,
//! `session/src/ws/fuzzing.rs`) are compiled the same way: the fuzz targets and the corpus
//! replay tests of `cargo test` run exactly the same checks.
//!
//! Only the pure parsing files are pulled in; if one of them starts importing another part
//! of its crate, mirror that part here (or move the parser where it needs nothing more).
#![allow(dead_code, unused_imports)]

/// Mirrors `warren_edge::forwarding` (only what the head writer needs).
pub mod forwarding;
/// Mirrors `warren_edge::visitor::h1`.
pub mod visitor;

/// `warren_edge`'s harnesses.
#[path = "../../edge/src/fuzzing.rs"]
pub mod edge;

/// Mirrors `warren_session::ws`.
pub mod ws;
