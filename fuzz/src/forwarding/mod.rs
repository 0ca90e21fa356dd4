use std::net::IpAddr;

/// Mirrors `warren_edge::forwarding::Forwarding` field for field.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    pub peer: IpAddr,
    pub trusted: bool,
    pub proto: &'static str,
    pub request_id: &'a str,
    pub host_override: Option<&'a str>,
}

#[path = "../../../edge/src/forwarding/client.rs"]
pub mod client;
#[path = "../../../edge/src/forwarding/fields.rs"]
pub mod fields;
#[path = "../../../edge/src/forwarding/trailers.rs"]
pub mod trailers;
