//! Who is calling: API tokens (`wrn_<id>_<secret>`), their scopes, the edge secret, and the
//! limit on failed authentications per client address.
//!
//! Tokens are stored as SHA-256 of the whole token and compared in constant time; the token
//! itself exists only in the response that created it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::accounts::AccountRow;
use crate::store::tokens::TokenRow;
use crate::store::{now_ms, random_hex};

/// Every API token starts with this.
pub const TOKEN_PREFIX: &str = "wrn_";
const SECRET_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// 40 characters of a 36-letter alphabet: about 206 bits.
const SECRET_LEN: usize = 40;

/// What a token may do. `tunnel` includes `read`; `manage` includes everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// GET everything of the account.
    Read,
    /// Read, plus open tunnels and renew their grants.
    Tunnel,
    /// Everything of the account: tokens, subdomains, closing tunnels.
    Manage,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Tunnel => "tunnel",
            Scope::Manage => "manage",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "tunnel" => Some(Scope::Tunnel),
            "manage" => Some(Scope::Manage),
            _ => None,
        }
    }

    /// True when holding `self` allows what `needed` guards.
    fn covers(self, needed: Scope) -> bool {
        match needed {
            Scope::Read => true,
            Scope::Tunnel => matches!(self, Scope::Tunnel | Scope::Manage),
            Scope::Manage => self == Scope::Manage,
        }
    }
}

/// Scopes as stored: comma-separated.
pub fn scopes_to_db(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn scopes_from_db(s: &str) -> Vec<Scope> {
    s.split(',').filter_map(Scope::parse).collect()
}

/// A freshly generated token: the secret string (shown once) and the row to store.
pub fn generate_token(
    account_id: &str,
    name: Option<String>,
    scopes: &[Scope],
    expires_at: Option<i64>,
) -> (String, TokenRow) {
    use rand::Rng;
    let id = random_hex(8);
    let mut rng = rand::rng();
    let secret: String = (0..SECRET_LEN)
        .map(|_| char::from(SECRET_ALPHABET[rng.random_range(0..SECRET_ALPHABET.len())]))
        .collect();
    let token = format!("{TOKEN_PREFIX}{id}_{secret}");
    let row = TokenRow {
        id,
        account_id: account_id.to_string(),
        hash: hash_token(&token),
        name,
        scopes: scopes_to_db(scopes),
        created_at: now_ms(),
        expires_at,
        last_used_at: None,
        revoked_at: None,
    };
    (token, row)
}

/// Hex SHA-256 of the whole token.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The id part of a well-formed token.
pub(crate) fn token_id_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let ok = id.len() == 16
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && !secret.is_empty()
        && secret.len() <= 256;
    ok.then_some(id)
}

/// Constant-time equality of two strings (by their SHA-256, so lengths leak nothing).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes())
        .ct_eq(&Sha256::digest(b.as_bytes()))
        .into()
}

/// An authenticated API caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: AccountRow,
    pub token: TokenRow,
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// 403 unless the token has a scope covering `needed`; `action` completes "… needs".
    pub fn require(&self, needed: Scope, action: &str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s.covers(needed)) {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "{action} needs a token with the {} scope; this token has [{}]: create one with \
             `POST /v1/tokens` and scopes [\"{}\"]",
            needed.as_str(),
            scopes_to_db(&self.scopes),
            needed.as_str()
        )))
    }

    /// 403 unless the account is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.account.is_admin() {
            return Ok(());
        }
        Err(ApiError::Forbidden(
            "this endpoint is for admin accounts; ask an operator to run \
             `warren-control admin create-account --admin`"
                .into(),
        ))
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The client address (unspecified for in-process calls without `ConnectInfo`).
pub fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        // No credentials is not an attempt to guess one: 401, never 429.
        let Some(token) = bearer(parts) else {
            return Err(ApiError::Unauthorized(
                "this endpoint needs an API token: send `Authorization: Bearer wrn_...` \
                 (`warren login` stores one)"
                    .into(),
            ));
        };
        let ip = client_ip(parts);
        state.limiter().check(ip)?;
        match authenticate(state, token).await? {
            Ok(caller) => Ok(caller),
            Err(why) => {
                state.limiter().fail(ip);
                Err(ApiError::Unauthorized(why.into()))
            }
        }
    }
}

async fn authenticate(
    state: &AppState,
    token: &str,
) -> Result<Result<Caller, &'static str>, ApiError> {
    const INVALID: &str = "the API token is not valid; check it or create a new one";
    let Some(id) = token_id_of(token) else {
        return Ok(Err(INVALID));
    };
    let db = state.db();
    let Some(row) = db.token(id).await? else {
        return Ok(Err(INVALID));
    };
    let presented = hash_token(token);
    if !bool::from(presented.as_bytes().ct_eq(row.hash.as_bytes())) {
        return Ok(Err(INVALID));
    }
    if row.revoked_at.is_some() {
        return Ok(Err("this API token was revoked; create a new one"));
    }
    let now = now_ms();
    if row.expires_at.is_some_and(|exp| exp <= now) {
        return Ok(Err("this API token has expired; create a new one"));
    }
    let Some(account) = db.account(&row.account_id).await? else {
        return Ok(Err(INVALID));
    };
    db.touch_token(&row.id, now).await?;
    let scopes = scopes_from_db(&row.scopes);
    Ok(Ok(Caller {
        account,
        token: TokenRow {
            last_used_at: Some(now),
            ..row
        },
        scopes,
    }))
}

/// An edge authenticated with the edge secret (for `/internal`).
#[derive(Debug, Clone, Copy)]
pub struct Edge;

impl FromRequestParts<AppState> for Edge {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Edge, ApiError> {
        let Some(secret) = state.config().edge_secret.as_deref() else {
            return Err(ApiError::NotFound(
                "the internal API is disabled: control runs without an edge secret".into(),
            ));
        };
        let ip = client_ip(parts);
        state.limiter().check(ip)?;
        match bearer(parts) {
            Some(given) if secrets_equal(given, secret) => Ok(Edge),
            _ => {
                state.limiter().fail(ip);
                Err(ApiError::Unauthorized(
                    "this endpoint is for edges: send `Authorization: Bearer <edge secret>`".into(),
                ))
            }
        }
    }
}

/// Failed authentications per client address: at most `max` per `window`, then 429.
#[derive(Debug)]
pub struct AuthLimiter {
    max: AtomicU32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthLimiter {
    pub fn new(max: u32, window: Duration) -> AuthLimiter {
        AuthLimiter {
            max: AtomicU32::new(max),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Err(429) while `ip` has used up its failures in the current window.
    pub fn check(&self, ip: IpAddr) -> Result<(), ApiError> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((start, count)) = map.get(&ip) {
            let elapsed = start.elapsed();
            if *count >= self.max.load(Ordering::Relaxed) && elapsed < self.window {
                let left = self.window - elapsed;
                return Err(ApiError::TooManyRequests {
                    retry_after_secs: left.as_secs().max(1),
                });
            }
        }
        Ok(())
    }

    /// Changes how many failures a window allows.
    pub fn set_max(&self, max: u32) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Counts one failed authentication of `ip`.
    pub fn fail(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            let window = self.window;
            map.retain(|_, (start, _)| start.elapsed() < window);
        }
        let entry = map.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_documented_shape() {
        let (token, row) = generate_token("acc", None, &[Scope::Read], None);
        assert_eq!(token_id_of(&token), Some(row.id.as_str()));
        assert!(token.starts_with("wrn_") && token.len() == 4 + 16 + 1 + SECRET_LEN);
        assert_eq!(row.hash, hash_token(&token));
        assert!(!format!("{row:?}").contains(&row.hash));
    }

    #[test]
    fn scopes_nest() {
        assert!(Scope::Manage.covers(Scope::Tunnel));
        assert!(Scope::Tunnel.covers(Scope::Read));
        assert!(!Scope::Read.covers(Scope::Tunnel));
        assert!(!Scope::Tunnel.covers(Scope::Manage));
    }

    #[test]
    fn limiter_blocks_after_max_failures() {
        let limiter = AuthLimiter::new(2, Duration::from_secs(60));
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        limiter.fail(ip);
        assert!(limiter.check(ip).is_ok());
        limiter.fail(ip);
        assert!(matches!(
            limiter.check(ip),
            Err(ApiError::TooManyRequests { .. })
        ));
    }
}
