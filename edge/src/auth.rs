//! Who an agent is: checks the credential in its HELLO.
//!
//! [`StaticTokens`] accepts a fixed set of API tokens (what `warren dev` and a stand-alone edge
//! use). Tokens are kept only as SHA-256 digests and compared in constant time; the control
//! plane adds signed grants behind the same trait.

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use warren_proto::control::{Credential, Reject, RejectCode};

/// The account an agent acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account_id: String,
    pub token_id: String,
}

#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Checks `credential`; the rejection's message is shown to the user as is.
    async fn authenticate(&self, credential: &Credential) -> Result<Identity, Reject>;
}

/// A fixed set of accepted API tokens, all belonging to one account.
pub struct StaticTokens {
    account_id: String,
    digests: Vec<[u8; 32]>,
}

impl StaticTokens {
    pub fn new(account_id: impl Into<String>, tokens: &[String]) -> StaticTokens {
        StaticTokens {
            account_id: account_id.into(),
            digests: tokens.iter().map(|t| digest(t)).collect(),
        }
    }
}

#[async_trait]
impl Authenticator for StaticTokens {
    async fn authenticate(&self, credential: &Credential) -> Result<Identity, Reject> {
        let Credential::Token(token) = credential else {
            return Err(Reject::new(
                RejectCode::Unauthorized,
                "this edge accepts API tokens, not grants: pass --token",
            ));
        };
        let presented = digest(token);
        // Check every digest, so timing says nothing about which one (or whether any) matched.
        let position = self.digests.iter().enumerate().fold(None, |found, (i, d)| {
            if constant_time_eq(d, &presented) {
                Some(i)
            } else {
                found
            }
        });
        match position {
            Some(i) => Ok(Identity {
                account_id: self.account_id.clone(),
                token_id: format!("static-{i}"),
            }),
            None => Err(Reject::new(
                RejectCode::Unauthorized,
                "the edge does not accept this token: check --token (or WARREN_TOKEN)",
            )),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepts_known_tokens_only() {
        let auth = StaticTokens::new("dev", &["wrn_good".to_string()]);
        let ok = auth
            .authenticate(&Credential::Token("wrn_good".into()))
            .await;
        assert_eq!(ok.map(|i| i.account_id), Ok("dev".to_string()));
        let bad = auth
            .authenticate(&Credential::Token("wrn_bad".into()))
            .await;
        assert_eq!(bad.map_err(|r| r.code), Err(RejectCode::Unauthorized));
    }
}
