//! The visitor side of the edge, in the order a request travels:
//!
//! - `serve.rs`: one visitor connection, its limits and its shutdown. HTTP/1.1 requests for
//!   tunnels served here go through the proxy core, `h1/`; everything else (HTTP/2, upgrades,
//!   the edge's own endpoints, tunnels on other edges, errors) through hyper and the files
//!   below.
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
pub mod h1;
pub mod headers;
pub mod hold;
pub mod serve;
pub mod upgrade;
