//! Who an agent is: checks the credential in its HELLO.
//!
//! [`StaticTokens`] (`static_tokens.rs`) accepts a fixed set of API tokens, each giving its own
//! account (what `warren dev` and a stand-alone edge use).
//! [`GrantVerifier`] accepts grants signed by control. [`EdgeAuth`] holds either or both and
//! picks by the kind of credential.

use crate::grant::GrantVerifier;
pub use crate::static_tokens::StaticTokens;
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use warren_proto::control::{Credential, Reject, RejectCode};

/// The account an agent acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account_id: String,
    pub token_id: String,
    /// Set when the agent presented a grant: the one tunnel it may open.
    pub grant: Option<GrantScope>,
}

/// What a verified grant allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantScope {
    /// The tunnel (control's history row) this session serves.
    pub tunnel_id: String,
    /// The only hostname the session may serve.
    pub hostname: String,
    /// Unix seconds when the grant expires.
    pub expires_at: u64,
}

#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Checks `credential`; the rejection's message is shown to the user as is.
    async fn authenticate(&self, credential: &Credential) -> Result<Identity, Reject>;
}

#[async_trait]
impl Authenticator for GrantVerifier {
    async fn authenticate(&self, credential: &Credential) -> Result<Identity, Reject> {
        let Credential::Grant(grant) = credential else {
            return Err(Reject::new(
                RejectCode::Unauthorized,
                "this edge accepts grants from control, not API tokens: run `warren http` with \
                 a control URL (warren login) instead of --token",
            ));
        };
        let claims = self.verify(grant).await?;
        Ok(Identity {
            account_id: claims.sub,
            token_id: claims.token_id,
            grant: Some(GrantScope {
                tunnel_id: claims.tunnel_id,
                hostname: claims.hostname.to_ascii_lowercase(),
                expires_at: claims.exp,
            }),
        })
    }
}

/// Static tokens, grants, or both: each credential goes to the authenticator of its kind.
pub struct EdgeAuth {
    pub tokens: Option<StaticTokens>,
    pub grants: Option<GrantVerifier>,
}

#[async_trait]
impl Authenticator for EdgeAuth {
    async fn authenticate(&self, credential: &Credential) -> Result<Identity, Reject> {
        match (credential, &self.tokens, &self.grants) {
            (Credential::Token(_), Some(tokens), _) => tokens.authenticate(credential).await,
            (Credential::Grant(_), _, Some(grants)) => grants.authenticate(credential).await,
            (Credential::Token(_), None, Some(grants)) => grants.authenticate(credential).await,
            (Credential::Grant(_), Some(tokens), None) => tokens.authenticate(credential).await,
            (_, None, None) => Err(Reject::new(
                RejectCode::Unauthorized,
                "this edge accepts no credentials: its operator must configure tokens or a control URL",
            )),
        }
    }
}

pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub(crate) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
