//! The tools' arguments and results. Arguments are parsed strictly (unknown fields, a port of
//! 0, a limit out of range are JSON-RPC invalid-params errors before any tool runs); results
//! are the `structuredContent` of each call, described by the tool's `outputSchema`.

use rmcp::schemars::{self, JsonSchema};
use serde::{Deserialize, Deserializer, Serialize};
use std::num::NonZeroU16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Tcp,
    Udp,
    Tls,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Tls => "tls",
        }
    }
}

fn http() -> Protocol {
    Protocol::Http
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTunnelInput {
    /// The local port to expose, 1 to 65535.
    pub local_port: NonZeroU16,
    /// `http` (default). `tcp`, `udp` and `tls` are refused until Warren supports them.
    #[serde(default = "http")]
    pub protocol: Protocol,
    /// Ask for this subdomain (a DNS label); omitted: a stable name for this port.
    #[serde(default)]
    pub subdomain: Option<String>,
    /// Region id (see list_regions); omitted: the server's default.
    #[serde(default)]
    pub region: Option<String>,
    /// Host the local service listens on; loopback only unless the server allows more.
    #[serde(default)]
    pub local_host: Option<String>,
    /// The Host header the local service gets: `rewrite` sends the local address (for
    /// servers that accept only `localhost`), any other value is sent as is.
    #[serde(default)]
    pub host_header: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub struct CreatedTunnel {
    pub tunnel_id: String,
    pub public_url: String,
    pub protocol: Protocol,
    /// Empty with a stand-alone edge.
    pub region: String,
    pub local_addr: String,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TunnelList {
    pub tunnels: Vec<LiveTunnel>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LiveTunnel {
    pub tunnel_id: String,
    pub public_url: String,
    pub protocol: String,
    pub region: String,
    /// Opened by this MCP server (closing it closes it here, at once).
    pub owned: bool,
    /// Where it forwards, for tunnels this server owns.
    pub local_addr: Option<String>,
    pub started_at: Option<String>,
    pub requests: Option<u64>,
    pub bytes_in: Option<u64>,
    pub bytes_out: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseTunnelInput {
    /// From create_tunnel or list_tunnels.
    pub tunnel_id: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ClosedTunnel {
    pub tunnel_id: String,
    pub public_url: String,
    /// Who closed it: this server's session, or control (for another agent's tunnel).
    pub closed_by: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionInfoInput {
    pub local_port: NonZeroU16,
    #[serde(default = "http")]
    pub protocol: Protocol,
    #[serde(default)]
    pub subdomain: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ConnectionInfo {
    /// The command that opens the same tunnel (the token comes from `warren login` or
    /// WARREN_TOKEN, never the command line).
    pub command: String,
    /// The same tunnel as a `[[tunnels]]` entry of a `warren start` configuration file.
    pub config_entry: String,
    /// What the command needs first.
    pub setup: String,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionsInput {
    /// Measure each region's latency from here (a few seconds at most).
    #[serde(default)]
    pub probe: bool,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RegionList {
    pub regions: Vec<Region>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Region {
    pub id: String,
    pub name: String,
    pub location: String,
    /// Measured round trip, when probed and reachable.
    pub latency_ms: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryInput {
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// How many entries, newest first: 1 to 200 (default 20).
    #[serde(default = "default_limit", deserialize_with = "limit")]
    #[schemars(range(min = 1, max = 200))]
    pub limit: u16,
    /// Only tunnels created at or after this RFC 3339 time.
    #[serde(default)]
    pub since: Option<String>,
}

fn default_limit() -> u16 {
    20
}

fn limit<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    let value = u16::deserialize(deserializer)?;
    if !(1..=200).contains(&value) {
        return Err(serde::de::Error::custom(format!(
            "limit must be 1 to 200, not {value}"
        )));
    }
    Ok(value)
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct History {
    pub entries: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HistoryEntry {
    pub tunnel_id: String,
    pub public_url: String,
    pub protocol: String,
    pub region: String,
    /// pending, live or ended.
    pub state: String,
    pub start: Option<String>,
    pub end: Option<String>,
    pub duration_s: Option<u64>,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub close_reason: Option<String>,
}
