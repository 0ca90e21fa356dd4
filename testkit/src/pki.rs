//! Throwaway certificate authorities for tests: a CA, and leaf certificates it signs for
//! servers and clients (both extended key usages, so one leaf serves mutual TLS too).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use std::path::{Path, PathBuf};

/// A CA made for one test.
pub struct TestCa {
    /// Its certificate, PEM: what a client or server trusts.
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate signed by a [`TestCa`] and its private key, both PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Paths of a CA certificate and a leaf written to a directory.
pub struct LeafFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name` (its common name).
    pub fn new(name: &str) -> anyhow::Result<TestCa> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key)?;
        Ok(TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A leaf for `names` (DNS names or IP addresses), usable as server and as client.
    pub fn issue(&self, names: &[&str]) -> anyhow::Result<Leaf> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes this CA's certificate and a new leaf for `names` into `dir` as
    /// `{prefix}-ca.pem`, `{prefix}.pem`, `{prefix}.key`.
    pub fn write_leaf(
        &self,
        dir: &Path,
        prefix: &str,
        names: &[&str],
    ) -> anyhow::Result<LeafFiles> {
        let leaf = self.issue(names)?;
        let files = LeafFiles {
            ca: dir.join(format!("{prefix}-ca.pem")),
            cert: dir.join(format!("{prefix}.pem")),
            key: dir.join(format!("{prefix}.key")),
        };
        std::fs::write(&files.ca, &self.cert_pem)?;
        std::fs::write(&files.cert, &leaf.cert_pem)?;
        std::fs::write(&files.key, &leaf.key_pem)?;
        Ok(files)
    }
}
