//! The claims of a **grant**: the short-lived ticket control signs (a JWT, EdDSA, with `kid`)
//! that lets an agent open one tunnel on an edge. Control signs it, the edge verifies it
//! offline with control's public keys (`/.well-known/jwks.json`); both use these types so
//! they cannot drift apart.

use crate::control::TunnelProtocol;
use serde::{Deserialize, Serialize};

/// `iss` of every grant.
pub const GRANT_ISSUER: &str = "warren-control";
/// `aud` of every grant: only edges accept it.
pub const GRANT_AUDIENCE: &str = "warren-edge";
/// The JWT `alg` grants are signed with.
pub const GRANT_ALGORITHM: &str = "EdDSA";
/// A grant is valid this long after it is issued by default: long enough to ride out a
/// control outage; the agent renews it in the background well before it expires.
pub const DEFAULT_GRANT_TTL_SECS: u64 = 3600;

/// What a grant allows: one tunnel, one hostname, one region, for one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantClaims {
    /// Always [`GRANT_ISSUER`].
    pub iss: String,
    /// Always [`GRANT_AUDIENCE`].
    pub aud: String,
    /// The account id.
    pub sub: String,
    /// Unix seconds when it was issued.
    pub iat: u64,
    /// Unix seconds after which edges refuse it.
    pub exp: u64,
    /// Unique id of this grant.
    pub jti: String,
    /// The tunnel (history row) this grant opens; renewals keep it.
    pub tunnel_id: String,
    /// The API token the tunnel was requested with.
    pub token_id: String,
    pub protocol: TunnelProtocol,
    /// The full public hostname, e.g. `demo.eu.example.net`.
    pub hostname: String,
    /// The region whose edges may serve it.
    pub region: String,
}
