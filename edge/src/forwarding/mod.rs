//! The forwarding policy: everything the edge adds to, removes from and rewrites in a request
//! on its way to the local service and in a response on its way back, in one place, used by
//! both HTTP engines — the proxy core (`visitor/h1/`), which writes heads as bytes, and the
//! general path through hyper (`visitor/forward.rs`), which edits header maps. A differential
//! test (`edge/tests/engines.rs`) sends the same requests through both and compares what the
//! local service receives.
//!
//! - `fields.rs`: which fields are kept, dropped or set, by name: hop-by-hop fields and those
//!   `Connection` lists, the edge's internal `warren-relay-*` fields (never accepted from
//!   visitors nor from local services), fields that may travel in trailers.
//! - `client.rs`: who the client is (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`,
//!   `X-Forwarded-Proto`, `X-Forwarded-Host`): replaced with the address the edge saw, or
//!   extended for `--trusted-proxy` peers.
//! - `trailers.rs`: trailer sections parsed strictly and written again.
//! - `headers.rs`: the same rules on hyper's header maps.
//! - `error_page.rs`: the response every failure becomes, in both engines' forms.
//!
//! Besides these, the edge sets `X-Request-Id` when the visitor sent none, and replaces `Host`
//! when the tunnel asked for it (`warren http --host-header`, the original then being in
//! `X-Forwarded-Host`).

pub mod client;
pub mod error_page;
pub mod fields;
pub mod headers;
pub mod trailers;

use std::net::IpAddr;

/// One request's forwarding facts, as both engines apply them.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    /// The address the edge saw (the PROXY header's, with `--proxy-protocol`).
    pub peer: IpAddr,
    /// Whether `peer` is a trusted proxy, whose client-address fields are kept and extended.
    pub trusted: bool,
    /// `http` or `https`.
    pub proto: &'static str,
    pub request_id: &'a str,
    /// The `Host` the local service gets instead of the visitor's, if the tunnel asked.
    pub host_override: Option<&'a str>,
}
