//! Development only: a local CA that signs a certificate for each name under the edge's
//! domains the first time a visitor asks for it (`warren dev --tls`: browsers and rustls refuse
//! a `*.localhost` wildcard, one label below a top-level name, so each tunnel gets its own).

use super::resolver::{CertResolver, LoadedCert};
use rcgen::{CertificateParams, Issuer, KeyPair};
use std::path::Path;

/// Most names signed by one edge: random SNI cannot grow memory without bound.
const MAX_MINTED: usize = 1000;

pub struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    minted: std::sync::atomic::AtomicUsize,
}

impl LocalCa {
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<LocalCa> {
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
        };
        let ca_pem = read(cert)?;
        let key = KeyPair::from_pem(&read(key)?)
            .map_err(|e| anyhow::anyhow!("--tls-local-ca-key: {e}"))?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)
            .map_err(|e| anyhow::anyhow!("--tls-local-ca-cert: {e}"))?;
        Ok(LocalCa {
            issuer,
            ca_pem,
            minted: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Signs a certificate for `name` and serves it from now on.
    pub fn mint(&self, name: &str, resolver: &CertResolver) -> bool {
        use std::sync::atomic::Ordering;
        if self.minted.fetch_add(1, Ordering::Relaxed) >= MAX_MINTED {
            return false;
        }
        let minted = (|| {
            let key = KeyPair::generate().ok()?;
            let params = CertificateParams::new(vec![name.to_string()]).ok()?;
            let cert = params.signed_by(&key, &self.issuer).ok()?;
            let chain = format!("{}{}", cert.pem(), self.ca_pem);
            LoadedCert::from_pem(&chain, &key.serialize_pem()).ok()
        })();
        match minted {
            Some(cert) => {
                tracing::debug!(%name, "certificate signed by the local CA");
                resolver.install(cert);
                true
            }
            None => false,
        }
    }
}
