//! Control's public signing keys (`GET /.well-known/jwks.json`), as the edge reads them.
//!
//! Only `OKP` / `Ed25519` keys with a `kid` are kept; anything else in the set is skipped (a
//! future key type must not stop the edge from using the keys it understands).

use crate::grant::jwt::BASE64URL;
use base64::Engine;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Where control publishes its keys.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// At most this many keys are kept from one JWKS.
pub const MAX_KEYS: usize = 64;

/// A JSON Web Key Set as served by control.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// One key. Fields other than these are ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl Jwk {
    /// The JWK of an Ed25519 public key (what control publishes; here for tests and tools).
    pub fn ed25519(kid: &str, key: &VerifyingKey) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: Some("Ed25519".into()),
            x: Some(BASE64URL.encode(key.as_bytes())),
            kid: Some(kid.into()),
            alg: Some("EdDSA".into()),
            use_: Some("sig".into()),
        }
    }

    /// The key id and key, if this is an Ed25519 signing key the edge can use.
    fn usable(&self) -> Option<(String, VerifyingKey)> {
        if self.kty != "OKP" || self.crv.as_deref() != Some("Ed25519") {
            return None;
        }
        if self.alg.as_deref().is_some_and(|alg| alg != "EdDSA")
            || self.use_.as_deref().is_some_and(|u| u != "sig")
        {
            return None;
        }
        let kid = self.kid.clone().filter(|k| !k.is_empty())?;
        let bytes = BASE64URL.decode(self.x.as_deref()?).ok()?;
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        let key = VerifyingKey::from_bytes(&bytes).ok()?;
        Some((kid, key))
    }
}

impl Jwks {
    /// The usable keys by id (at most [`MAX_KEYS`]); how many entries were skipped.
    pub fn keys_by_id(&self) -> (HashMap<String, VerifyingKey>, usize) {
        let mut keys = HashMap::new();
        let mut skipped = 0;
        for jwk in &self.keys {
            match jwk.usable() {
                Some((kid, key)) if keys.len() < MAX_KEYS => {
                    keys.insert(kid, key);
                }
                _ => skipped += 1,
            }
        }
        (keys, skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn ed25519_keys_are_kept_and_others_skipped() {
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let json = serde_json::json!({ "keys": [
            Jwk::ed25519("k1", &key),
            { "kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa" },
            { "kty": "OKP", "crv": "Ed25519", "x": "short", "kid": "bad" },
            { "kty": "OKP", "crv": "Ed25519", "x": BASE64URL.encode(key.as_bytes()) },
            { "kty": "OKP", "crv": "X25519", "x": BASE64URL.encode(key.as_bytes()), "kid": "dh" },
        ]});
        let jwks: Jwks = serde_json::from_value(json).expect("parses");
        let (keys, skipped) = jwks.keys_by_id();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.get("k1"), Some(&key));
        assert_eq!(skipped, 4);
    }
}
