//! The control API's JSON bodies, as far as the CLI reads them (`docs/control-contract.md`).
//! Fields are lenient (`default`): a newer control that adds or omits a field must not break
//! the tables. `--json` prints control's own JSON, not these.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub admin: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TokenInfo {
    pub id: String,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// `GET /v1/me`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Me {
    pub account: Account,
    pub token: TokenInfo,
}

/// `POST /v1/tokens`: the token itself is shown only here, once.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreatedToken {
    pub token: String,
    pub id: String,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Tokens {
    pub tokens: Vec<TokenInfo>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Subdomain {
    pub name: String,
    pub created_at: String,
    /// Held because a tunnel got it as its stable name (no `--subdomain`).
    pub stable: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Subdomains {
    pub subdomains: Vec<Subdomain>,
}

/// A DNS record a custom domain needs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DnsRecord {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub value: String,
}

/// `/v1/domains/...`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Domain {
    pub id: String,
    pub hostname: String,
    pub region: String,
    pub status: String,
    pub records: Vec<DnsRecord>,
    pub created_at: String,
    pub verified_at: Option<String>,
    pub last_check_at: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Domains {
    pub domains: Vec<Domain>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Tunnel {
    pub id: String,
    pub protocol: String,
    pub hostname: String,
    pub public_url: String,
    pub region: String,
    pub agent_addr: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub close_reason: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub requests: u64,
    pub state: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Tunnels {
    pub tunnels: Vec<Tunnel>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Region {
    pub id: String,
    pub name: String,
    pub location: String,
    pub tunnel_url: String,
    pub probe_url: String,
    pub domain: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Regions {
    pub regions: Vec<Region>,
}

/// `POST /v1/tunnels` and `POST /v1/tunnels/{id}/grant`.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct TunnelGrant {
    pub tunnel_id: String,
    pub hostname: String,
    pub public_url: String,
    pub region: String,
    pub edge_url: String,
    pub grant: String,
    /// Unix seconds.
    pub grant_expires_at: u64,
    /// The hostname is a custom domain: the agent asks the edge for the grant's hostname.
    pub custom_domain: bool,
}

impl std::fmt::Debug for TunnelGrant {
    // The grant is a bearer credential: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelGrant")
            .field("tunnel_id", &self.tunnel_id)
            .field("hostname", &self.hostname)
            .field("edge_url", &self.edge_url)
            .field("grant", &"<redacted>")
            .field("grant_expires_at", &self.grant_expires_at)
            .field("custom_domain", &self.custom_domain)
            .finish()
    }
}

/// Decodes an API answer into one of the types above.
pub fn decode<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> anyhow::Result<T> {
    serde_json::from_value(value)
        .map_err(|e| anyhow::anyhow!("control sent an answer this warren does not understand: {e}"))
}
