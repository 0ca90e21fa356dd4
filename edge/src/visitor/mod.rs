//! The visitor side of the edge, in the order a request travels:
//!
//! - `serve.rs`: one visitor connection (HTTP/1.1 or HTTP/2), its limits and its shutdown.
//! - `dispatch.rs`: which target the request is for (the edge itself, or a tunnel), by host.
//! - `apex.rs`: the edge's own endpoints (tunnel endpoint, health).
//! - `hold.rs`: a tunnel not served here: relayed to the edge that serves it (`relay/`), or held
//!   while its agent reconnects.
//! - `forward.rs`: sending the request down the tunnel and streaming the response back.
//! - `headers.rs`: hop-by-hop and forwarding headers.
//! - `upgrade.rs`: WebSocket and other protocol switches, spliced both ways.
//! - `body.rs`: streamed, counted bodies.
//! - `error_page.rs`: every failure becomes a response here.

pub mod apex;
pub mod body;
pub mod dispatch;
pub mod error_page;
pub mod forward;
pub mod headers;
pub mod hold;
pub mod serve;
pub mod upgrade;
