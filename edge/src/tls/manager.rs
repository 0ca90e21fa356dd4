//! Keeps the served certificates fresh, on every edge alike:
//!
//! - every `--cert-check` interval, each managed certificate is read from the shared store and
//!   swapped in if it changed (another edge renewed it), so all edges converge on one
//!   certificate without a restart;
//! - a certificate that is missing or past two thirds of its lifetime is ordered by whichever
//!   edge takes its lock first (`SET NX PX`); the others pick the result up from the store;
//! - a custom domain is ordered on first use, only if it has a live route (routes for custom
//!   domains exist only with a grant control issued for a verified domain), never for a name
//!   under the edge's own domains, and at most `--acme-orders-per-hour` per account.

use super::acme::{AcmeClient, ChallengeKind};
use super::resolver::{CertResolver, LoadedCert};
use super::seal::Sealer;
use super::store::{self, CertStore, StoredCert};
use crate::routes::RouteTable;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// How long one edge may hold an order's lock: longer than any order takes; if the edge dies
/// mid-order, another takes over after this.
const ORDER_LOCK: Duration = Duration::from_secs(300);
/// How long a name without a certificate or route is not looked up again.
const UNKNOWN_TTL: Duration = Duration::from_secs(5);
/// Most names remembered as unknown (a flood of random SNI cannot grow memory).
const MAX_UNKNOWN: usize = 10_000;

pub struct CertManager {
    resolver: Arc<CertResolver>,
    store: Arc<dyn CertStore>,
    sealer: Arc<Sealer>,
    acme: Option<AcmeClient>,
    routes: Arc<dyn RouteTable>,
    /// The domains whose tunnels this edge serves: never ordered one by one.
    own_domains: Vec<String>,
    owner: String,
    check_every: Duration,
    orders_per_hour: u32,
    /// Certificate name → how it is proved: what this edge keeps fresh.
    managed: Mutex<BTreeMap<String, ChallengeKind>>,
    /// Orders in flight on this edge.
    ordering: Mutex<HashSet<String>>,
    /// Custom-domain orders per account in the last hour.
    account_orders: Mutex<HashMap<String, VecDeque<Instant>>>,
    unknown: Mutex<HashMap<String, Instant>>,
    /// Orders this edge placed (tests and logs).
    pub orders_placed: std::sync::atomic::AtomicU64,
}

/// Why a certificate could not be read from the store.
#[derive(Debug, thiserror::Error)]
pub enum CertLoadError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Seal(#[from] super::seal::SealError),
    #[error("stored certificate is unreadable: {0}")]
    Unreadable(serde_json::Error),
    #[error("stored certificate for {name}: {error}")]
    Invalid {
        name: String,
        error: super::resolver::CertError,
    },
}

/// Why ordering a certificate failed; it is retried at the next check.
#[derive(Debug, thiserror::Error)]
pub enum CertOrderError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Load(#[from] CertLoadError),
    #[error(transparent)]
    Acme(#[from] super::acme::AcmeError),
    #[error("the CA's certificate: {0}")]
    Issued(super::resolver::CertError),
    #[error(transparent)]
    Encode(serde_json::Error),
    #[error(transparent)]
    Seal(#[from] super::seal::SealError),
}

/// What the manager needs to know at start.
pub struct ManagerSettings {
    pub acme: Option<AcmeClient>,
    pub own_domains: Vec<String>,
    pub edge_id: String,
    pub check_every: Duration,
    pub orders_per_hour: u32,
}

impl CertManager {
    pub fn new(
        resolver: Arc<CertResolver>,
        store: Arc<dyn CertStore>,
        sealer: Arc<Sealer>,
        routes: Arc<dyn RouteTable>,
        settings: ManagerSettings,
    ) -> CertManager {
        let mut managed = BTreeMap::new();
        if settings.acme.as_ref().is_some_and(AcmeClient::has_dns) {
            for domain in &settings.own_domains {
                managed.insert(format!("*.{domain}"), ChallengeKind::Dns01);
            }
        }
        CertManager {
            resolver,
            store,
            sealer,
            acme: settings.acme,
            routes,
            own_domains: settings.own_domains,
            owner: format!("{}-{:08x}", settings.edge_id, rand::random::<u32>()),
            check_every: settings.check_every,
            orders_per_hour: settings.orders_per_hour,
            managed: Mutex::new(managed),
            ordering: Mutex::new(HashSet::new()),
            account_orders: Mutex::new(HashMap::new()),
            unknown: Mutex::new(HashMap::new()),
            orders_placed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn store(&self) -> &Arc<dyn CertStore> {
        &self.store
    }

    /// Checks every managed certificate now, then every `check_every` until shutdown.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.check_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let managed: Vec<(String, ChallengeKind)> = self
                .lock_managed()
                .iter()
                .map(|(n, k)| (n.clone(), *k))
                .collect();
            for (name, kind) in managed {
                self.clone().check(name, kind).await;
            }
        }
    }

    /// Loads `name` from the store if it changed; orders it (in the background) if it is
    /// missing or due for renewal.
    async fn check(self: Arc<Self>, name: String, kind: ChallengeKind) {
        let current = match self.load(&name).await {
            Ok(current) => current,
            Err(e) => {
                tracing::warn!(cert = %name, error = %e, "cannot read the certificate store");
                return;
            }
        };
        let due = current
            .as_ref()
            .is_none_or(|c| SystemTime::now() >= c.renew_at());
        if due && self.acme.is_some() {
            self.spawn_order(name, kind);
        }
    }

    /// Reads `name` from the store and swaps it in if it is not what the resolver serves.
    async fn load(&self, name: &str) -> Result<Option<Arc<LoadedCert>>, CertLoadError> {
        let key = self.cert_key(name);
        let Some(sealed) = self.store.get(&key).await? else {
            return Ok(self.resolver.lookup(name));
        };
        let plain = self.sealer.open(&key, &sealed)?;
        let stored: StoredCert =
            serde_json::from_slice(&plain).map_err(CertLoadError::Unreadable)?;
        let serving = self.resolver.lookup(name);
        let loaded = LoadedCert::from_pem(&stored.chain_pem, &stored.key_pem).map_err(|error| {
            CertLoadError::Invalid {
                name: name.to_string(),
                error,
            }
        })?;
        if serving.as_ref().is_some_and(|s| s.serial == loaded.serial) {
            return Ok(serving);
        }
        tracing::info!(cert = %name, serial = %loaded.serial, not_after = ?loaded.not_after, "certificate loaded from the store");
        self.resolver.install(loaded);
        Ok(self.resolver.lookup(name))
    }

    fn spawn_order(self: Arc<Self>, name: String, kind: ChallengeKind) {
        if !self
            .ordering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone())
        {
            return;
        }
        let span = tracing::info_span!("acme_order", cert = %name);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                if let Err(e) = self.order_locked(&name, kind).await {
                    tracing::warn!(error = %e, "certificate order failed; retried at the next check");
                }
                self.ordering
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&name);
            },
            span,
        ));
    }

    /// Orders `name` if this edge wins its lock and the store still lacks a fresh certificate.
    async fn order_locked(&self, name: &str, kind: ChallengeKind) -> Result<(), CertOrderError> {
        let Some(acme) = &self.acme else {
            return Ok(());
        };
        let lock = store::lock_key(name);
        if !self.store.lock(&lock, &self.owner, ORDER_LOCK).await? {
            tracing::debug!("another edge is ordering this certificate");
            return Ok(());
        }
        let result = async {
            // Another edge may have stored a fresh one between our check and our lock.
            if let Some(current) = self.load(name).await?
                && SystemTime::now() < current.renew_at()
            {
                return Ok(());
            }
            self.orders_placed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let stored = acme.order(&order_names(name), kind).await?;
            let loaded = LoadedCert::from_pem(&stored.chain_pem, &stored.key_pem)
                .map_err(CertOrderError::Issued)?;
            let key = self.cert_key(name);
            let plain = serde_json::to_vec(&stored).map_err(CertOrderError::Encode)?;
            let sealed = self.sealer.seal(&key, &plain)?;
            self.store.put(&key, &sealed, None).await?;
            tracing::info!(serial = %loaded.serial, not_after = ?loaded.not_after, "certificate issued and stored");
            self.resolver.install(loaded);
            Ok(())
        }
        .await;
        if let Err(e) = self.store.unlock(&lock, &self.owner).await {
            tracing::warn!(error = %e, "could not release the order lock; it expires by itself");
        }
        result
    }

    /// A handshake named `sni` and no certificate covers it. Returns true if one is now
    /// installed (another edge had stored it). A verified custom domain with a live route gets
    /// an order started in the background; anything else is refused.
    pub async fn on_unknown_name(self: &Arc<Self>, sni: &str) -> bool {
        let name = sni.trim_end_matches('.').to_ascii_lowercase();
        if self.is_own(&name) || self.recently_unknown(&name) {
            return false;
        }
        if let Ok(Some(_)) = self.load(&name).await {
            self.lock_managed()
                .entry(name.clone())
                .or_insert(ChallengeKind::Http01);
            return true;
        }
        if self.acme.is_none() {
            self.remember_unknown(name);
            return false;
        }
        let route = match self.routes.lookup(&name).await {
            Ok(Some(route)) => route,
            Ok(None) => {
                tracing::debug!(sni = %name, "no route for this name: no certificate ordered");
                self.remember_unknown(name);
                return false;
            }
            Err(e) => {
                tracing::warn!(sni = %name, error = %e, "route table unavailable");
                return false;
            }
        };
        if self.lock_managed().contains_key(&name) {
            return false;
        }
        if !self.allow_order(&route.account_id) {
            tracing::warn!(sni = %name, account = %route.account_id, "custom-domain certificate orders rate-limited for this account");
            return false;
        }
        tracing::info!(sni = %name, account = %route.account_id, "ordering a certificate for a custom domain on first use");
        self.lock_managed()
            .insert(name.clone(), ChallengeKind::Http01);
        self.clone().spawn_order(name, ChallengeKind::Http01);
        false
    }

    /// The HTTP-01 answer for `token`, from the shared store.
    pub async fn http01_answer(&self, token: &str) -> Option<String> {
        if token.is_empty()
            || token.len() > 128
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        let value = self.store.get(&store::http01_key(token)).await.ok()??;
        String::from_utf8(value).ok()
    }

    fn cert_key(&self, name: &str) -> String {
        let directory = self.acme.as_ref().map_or("", |a| a.directory.as_str());
        store::cert_key(directory, name)
    }

    fn is_own(&self, name: &str) -> bool {
        self.own_domains.iter().any(|d| {
            name == d
                || name
                    .strip_suffix(d.as_str())
                    .is_some_and(|p| p.ends_with('.'))
        })
    }

    fn allow_order(&self, account: &str) -> bool {
        let mut orders = self
            .account_orders
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let recent = orders.entry(account.to_string()).or_default();
        let hour_ago = Instant::now().checked_sub(Duration::from_secs(3600));
        while recent
            .front()
            .is_some_and(|t| hour_ago.is_some_and(|h| *t < h))
        {
            recent.pop_front();
        }
        if recent.len() >= self.orders_per_hour as usize {
            return false;
        }
        recent.push_back(Instant::now());
        true
    }

    fn recently_unknown(&self, name: &str) -> bool {
        let unknown = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
        unknown.get(name).is_some_and(|t| t.elapsed() < UNKNOWN_TTL)
    }

    fn remember_unknown(&self, name: String) {
        let mut unknown = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
        if unknown.len() >= MAX_UNKNOWN {
            unknown.clear();
        }
        unknown.insert(name, Instant::now());
    }

    fn lock_managed(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ChallengeKind>> {
        self.managed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The names one certificate is ordered for: a region wildcard also covers its apex (where
/// agents connect).
fn order_names(name: &str) -> Vec<String> {
    match name.strip_prefix("*.") {
        Some(parent) => vec![name.to_string(), parent.to_string()],
        None => vec![name.to_string()],
    }
}
