//! The forwarding policy: everything the edge adds to, removes from and rewrites in a request
//! on its way to the local service and in a response on its way back, in one place, used by
//! both HTTP engines (the proxy core, `visitor/h1/`, and the general path through hyper).
//!
//! - `headers.rs`: hop-by-hop fields, forwarding fields (`X-Forwarded-*`), request ids.
pub mod headers;
