//! Grants: JWTs signed with Ed25519 (`alg: EdDSA`, with `kid`), and the JWKS that publishes the
//! public keys edges verify them with.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warren_proto::grant::{GRANT_ALGORITHM, GrantClaims};

use crate::store::keys::KeyRow;
use crate::store::{now_ms, random_hex};

/// A new signing key row (random seed from the OS CSPRNG via `rand`).
pub fn new_key() -> KeyRow {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    KeyRow {
        kid: random_hex(8),
        private_key: STANDARD.encode(seed),
        public_key: URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
        created_at: now_ms(),
        retired_at: None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("the stored signing key {0} is malformed")]
    BadKey(String),
    #[error("grant claims do not serialise: {0}")]
    Json(#[from] serde_json::Error),
}

/// Signs `claims` with `key`: `base64url(header).base64url(claims).base64url(signature)`.
pub fn sign(key: &KeyRow, claims: &GrantClaims) -> Result<String, GrantError> {
    let seed: [u8; 32] = STANDARD
        .decode(&key.private_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| GrantError::BadKey(key.kid.clone()))?;
    let signing = SigningKey::from_bytes(&seed);
    let header = serde_json::json!({ "alg": GRANT_ALGORITHM, "typ": "JWT", "kid": key.kid });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
    );
    let signature = signing.sign(input.as_bytes());
    Ok(format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    ))
}

/// One public key in the JWKS (RFC 8037 OKP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// The key id grants name in their header.
    pub kid: String,
    /// Always `EdDSA`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

/// `GET /.well-known/jwks.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl From<&KeyRow> for Jwk {
    fn from(key: &KeyRow) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: key.public_key.clone(),
            kid: key.kid.clone(),
            alg: GRANT_ALGORITHM.into(),
            use_: "sig".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    use warren_proto::control::TunnelProtocol;

    #[test]
    fn signed_grants_verify_with_the_published_key() {
        let key = new_key();
        let claims = GrantClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: "acc".into(),
            iat: 1,
            exp: 2,
            jti: "j".into(),
            tunnel_id: "t".into(),
            token_id: "k".into(),
            protocol: TunnelProtocol::Http,
            hostname: "h.example".into(),
            region: "eu".into(),
            custom_domain: false,
        };
        let jwt = sign(&key, &claims).expect("signs");
        let (input, sig) = jwt.rsplit_once('.').expect("three parts");
        let jwk = Jwk::from(&key);
        let public: [u8; 32] = URL_SAFE_NO_PAD
            .decode(jwk.x)
            .expect("b64")
            .try_into()
            .expect("32");
        let sig: [u8; 64] = URL_SAFE_NO_PAD
            .decode(sig)
            .expect("b64")
            .try_into()
            .expect("64");
        VerifyingKey::from_bytes(&public)
            .expect("key")
            .verify(input.as_bytes(), &Signature::from_bytes(&sig))
            .expect("verifies");
        assert!(!format!("{key:?}").contains(&key.private_key));
    }
}
