//! The compact JWT of a grant, taken apart and checked by hand: three base64url parts, a header
//! naming the key (`kid`) and algorithm (`EdDSA` only), claims, and an Ed25519 signature over
//! `header.payload`. Every failure is a [`JwtError`], never a panic: the input comes from
//! anyone who can reach the tunnel endpoint.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;
use warren_proto::grant::{GRANT_ALGORITHM, GrantClaims};

/// Largest grant accepted (real ones are well under 1 KiB).
pub const MAX_JWT_BYTES: usize = 8 * 1024;

/// base64url, with or without padding.
pub(crate) const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the grant is larger than {MAX_JWT_BYTES} bytes")]
    TooLarge,
    #[error("the grant is not a JWT (expected three dot-separated parts)")]
    NotAJwt,
    #[error("the grant's {0} is not valid base64url")]
    Base64(&'static str),
    #[error("the grant's {part} is not valid JSON: {reason}")]
    Json { part: &'static str, reason: String },
    #[error("the grant is signed with {0:?}; edges accept EdDSA only")]
    Algorithm(String),
    #[error("the grant's header names no key (kid)")]
    NoKeyId,
    #[error("the grant's signature is malformed")]
    MalformedSignature,
    #[error("the grant's signature does not verify")]
    BadSignature,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// A grant split into its parts; nothing is trusted until [`Parsed::verify`] succeeds.
pub struct Parsed<'a> {
    /// The key id the header names.
    pub kid: String,
    signed: &'a [u8],
    payload: Vec<u8>,
    signature: Signature,
}

/// Splits and decodes `token`, checking shape, size and algorithm.
pub fn parse(token: &str) -> Result<Parsed<'_>, JwtError> {
    if token.len() > MAX_JWT_BYTES {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::NotAJwt);
    };
    // The signature covers the first two parts exactly as sent.
    let signed_len = header.len() + 1 + payload.len();
    let header_json = BASE64URL
        .decode(header)
        .map_err(|_| JwtError::Base64("header"))?;
    let header: Header = serde_json::from_slice(&header_json).map_err(|e| JwtError::Json {
        part: "header",
        reason: e.to_string(),
    })?;
    if header.alg != GRANT_ALGORITHM {
        return Err(JwtError::Algorithm(header.alg));
    }
    let kid = header
        .kid
        .filter(|k| !k.is_empty())
        .ok_or(JwtError::NoKeyId)?;
    let payload_bytes = BASE64URL
        .decode(payload)
        .map_err(|_| JwtError::Base64("payload"))?;
    let signature_bytes = BASE64URL
        .decode(signature)
        .map_err(|_| JwtError::Base64("signature"))?;
    let signature =
        Signature::from_slice(&signature_bytes).map_err(|_| JwtError::MalformedSignature)?;
    Ok(Parsed {
        kid,
        signed: &token.as_bytes()[..signed_len],
        payload: payload_bytes,
        signature,
    })
}

impl Parsed<'_> {
    /// Checks the signature with `key`, then decodes the claims.
    pub fn verify(self, key: &VerifyingKey) -> Result<GrantClaims, JwtError> {
        key.verify_strict(self.signed, &self.signature)
            .map_err(|_| JwtError::BadSignature)?;
        serde_json::from_slice(&self.payload).map_err(|e| JwtError::Json {
            part: "claims",
            reason: e.to_string(),
        })
    }
}

/// Signs `claims` into a grant (what control does; here for tests and tools).
pub fn sign(claims: &GrantClaims, kid: &str, key: &ed25519_dalek::SigningKey) -> String {
    use ed25519_dalek::Signer;
    let header = serde_json::json!({ "alg": GRANT_ALGORITHM, "typ": "JWT", "kid": kid });
    // Serialising a `Value` and a plain struct of strings and numbers cannot fail.
    let header = BASE64URL.encode(serde_json::to_vec(&header).unwrap_or_default());
    let payload = BASE64URL.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signed = format!("{header}.{payload}");
    let signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", BASE64URL.encode(signature.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use warren_proto::control::TunnelProtocol;

    fn claims() -> GrantClaims {
        GrantClaims {
            iss: "warren-control".into(),
            aud: "warren-edge".into(),
            sub: "acct".into(),
            iat: 1,
            exp: 2,
            jti: "j".into(),
            tunnel_id: "t".into(),
            token_id: "tok".into(),
            protocol: TunnelProtocol::Http,
            hostname: "demo.localhost".into(),
            region: "local".into(),
            custom_domain: false,
        }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn signed_grants_verify_and_round_trip() {
        let token = sign(&claims(), "k1", &key(1));
        let parsed = parse(&token).expect("parses");
        assert_eq!(parsed.kid, "k1");
        assert_eq!(parsed.verify(&key(1).verifying_key()), Ok(claims()));
    }

    #[test]
    fn another_key_or_a_changed_payload_fails() {
        let token = sign(&claims(), "k1", &key(1));
        let parsed = parse(&token).expect("parses");
        assert_eq!(
            parsed.verify(&key(2).verifying_key()),
            Err(JwtError::BadSignature)
        );
        let mut other = claims();
        other.hostname = "evil.localhost".into();
        let forged_payload = BASE64URL.encode(serde_json::to_vec(&other).expect("json"));
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &forged_payload;
        let forged = parts.join(".");
        let parsed = parse(&forged).expect("parses");
        assert_eq!(
            parsed.verify(&key(1).verifying_key()),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let good = sign(&claims(), "k1", &key(1));
        let header_none = BASE64URL.encode(br#"{"alg":"none","kid":"k1"}"#);
        let header_nokid = BASE64URL.encode(br#"{"alg":"EdDSA"}"#);
        let not_json = BASE64URL.encode(b"{nope");
        let cases: Vec<(String, JwtError)> = vec![
            (String::new(), JwtError::NotAJwt),
            ("a.b".into(), JwtError::NotAJwt),
            ("a.b.c.d".into(), JwtError::NotAJwt),
            ("...".into(), JwtError::NotAJwt),
            ("!!.b.c".into(), JwtError::Base64("header")),
            (
                format!("{header_none}.e30.AA"),
                JwtError::Algorithm("none".into()),
            ),
            (format!("{header_nokid}.e30.AA"), JwtError::NoKeyId),
            (
                format!("{header_nokid}x.e30.AA"),
                JwtError::Base64("header"),
            ),
            ("x".repeat(MAX_JWT_BYTES + 1), JwtError::TooLarge),
        ];
        for (input, expected) in cases {
            match parse(&input) {
                Err(e) => assert_eq!(e, expected, "{input:?}"),
                Ok(_) => panic!("{input:?} parsed"),
            }
        }
        assert!(matches!(
            parse(&format!("{not_json}.e30.AA")),
            Err(JwtError::Json { part: "header", .. })
        ));
        // A short signature, and claims that are not claims.
        let (head, rest) = good.split_once('.').expect("dots");
        let payload = rest.split('.').next().expect("payload");
        assert_eq!(
            parse(&format!("{head}.{payload}.AAAA")).err(),
            Some(JwtError::MalformedSignature)
        );
        let bad_claims = sign_raw(head, &BASE64URL.encode(b"[1,2]"), &key(1));
        let parsed = parse(&bad_claims).expect("parses");
        assert!(matches!(
            parsed.verify(&key(1).verifying_key()),
            Err(JwtError::Json { part: "claims", .. })
        ));
        // Multi-byte characters and odd bytes in any position.
        for input in ["é.é.é", "\u{0}.\u{0}.\u{0}", "..e30", "e30..", "ü"] {
            assert!(parse(input).is_err(), "{input:?}");
        }
    }

    fn sign_raw(header: &str, payload: &str, key: &SigningKey) -> String {
        use ed25519_dalek::Signer;
        let signed = format!("{header}.{payload}");
        let signature = key.sign(signed.as_bytes());
        format!("{signed}.{}", BASE64URL.encode(signature.to_bytes()))
    }
}
