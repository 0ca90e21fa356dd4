//! Grants: verifying control's signed tickets offline, with control's public keys.
//!
//! [`GrantVerifier`] keeps control's keys (the JWKS) in memory. It refreshes them every five
//! minutes in the background, and when a grant names a key it does not know (a rotation), at
//! most once per ten seconds, so grants with made-up key ids cannot make the edge hammer
//! control. When control is down the cached keys keep verifying: an outage of control never
//! stops agents from connecting.
//!
//! - `jwt.rs`: the JWT taken apart and its signature checked.
//! - `jwks.rs`: the key set format.

pub mod jwks;
pub mod jwt;

use crate::control_http::{ControlHttp, ControlHttpError};
use ed25519_dalek::VerifyingKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use warren_proto::control::{Reject, RejectCode};
use warren_proto::grant::{GRANT_AUDIENCE, GRANT_ISSUER, GrantClaims};
use warren_proto::names::CustomDomain;

/// How often the key set is refreshed in the background.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// At most one refetch per this interval for grants naming an unknown key.
pub const UNKNOWN_KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Clock skew tolerated between control and the edge when checking `exp`.
pub const EXPIRY_LEEWAY_SECS: u64 = 30;

/// Checks grants for one edge (its region and domain).
#[derive(Clone)]
pub struct GrantVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    http: ControlHttp,
    region: String,
    domain: String,
    keys: RwLock<HashMap<String, VerifyingKey>>,
    /// Held while fetching (one fetch at a time); holds when the last unknown-key refetch ran.
    refetch: tokio::sync::Mutex<Option<Instant>>,
    closed: Arc<ClosedTunnels>,
}

impl GrantVerifier {
    /// A verifier with no keys yet: call [`GrantVerifier::refresh`] and
    /// [`GrantVerifier::spawn_refresher`] (as `Deps::with_control` does).
    pub fn new(
        http: ControlHttp,
        region: &str,
        domain: &str,
        closed: Arc<ClosedTunnels>,
    ) -> GrantVerifier {
        GrantVerifier {
            inner: Arc::new(Inner {
                http,
                region: region.to_string(),
                domain: domain.to_ascii_lowercase(),
                keys: RwLock::new(HashMap::new()),
                refetch: tokio::sync::Mutex::new(None),
                closed,
            }),
        }
    }

    /// Fetches the key set and replaces the cached keys; on failure the cache is kept.
    /// Returns how many keys are usable.
    pub async fn refresh(&self) -> Result<usize, ControlHttpError> {
        self.inner.refresh().await
    }

    /// Refreshes the keys every [`REFRESH_INTERVAL`] until the verifier is dropped.
    pub fn spawn_refresher(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH_INTERVAL).await;
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = inner.refresh().await {
                    tracing::warn!(error = %e, "cannot refresh control's signing keys; using the cached ones");
                }
            }
        });
    }

    /// How many keys are cached.
    pub fn key_count(&self) -> usize {
        read(&self.inner.keys).len()
    }

    /// Verifies `token` and its claims against this edge. The rejection's message tells the
    /// user what is wrong and what to do.
    pub async fn verify(&self, token: &str) -> Result<GrantClaims, Reject> {
        let parsed = jwt::parse(token).map_err(|e| {
            unauthorized(format!("{e}: run `warren http` again to get a new grant"))
        })?;
        let Some(key) = self.inner.key(&parsed.kid).await else {
            return Err(unauthorized(format!(
                "the grant is signed with a key this edge does not know ({:?}): run `warren http` \
                 again to get a new grant; if that keeps failing, this edge cannot reach control",
                truncate(&parsed.kid, 64)
            )));
        };
        let claims = parsed.verify(&key).map_err(|e| {
            unauthorized(format!(
                "{e}: this grant was not issued by this Warren's control plane; run `warren http` again"
            ))
        })?;
        self.check(&claims, unix_now())?;
        Ok(claims)
    }

    /// Checks verified claims against this edge at time `now` (Unix seconds).
    pub fn check(&self, claims: &GrantClaims, now: u64) -> Result<(), Reject> {
        let inner = &self.inner;
        if claims.iss != GRANT_ISSUER || claims.aud != GRANT_AUDIENCE {
            return Err(unauthorized(format!(
                "the grant is not meant for Warren edges (issuer {:?}, audience {:?}): use the \
                 grant `warren http` gets from control",
                truncate(&claims.iss, 64),
                truncate(&claims.aud, 64)
            )));
        }
        if claims.exp.saturating_add(EXPIRY_LEEWAY_SECS) < now {
            return Err(unauthorized(
                "the grant expired: run `warren http` again to get a new one",
            ));
        }
        if claims.region != inner.region {
            return Err(forbidden(format!(
                "the grant is for region {:?} but this edge serves region {:?}: connect to the \
                 edge control named with the grant (run `warren http` again)",
                truncate(&claims.region, 64),
                inner.region
            )));
        }
        if !inner.serves(claims) {
            return Err(forbidden(format!(
                "the grant is for {:?}, which this edge (domain {}) does not serve: connect to \
                 the edge control named with the grant",
                truncate(&claims.hostname, 128),
                inner.domain
            )));
        }
        if let Some(reason) = inner.closed.reason(&claims.tunnel_id, now) {
            return Err(forbidden(format!(
                "this tunnel was closed through the API ({reason}): run `warren http` again to \
                 open a new one"
            )));
        }
        Ok(())
    }
}

impl Inner {
    /// A grant names either `NAME.<domain>` or, marked `custom_domain`, a hostname outside the
    /// edge's domain whose ownership control verified (the edge cannot check DNS itself; it
    /// trusts control's signature, and refuses names that are not hostnames at all).
    fn serves(&self, claims: &GrantClaims) -> bool {
        let host = claims.hostname.to_ascii_lowercase();
        if claims.custom_domain {
            return CustomDomain::parse(&host)
                .is_ok_and(|d| d.as_str() == host && !d.is_within(&self.domain));
        }
        host.strip_suffix(&self.domain)
            .and_then(|label| label.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.'))
    }

    async fn refresh(&self) -> Result<usize, ControlHttpError> {
        let jwks: jwks::Jwks = self.http.get_json(jwks::JWKS_PATH).await?;
        let (keys, skipped) = jwks.keys_by_id();
        if skipped > 0 {
            tracing::warn!(skipped, "control's key set has keys this edge cannot use");
        }
        let count = keys.len();
        *write(&self.keys) = keys;
        tracing::debug!(keys = count, "control's signing keys refreshed");
        Ok(count)
    }

    fn cached(&self, kid: &str) -> Option<VerifyingKey> {
        read(&self.keys).get(kid).copied()
    }

    /// The key named `kid`, refetching the key set if it is unknown and the last such refetch
    /// is old enough.
    async fn key(&self, kid: &str) -> Option<VerifyingKey> {
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        let mut last = self.refetch.lock().await;
        // Another HELLO may have fetched while this one waited.
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        if last.is_some_and(|at| at.elapsed() < UNKNOWN_KEY_REFETCH_INTERVAL) {
            return None;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "a grant names an unknown key and control's key set cannot be fetched");
        }
        self.cached(kid)
    }
}

/// Tunnels closed through control's API, refused until their grants expire.
#[derive(Default)]
pub struct ClosedTunnels {
    map: Mutex<HashMap<String, (u64, String)>>,
}

impl ClosedTunnels {
    /// Refuses `tunnel_id` until `until` (Unix seconds).
    pub fn insert(&self, tunnel_id: &str, until: u64, reason: &str) {
        let mut map = lock(&self.map);
        let entry = map
            .entry(tunnel_id.to_string())
            .or_insert((until, String::new()));
        entry.0 = entry.0.max(until);
        entry.1 = truncate(reason, 200).to_string();
    }

    /// Why `tunnel_id` is closed at `now`, if it is.
    pub fn reason(&self, tunnel_id: &str, now: u64) -> Option<String> {
        lock(&self.map)
            .get(tunnel_id)
            .filter(|(until, _)| *until >= now)
            .map(|(_, reason)| reason.clone())
    }

    /// Forgets tunnels whose grants have expired.
    pub fn prune(&self, now: u64) {
        lock(&self.map).retain(|_, (until, _)| *until >= now);
    }

    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unauthorized(message: impl Into<String>) -> Reject {
    Reject::new(RejectCode::Unauthorized, message)
}

fn forbidden(message: impl Into<String>) -> Reject {
    Reject::new(RejectCode::Forbidden, message)
}

/// At most `max` bytes of `text`, cut at a character boundary (claims are shown to users and
/// logged; a huge claim must not make a huge message).
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

// The maps are replaced or updated by single calls, so a panic elsewhere cannot leave them
// half-changed: recovering a poisoned lock is safe.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::control::TunnelProtocol;

    fn verifier() -> GrantVerifier {
        let http = ControlHttp::new(
            "http://127.0.0.1:9",
            &crate::control_http::ControlTrust::insecure_http(),
        )
        .expect("valid url");
        GrantVerifier::new(http, "eu", "eu.example.net", Arc::default())
    }

    fn claims() -> GrantClaims {
        GrantClaims {
            iss: GRANT_ISSUER.into(),
            aud: GRANT_AUDIENCE.into(),
            sub: "acct".into(),
            iat: 1000,
            exp: 2000,
            jti: "j".into(),
            tunnel_id: "t1".into(),
            token_id: "tok".into(),
            protocol: TunnelProtocol::Http,
            hostname: "demo.eu.example.net".into(),
            region: "eu".into(),
            custom_domain: false,
        }
    }

    fn code(result: Result<(), Reject>) -> Option<RejectCode> {
        result.err().map(|r| r.code)
    }

    #[test]
    fn claims_are_checked_against_the_edge() {
        let v = verifier();
        assert_eq!(code(v.check(&claims(), 1500)), None);
        assert_eq!(code(v.check(&claims(), 2030)), None, "leeway");
        assert_eq!(
            code(v.check(&claims(), 2031)),
            Some(RejectCode::Unauthorized)
        );
        let mut c = claims();
        c.aud = "someone-else".into();
        assert_eq!(code(v.check(&c, 1500)), Some(RejectCode::Unauthorized));
        let mut c = claims();
        c.region = "us".into();
        assert_eq!(code(v.check(&c, 1500)), Some(RejectCode::Forbidden));
        for host in [
            "demo.us.example.net",
            "a.b.eu.example.net",
            ".eu.example.net",
            "eu.example.net",
            "demoeu.example.net",
        ] {
            let mut c = claims();
            c.hostname = host.into();
            assert_eq!(
                code(v.check(&c, 1500)),
                Some(RejectCode::Forbidden),
                "{host}"
            );
        }
    }

    #[test]
    fn custom_domains_need_the_explicit_claim() {
        let v = verifier();
        let mut c = claims();
        c.hostname = "app.example.com".into();
        assert_eq!(
            code(v.check(&c, 1500)),
            Some(RejectCode::Forbidden),
            "a foreign hostname without custom_domain"
        );
        c.custom_domain = true;
        assert_eq!(code(v.check(&c, 1500)), None);
        for host in [
            "eu.example.net",
            "a.b.eu.example.net",
            "10.0.0.1",
            "localhost",
            "*.example.com",
            "",
        ] {
            let mut c = claims();
            c.custom_domain = true;
            c.hostname = host.into();
            assert_eq!(
                code(v.check(&c, 1500)),
                Some(RejectCode::Forbidden),
                "{host}"
            );
        }
    }

    #[test]
    fn closed_tunnels_are_refused_until_their_grants_expire() {
        let closed = Arc::new(ClosedTunnels::default());
        let http = ControlHttp::new(
            "http://127.0.0.1:9",
            &crate::control_http::ControlTrust::insecure_http(),
        )
        .expect("valid url");
        let v = GrantVerifier::new(http, "eu", "eu.example.net", closed.clone());
        closed.insert("t1", 1800, "closed by alice");
        let refused = v.check(&claims(), 1500).expect_err("closed");
        assert_eq!(refused.code, RejectCode::Forbidden);
        assert!(refused.message.contains("closed through the API"));
        assert_eq!(code(v.check(&claims(), 1801)), None);
        closed.prune(1801);
        assert!(closed.is_empty());
    }
}
