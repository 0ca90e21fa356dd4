//! TLS for visitors: the HTTPS listener, the certificates it serves by SNI, and where they come
//! from (static files, or ACME with a store every edge shares).
//!
//! # Layout (in the order a TLS connection travels)
//! - `accept.rs`: the handshake: read the ClientHello, maybe start an order for a verified
//!   custom domain seen for the first time, then finish with the shared server config.
//! - `resolver.rs`: the certificates in memory, by name (exact, then wildcard), hot-swapped.
//! - `manager.rs`: keeps them fresh: loads what the store holds, orders what is missing or due
//!   (at two thirds of its lifetime), under a cluster-wide lock.
//! - `acme.rs`: one ACME order (instant-acme): DNS-01 for region wildcards, HTTP-01 for custom
//!   domains; `dns.rs`: the DNS providers DNS-01 goes through.
//! - `store.rs`: the shared store (Redis, or in process for one edge), sealed with the
//!   operator's key; `seal.rs`: the sealing.
//! - `local_ca.rs`: development only: a local CA signing a certificate per name on first use.
//! - `settings.rs`: the flags.

pub mod accept;
pub mod acme;
pub mod dns;
pub mod local_ca;
pub mod manager;
pub mod resolver;
pub mod seal;
pub mod settings;
pub mod store;

pub use manager::CertManager;
pub use resolver::{CertResolver, LoadedCert};
pub use settings::TlsSettings;

use std::sync::Arc;

/// The ALPN protocols offered to visitors, preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The TLS side of a running edge: the server config (whose resolver reads the live
/// certificates) and, with ACME, the manager that keeps them fresh.
pub struct Tls {
    pub resolver: Arc<CertResolver>,
    pub server_config: Arc<rustls::ServerConfig>,
    pub manager: Option<Arc<CertManager>>,
    /// Development only: signs certificates for the edge's own names on first use.
    pub local_ca: Option<local_ca::LocalCa>,
    /// The edge's domains: the only names the local CA signs for.
    pub own_domains: Vec<String>,
}

impl Tls {
    pub fn new(resolver: Arc<CertResolver>, manager: Option<Arc<CertManager>>) -> Tls {
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Tls {
            resolver,
            server_config: Arc::new(config),
            manager,
            local_ca: None,
            own_domains: Vec::new(),
        }
    }

    /// Whether `name` is one of the edge's domains or a tunnel name one label below one.
    pub fn is_own_tunnel_name(&self, name: &str) -> bool {
        self.own_domains
            .iter()
            .any(|d| crate::host::classify(name, d).is_ok())
    }
}

/// Installs ring as the process's rustls crypto provider (a second call is harmless). Every
/// `main` and test harness calls it first: with two providers compiled in, rustls cannot pick.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the TLS side from the settings: static certificate files, and/or ACME with the
/// given shared store (in process when `None`).
pub fn setup(
    settings: &TlsSettings,
    domains: &[String],
    routes: Arc<dyn crate::routes::RouteTable>,
    store: Option<Arc<dyn store::CertStore>>,
    edge_id: &str,
) -> anyhow::Result<Tls> {
    install_crypto_provider();
    let resolver = Arc::new(CertResolver::new());
    if let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) {
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
        };
        let loaded = LoadedCert::from_pem(&read(cert)?, &read(key)?)
            .map_err(|e| anyhow::anyhow!("--tls-cert {} / --tls-key: {e}", cert.display()))?;
        tracing::info!(names = ?loaded.names, not_after = ?loaded.not_after, "certificate loaded from file");
        resolver.install(loaded);
    }
    let Some(directory) = &settings.acme_directory else {
        let local_ca = match (&settings.tls_local_ca_cert, &settings.tls_local_ca_key) {
            (Some(cert), Some(key)) => Some(local_ca::LocalCa::load(cert, key)?),
            _ => None,
        };
        if settings.tls_cert.is_none() && local_ca.is_none() {
            anyhow::bail!(
                "the TLS listener needs certificates: pass --tls-cert and --tls-key, or \
                 --acme-directory (with --acme-dns-provider for the region wildcard)"
            );
        }
        let mut tls = Tls::new(resolver, None);
        tls.local_ca = local_ca;
        tls.own_domains = domains.to_vec();
        return Ok(tls);
    };
    let sealer = Arc::new(seal::Sealer::new(settings.store_key()?));
    let store = store.unwrap_or_else(|| Arc::new(store::MemoryCertStore::new()));
    let dns = settings
        .acme_dns_provider
        .as_deref()
        .map(dns::parse_provider)
        .transpose()?;
    if dns.is_none() {
        tracing::warn!(
            "no --acme-dns-provider: no wildcard for the edge's domains (DNS-01 is the only way to get one); only custom domains get certificates"
        );
    }
    let acme = acme::AcmeClient::new(
        directory.clone(),
        settings.acme_contact.clone(),
        settings.acme_ca_file.clone(),
        dns,
        store.clone(),
        sealer.clone(),
    );
    let manager = CertManager::new(
        resolver.clone(),
        store,
        sealer,
        routes,
        manager::ManagerSettings {
            acme: Some(acme),
            own_domains: domains.to_vec(),
            edge_id: edge_id.to_string(),
            check_every: settings.cert_check_interval,
            orders_per_hour: settings.acme_orders_per_account_hour,
        },
    );
    Ok(Tls::new(resolver, Some(Arc::new(manager))))
}
