//! The certificates an edge serves, by name, swapped in place while connections run.
//!
//! A lookup is an exact match first, then the wildcard one label up (`a.eu.example.net` →
//! `*.eu.example.net`). A handshake holds its own `Arc` of the certificate it picked, so
//! replacing one never disturbs connections already established.

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A certificate ready to serve, with the facts the manager and the admin endpoint need.
#[derive(Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// Names from the certificate's subject alternative names, lowercased.
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub issuer: String,
    pub serial: String,
}

impl std::fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedCert")
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("no certificate in the PEM data")]
    NoCertificate,
    #[error("no usable private key in the PEM data: {0}")]
    Key(String),
    #[error("the certificate cannot be parsed: {0}")]
    Parse(String),
}

impl LoadedCert {
    /// Parses a PEM chain (leaf first) and its PEM private key.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<LoadedCert, CertError> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| CertError::Parse(e.to_string()))?;
        let leaf = chain.first().ok_or(CertError::NoCertificate)?;
        let facts = leaf_facts(leaf)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| CertError::Key(e.to_string()))?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| CertError::Key(e.to_string()))?;
        Ok(LoadedCert {
            key: Arc::new(CertifiedKey::new(chain, signing)),
            names: facts.names,
            not_before: facts.not_before,
            not_after: facts.not_after,
            issuer: facts.issuer,
            serial: facts.serial,
        })
    }

    /// When renewal starts: two thirds into the lifetime (Let's Encrypt's advice).
    pub fn renew_at(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO);
        self.not_before + lifetime * 2 / 3
    }

    pub fn covers(&self, name: &str) -> bool {
        self.names.iter().any(|n| matches(n, name))
    }
}

struct LeafFacts {
    names: Vec<String>,
    not_before: SystemTime,
    not_after: SystemTime,
    issuer: String,
    serial: String,
}

fn leaf_facts(leaf: &CertificateDer<'_>) -> Result<LeafFacts, CertError> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) =
        X509Certificate::from_der(leaf.as_ref()).map_err(|e| CertError::Parse(e.to_string()))?;
    let time = |t: x509_parser::time::ASN1Time| {
        let secs = u64::try_from(t.timestamp()).unwrap_or(0);
        UNIX_EPOCH + Duration::from_secs(secs)
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    Ok(LeafFacts {
        names,
        not_before: time(cert.validity().not_before),
        not_after: time(cert.validity().not_after),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
    })
}

/// Whether certificate name `pattern` (maybe `*.parent`) covers host `name`.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == name,
    }
}

/// The live certificates, keyed by the names they cover (`*.parent` for wildcards).
#[derive(Debug, Default)]
pub struct CertResolver {
    by_name: RwLock<HashMap<String, Arc<LoadedCert>>>,
    /// Served when the visitor sends no SNI (e.g. `https://127.0.0.1/healthz`).
    default_name: RwLock<Option<String>>,
}

/// What `GET /_warren/certs` shows of one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertSummary {
    pub names: Vec<String>,
    /// Seconds since the Unix epoch.
    pub not_before: u64,
    pub not_after: u64,
    pub renew_at: u64,
    pub issuer: String,
    pub serial: String,
}

impl CertResolver {
    pub fn new() -> CertResolver {
        CertResolver::default()
    }

    /// Serves `cert` for every name it covers, replacing what served them before.
    pub fn install(&self, cert: LoadedCert) {
        let cert = Arc::new(cert);
        let mut map = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        for name in &cert.names {
            map.insert(name.clone(), cert.clone());
        }
        drop(map);
        let mut default = self.default_name.write().unwrap_or_else(|p| p.into_inner());
        if default.is_none() {
            *default = cert.names.first().cloned();
        }
    }

    /// The certificate serving `name`: exact first, then the wildcard one label up.
    pub fn lookup(&self, name: &str) -> Option<Arc<LoadedCert>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let map = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        if let Some(cert) = map.get(&name) {
            return Some(cert.clone());
        }
        let (_, parent) = name.split_once('.')?;
        map.get(&format!("*.{parent}")).cloned()
    }

    /// Every distinct certificate, for the admin endpoint and the metric.
    pub fn summaries(&self) -> Vec<CertSummary> {
        let map = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<CertSummary> = map
            .values()
            .filter(|c| seen.insert(c.serial.clone()))
            .map(|c| CertSummary {
                names: c.names.clone(),
                not_before: unix(c.not_before),
                not_after: unix(c.not_after),
                renew_at: unix(c.renew_at()),
                issuer: c.issuer.clone(),
                serial: c.serial.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.names.cmp(&b.names));
        out
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = match hello.server_name() {
            Some(name) => name.to_string(),
            None => self
                .default_name
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone()?,
        };
        let found = self.lookup(&name);
        if found.is_none() {
            tracing::debug!(sni = %name, "no certificate for this name: handshake refused");
        }
        found.map(|c| c.key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str]) -> LoadedCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(names)
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        LoadedCert::from_pem(&cert.pem(), &key.serialize_pem()).expect("load")
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(matches("*.eu.example.net", "a.eu.example.net"));
        assert!(!matches("*.eu.example.net", "a.b.eu.example.net"));
        assert!(!matches("*.eu.example.net", "eu.example.net"));
        assert!(matches("app.example.com", "app.example.com"));
    }

    #[test]
    fn lookups_prefer_exact_names_and_swap_in_place() {
        let resolver = CertResolver::new();
        let wildcard = self_signed(&["*.eu.example.net"]);
        let wildcard_serial = wildcard.serial.clone();
        resolver.install(wildcard);
        resolver.install(self_signed(&["special.eu.example.net"]));
        let special = resolver.lookup("special.eu.example.net").expect("special");
        assert_eq!(special.names, ["special.eu.example.net"]);
        let other = resolver.lookup("Other.eu.example.net.").expect("wildcard");
        assert_eq!(other.serial, wildcard_serial);
        assert!(resolver.lookup("example.com").is_none());
        resolver.install(self_signed(&["*.eu.example.net"]));
        let swapped = resolver.lookup("other.eu.example.net").expect("swapped");
        assert_ne!(swapped.serial, wildcard_serial);
        assert_eq!(resolver.summaries().len(), 2);
    }
}
