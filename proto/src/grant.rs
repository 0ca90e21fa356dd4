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
    /// The full public hostname, e.g. `demo.eu.example.net`, or a verified custom domain.
    pub hostname: String,
    /// The region whose edges may serve it.
    pub region: String,
    /// `hostname` is a custom domain whose ownership control verified (DNS TXT and CNAME), not
    /// a name under the region's domain. Absent in grants of older controls (then `false`), and
    /// left out when `false` so older edges still read new grants for subdomains.
    #[serde(default, skip_serializing_if = "is_false")]
    pub custom_domain: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_domain_defaults_to_false_and_is_omitted_when_false() {
        let old = r#"{"iss":"i","aud":"a","sub":"s","iat":1,"exp":2,"jti":"j","tunnel_id":"t",
            "token_id":"k","protocol":"http","hostname":"h.eu.example.net","region":"eu"}"#;
        let claims: GrantClaims = serde_json::from_str(old).expect("old grants parse");
        assert!(!claims.custom_domain);
        let json = serde_json::to_string(&claims).expect("serialises");
        assert!(!json.contains("custom_domain"), "{json}");
        let custom = GrantClaims {
            custom_domain: true,
            hostname: "app.example.com".into(),
            ..claims
        };
        let json = serde_json::to_string(&custom).expect("serialises");
        assert!(json.contains(r#""custom_domain":true"#), "{json}");
        let back: GrantClaims = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, custom);
    }
}
