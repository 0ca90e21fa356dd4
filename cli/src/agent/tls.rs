//! `wss://` to the edge: which certificates the agent trusts.
//!
//! By default the system's roots (rustls-platform-verifier: the OS trust store, read locally,
//! nothing fetched); `--ca-file` for an edge whose certificate comes from a private CA (or
//! `warren dev --tls`); `--insecure` accepts any certificate, with a loud warning, for a test
//! edge only. TLS 1.2/1.3 signatures are still checked under `--insecure`: it skips only the
//! question of who issued the certificate.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Whom the agent trusts for the edge's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EdgeTrust {
    /// The operating system's roots.
    #[default]
    System,
    /// Only the CA certificates in this PEM file.
    CaFile(PathBuf),
    /// Any certificate (`--insecure`).
    Insecure,
}

static DEFAULT_TRUST: OnceLock<EdgeTrust> = OnceLock::new();

/// Sets the trust every agent of this process starts with (from `--ca-file`/`--insecure`,
/// once, when the command line is parsed).
pub fn set_default_trust(trust: EdgeTrust) {
    if trust == EdgeTrust::Insecure {
        eprintln!(
            "WARNING: --insecure: the edge's TLS certificate is NOT verified. Anyone on the path \
             can read and change this tunnel's traffic. Use it only against a test edge; for a \
             private CA pass --ca-file instead."
        );
    }
    let _ = DEFAULT_TRUST.set(trust);
}

pub fn default_trust() -> EdgeTrust {
    DEFAULT_TRUST.get().cloned().unwrap_or_default()
}

/// A rustls client config for `trust`, offering HTTP/1.1 only (WebSocket upgrades need it).
pub fn client_config(trust: &EdgeTrust) -> Result<Arc<ClientConfig>, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = match trust {
        EdgeTrust::System => {
            use rustls_platform_verifier::ConfigVerifierExt;
            ClientConfig::with_platform_verifier()
                .map_err(|e| format!("cannot load the system's trusted roots: {e}"))?
        }
        EdgeTrust::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "--ca-file {} holds no PEM certificate",
                    path.display()
                ));
            }
            ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth()
        }
        EdgeTrust::Insecure => ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                rustls::crypto::ring::default_provider(),
            )))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `--insecure`: any certificate, signatures still checked.
#[derive(Debug)]
struct AnyCertificate(rustls::crypto::CryptoProvider);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
