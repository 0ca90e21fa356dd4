//! The TLS and ACME flags (flattened into [`crate::EdgeConfig`]). Every flag also reads an
//! environment variable; the store key is a secret and never shown.

use crate::duration::parse_duration;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, clap::Args)]
pub struct TlsSettings {
    /// Certificate chain (PEM) served on the TLS listener for every name it covers: the
    /// simplest source, e.g. a wildcard for the edge's domain obtained elsewhere.
    #[arg(long, env = "WARREN_EDGE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "WARREN_EDGE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Development only (`warren dev --tls`): a CA certificate (PEM) that signs a certificate
    /// for each name under the edge's domains on first use. Needs --tls-local-ca-key.
    #[arg(
        long,
        env = "WARREN_EDGE_TLS_LOCAL_CA_CERT",
        requires = "tls_local_ca_key"
    )]
    pub tls_local_ca_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-local-ca-cert.
    #[arg(
        long,
        env = "WARREN_EDGE_TLS_LOCAL_CA_KEY",
        requires = "tls_local_ca_cert"
    )]
    pub tls_local_ca_key: Option<PathBuf>,

    /// ACME directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory (or the staging
    /// one). Turns on certificates from ACME: a wildcard per served domain via DNS-01 (needs
    /// --acme-dns-provider) and certificates for verified custom domains via HTTP-01.
    #[arg(long, env = "WARREN_EDGE_ACME_DIRECTORY")]
    pub acme_directory: Option<String>,

    /// Contact for the ACME account (e.g. mailto:ops@example.net). Repeatable.
    #[arg(long, env = "WARREN_EDGE_ACME_CONTACT", value_delimiter = ',')]
    pub acme_contact: Vec<String>,

    /// PEM file with the root the ACME directory's own HTTPS certificate chains to, for a
    /// private ACME server (pebble, step-ca). Default: the system's roots.
    #[arg(long, env = "WARREN_EDGE_ACME_CA_FILE")]
    pub acme_ca_file: Option<PathBuf>,

    /// Where DNS-01 TXT records are written: `exec=/path/to/hook` (runs `hook present|cleanup
    /// FQDN VALUE`) or `challtestsrv=http://HOST:PORT` (pebble's test DNS, tests only).
    #[arg(long, env = "WARREN_EDGE_ACME_DNS_PROVIDER")]
    pub acme_dns_provider: Option<String>,

    /// Key that seals ACME account keys and certificates in the shared store: 32 bytes as 64
    /// hex characters. Needed with --redis-url; every edge of the cluster uses the same.
    #[arg(long, env = "WARREN_EDGE_CERT_STORE_KEY", hide_env_values = true)]
    pub cert_store_key: Option<String>,

    /// File holding the store key (64 hex characters), instead of --cert-store-key.
    #[arg(long, env = "WARREN_EDGE_CERT_STORE_KEY_FILE")]
    pub cert_store_key_file: Option<PathBuf>,

    /// How often each edge looks at the store for new certificates and at expiry dates.
    #[arg(long, env = "WARREN_EDGE_CERT_CHECK", default_value = "60s", value_parser = parse_duration)]
    pub cert_check_interval: Duration,

    /// Certificate orders for custom domains one account may cause per hour.
    #[arg(long, env = "WARREN_EDGE_ACME_ORDERS_PER_HOUR", default_value_t = 10)]
    pub acme_orders_per_account_hour: u32,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            tls_cert: None,
            tls_key: None,
            tls_local_ca_cert: None,
            tls_local_ca_key: None,
            acme_directory: None,
            acme_contact: Vec::new(),
            acme_ca_file: None,
            acme_dns_provider: None,
            cert_store_key: None,
            cert_store_key_file: None,
            cert_check_interval: Duration::from_secs(60),
            acme_orders_per_account_hour: 10,
        }
    }
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_local_ca_cert", &self.tls_local_ca_cert)
            .field("acme_directory", &self.acme_directory)
            .field("acme_contact", &self.acme_contact)
            .field("acme_ca_file", &self.acme_ca_file)
            .field("acme_dns_provider", &self.acme_dns_provider)
            .field(
                "cert_store_key",
                &self.cert_store_key.as_ref().map(|_| "<redacted>"),
            )
            .field("cert_store_key_file", &self.cert_store_key_file)
            .field("cert_check_interval", &self.cert_check_interval)
            .finish()
    }
}

impl TlsSettings {
    /// Whether certificates come from ACME.
    pub fn acme(&self) -> bool {
        self.acme_directory.is_some()
    }

    /// Checks the settings; the error says which one is wrong and what to do.
    pub fn validate(&self, clustered: bool) -> Result<(), BadTlsSettings> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(BadTlsSettings::CertWithoutKey);
        }
        if self.tls_local_ca_cert.is_some() != self.tls_local_ca_key.is_some() {
            return Err(BadTlsSettings::LocalCaWithoutKey);
        }
        if let Some(url) = &self.acme_directory
            && !url.starts_with("https://")
        {
            return Err(BadTlsSettings::AcmeNotHttps { url: url.clone() });
        }
        if let Some(provider) = &self.acme_dns_provider {
            crate::tls::dns::parse_provider(provider)?;
        }
        if self.acme() && clustered && !self.has_store_key() {
            return Err(BadTlsSettings::ClusterNeedsStoreKey);
        }
        if self.cert_check_interval < Duration::from_millis(100) {
            return Err(BadTlsSettings::CheckTooOften);
        }
        Ok(())
    }

    fn has_store_key(&self) -> bool {
        self.cert_store_key.is_some() || self.cert_store_key_file.is_some()
    }

    /// The store key's 32 bytes, from the flag or the file.
    pub fn store_key(&self) -> Result<Option<[u8; 32]>, BadStoreKey> {
        let raw = match (&self.cert_store_key, &self.cert_store_key_file) {
            (Some(key), _) => key.clone(),
            (None, Some(path)) => {
                std::fs::read_to_string(path).map_err(|source| BadStoreKey::Unreadable {
                    path: path.clone(),
                    source,
                })?
            }
            (None, None) => return Ok(None),
        };
        parse_key(raw.trim()).map(Some)
    }
}

/// TLS settings [`TlsSettings::validate`] refuses; the message names the flag and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadTlsSettings {
    #[error("--tls-cert and --tls-key go together")]
    CertWithoutKey,
    #[error("--tls-local-ca-cert and --tls-local-ca-key go together")]
    LocalCaWithoutKey,
    #[error("--acme-directory {url:?} must be an https:// URL (ACME requires HTTPS)")]
    AcmeNotHttps { url: String },
    #[error(transparent)]
    DnsProvider(#[from] crate::tls::dns::BadDnsProvider),
    #[error(
        "--acme-directory with --redis-url keeps account keys and certificates in \
         Redis: pass --cert-store-key (or --cert-store-key-file) with 64 hex characters, \
         the same on every edge (e.g. `openssl rand -hex 32`)"
    )]
    ClusterNeedsStoreKey,
    #[error("--cert-check must be at least 100ms")]
    CheckTooOften,
}

/// A certificate store key that cannot be read or is not 32 bytes in hex.
#[derive(Debug, thiserror::Error)]
pub enum BadStoreKey {
    /// The reason is the source.
    #[error("cannot read --cert-store-key-file {}", .path.display())]
    Unreadable {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the certificate store key must be 64 hex characters (32 bytes), e.g. from \
         `openssl rand -hex 32`"
    )]
    NotHex,
}

fn parse_key(hex: &str) -> Result<[u8; 32], BadStoreKey> {
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(BadStoreKey::NotHex);
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| BadStoreKey::NotHex)?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_keys_are_64_hex_characters() {
        assert!(parse_key(&"ab".repeat(32)).is_ok());
        assert!(parse_key("abcd").is_err());
        assert!(parse_key(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn debug_hides_the_store_key() {
        let settings = TlsSettings {
            cert_store_key: Some("ab".repeat(32)),
            ..TlsSettings::default()
        };
        assert!(!format!("{settings:?}").contains("abab"));
    }

    #[test]
    fn acme_in_a_cluster_needs_a_store_key() {
        let settings = TlsSettings {
            acme_directory: Some("https://acme.example/dir".into()),
            ..TlsSettings::default()
        };
        assert!(settings.validate(false).is_ok());
        assert!(settings.validate(true).is_err());
        let http = TlsSettings {
            acme_directory: Some("http://acme.example/dir".into()),
            ..TlsSettings::default()
        };
        assert!(http.validate(false).is_err());
    }
}
