//! The edge's HTTP client for control: fetching the JWKS and posting reports.
//!
//! Every exchange is bounded: one deadline for the whole exchange (connect, request, response
//! body) and a cap on the response body, so a slow or hostile control costs the edge one timer
//! and one bounded buffer.
//!
//! Control is reached over HTTPS: its certificate is checked against `--control-ca-file` (the
//! only roots then trusted) or, without it, the system's trust store. The JWKS that verifies
//! every grant and the edge secret travel on this link, so plain `http://` is refused unless
//! the operator says so with `--control-insecure-http` (what `warren dev` does on loopback).

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest any exchange with control may take.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response body accepted from control.
pub const MAX_CONTROL_RESPONSE: usize = 64 * 1024;

/// Why an exchange with control failed. Never holds the edge secret.
#[derive(Debug, thiserror::Error)]
pub enum ControlHttpError {
    #[error("{url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url} sent a response that is too large or cut short: {reason}")]
    Body { url: String, reason: String },
    #[error("{url} sent JSON the edge does not understand: {reason}")]
    Json { url: String, reason: String },
}

/// A control URL or trust setting the edge cannot build a client from.
#[derive(Debug, thiserror::Error)]
pub enum BadControlLink {
    #[error("control URL {url:?} is not a URL")]
    NotAUrl {
        url: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("{}", insecure_refused(.url))]
    PlainHttp { url: String },
    #[error("control URL {url:?} must start with https://")]
    NotHttps { url: String },
    #[error("control URL {url:?} has no host")]
    NoHost { url: String },
    #[error("cannot load the system's trusted roots for control")]
    SystemRoots(#[source] rustls::Error),
    #[error(transparent)]
    CaFile(#[from] BadCaFile),
}

/// A file that cannot be read whole. `file` is how the error shows it: its path, or the flag
/// that named it and its path (`--control-ca-file /etc/ca.pem`).
#[derive(Debug, thiserror::Error)]
pub enum ReadFileError {
    /// The file cannot be opened or read; the reason is the source.
    #[error("{file}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file} is larger than {cap} bytes")]
    TooLarge { file: String, cap: u64 },
}

impl ReadFileError {
    /// The same error, the file shown after `flag` (`--x-file /path`).
    pub fn for_flag(self, flag: &str) -> ReadFileError {
        match self {
            ReadFileError::Io { file, source } => ReadFileError::Io {
                file: format!("{flag} {file}"),
                source,
            },
            ReadFileError::TooLarge { file, cap } => ReadFileError::TooLarge {
                file: format!("{flag} {file}"),
                cap,
            },
        }
    }
}

/// A CA file that is not a set of PEM certificates. `file` is how the error shows it, as in
/// [`ReadFileError`].
#[derive(Debug, thiserror::Error)]
pub enum BadCaFile {
    #[error(transparent)]
    Read(#[from] ReadFileError),
    /// A PEM section cannot be decoded; the reason is the source.
    #[error("{file}")]
    Pem {
        file: String,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// rustls refuses a certificate as a root; the reason is the source.
    #[error("{file}")]
    Root {
        file: String,
        #[source]
        source: rustls::Error,
    },
    #[error("{file} holds no PEM certificate")]
    NoCertificate { file: String },
}

impl BadCaFile {
    /// The same error, the file shown after `flag` (`--control-ca-file /path`).
    pub fn for_flag(self, flag: &str) -> BadCaFile {
        match self {
            BadCaFile::Read(e) => BadCaFile::Read(e.for_flag(flag)),
            BadCaFile::Pem { file, source } => BadCaFile::Pem {
                file: format!("{flag} {file}"),
                source,
            },
            BadCaFile::Root { file, source } => BadCaFile::Root {
                file: format!("{flag} {file}"),
                source,
            },
            BadCaFile::NoCertificate { file } => BadCaFile::NoCertificate {
                file: format!("{flag} {file}"),
            },
        }
    }
}

/// Largest `--control-ca-file` read.
const MAX_CA_FILE: u64 = 1024 * 1024;

/// How the edge trusts the link to control.
#[derive(Debug, Clone, Default)]
pub struct ControlTrust {
    /// Roots for control's certificate (`--control-ca-file`); `None`: the system's.
    pub ca_file: Option<PathBuf>,
    /// Accept a plain `http://` control URL (`--control-insecure-http`).
    pub insecure_http: bool,
}

impl ControlTrust {
    /// Plain HTTP allowed: tests and `warren dev` on loopback.
    pub fn insecure_http() -> ControlTrust {
        ControlTrust {
            ca_file: None,
            insecure_http: true,
        }
    }
}

/// A client for one control plane, cheap to clone.
#[derive(Clone)]
pub struct ControlHttp {
    base: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl fmt::Debug for ControlHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlHttp")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ControlHttp {
    /// A client for `base` (e.g. `https://control.internal:8081`, no trailing slash needed),
    /// checking control's certificate as `trust` says.
    pub fn new(base: &str, trust: &ControlTrust) -> Result<ControlHttp, BadControlLink> {
        let base = base.trim_end_matches('/').to_string();
        let uri: Uri = match base.parse() {
            Ok(uri) => uri,
            Err(source) => return Err(BadControlLink::NotAUrl { url: base, source }),
        };
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if trust.insecure_http => {}
            Some("http") => return Err(BadControlLink::PlainHttp { url: base }),
            _ => return Err(BadControlLink::NotHttps { url: base }),
        }
        if uri.host().is_none() {
            return Err(BadControlLink::NoHost { url: base });
        }
        let tls = client_config(trust.ca_file.as_deref())?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONTROL_TIMEOUT));
        http.set_nodelay(true);
        // The TLS layer wrapped around it takes https:// URLs.
        http.enforce_http(false);
        // `https_or_http` only matters with --control-insecure-http: the scheme was checked above.
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(ControlHttp { base, client })
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`, parsed as JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ControlHttpError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(self.url(path))
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()));
        self.exchange(path, request).await
    }

    /// `POST path` with a JSON body and a bearer token, the answer parsed as JSON.
    pub async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        bearer: &str,
        body: &B,
    ) -> Result<T, ControlHttpError> {
        let url = self.url(path);
        let json = serde_json::to_vec(body).map_err(|e| ControlHttpError::Json {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
            .body(Full::new(Bytes::from(json)));
        self.exchange(path, request).await
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        path: &str,
        request: Result<Request<Full<Bytes>>, http::Error>,
    ) -> Result<T, ControlHttpError> {
        let url = self.url(path);
        let request = request.map_err(|e| ControlHttpError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let exchange =
            async {
                let response = self.client.request(request).await.map_err(|e| {
                    ControlHttpError::Unreachable {
                        url: url.clone(),
                        reason: error_chain(&e),
                    }
                })?;
                let status = response.status();
                let body = Limited::new(response.into_body(), MAX_CONTROL_RESPONSE)
                    .collect()
                    .await
                    .map_err(|e| ControlHttpError::Body {
                        url: url.clone(),
                        reason: e.to_string(),
                    })?
                    .to_bytes();
                if !status.is_success() {
                    return Err(ControlHttpError::Status {
                        url: url.clone(),
                        status,
                    });
                }
                serde_json::from_slice(&body).map_err(|e| ControlHttpError::Json {
                    url: url.clone(),
                    reason: e.to_string(),
                })
            };
        match tokio::time::timeout(CONTROL_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ControlHttpError::Timeout {
                url,
                timeout: CONTROL_TIMEOUT,
            }),
        }
    }
}

/// The sentence for a plain-HTTP control URL without `--control-insecure-http`.
pub fn insecure_refused(url: &str) -> String {
    format!(
        "control URL {url:?} is plain http: control's signing keys and the edge secret would \
         travel in clear. Use https:// (with --control-ca-file for a private CA), or pass \
         --control-insecure-http on a trusted loopback or private network"
    )
}

/// A client config trusting only the roots in `ca_file`, or the system's without one.
fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, BadControlLink> {
    crate::tls::install_crypto_provider();
    let Some(path) = ca_file else {
        use rustls_platform_verifier::ConfigVerifierExt;
        return ClientConfig::with_platform_verifier().map_err(BadControlLink::SystemRoots);
    };
    let roots = roots_from_file(path).map_err(|e| e.for_flag("--control-ca-file"))?;
    Ok(ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Every PEM certificate in `path` (at most 1 MiB) as a root store; an error names the file.
pub fn roots_from_file(path: &Path) -> Result<RootCertStore, BadCaFile> {
    let pem = read_capped(path, MAX_CA_FILE)?;
    let file = || path.display().to_string();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|source| BadCaFile::Pem {
            file: file(),
            source,
        })?;
        roots.add(cert).map_err(|source| BadCaFile::Root {
            file: file(),
            source,
        })?;
    }
    if roots.is_empty() {
        return Err(BadCaFile::NoCertificate { file: file() });
    }
    Ok(roots)
}

/// The bytes of `path`, refused when larger than `cap`.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadFileError> {
    use std::io::Read;
    let io = |source| ReadFileError::Io {
        file: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > cap {
        return Err(ReadFileError::TooLarge {
            file: path.display().to_string(),
            cap,
        });
    }
    Ok(bytes)
}

/// hyper-util's error says "client error (Connect)"; the cause (connection refused, ...) is in
/// its sources.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_needs_the_insecure_flag() {
        let strict = ControlTrust::default();
        let err = ControlHttp::new("http://127.0.0.1:9000/", &strict)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("--control-insecure-http"), "{err}");
        assert!(ControlHttp::new("http://127.0.0.1:9000/", &ControlTrust::insecure_http()).is_ok());
        assert!(ControlHttp::new("https://control.example.net", &strict).is_ok());
        assert!(ControlHttp::new("ftp://x", &strict).is_err());
        assert!(ControlHttp::new("not a url", &strict).is_err());
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        let trust = ControlTrust {
            ca_file: Some(path),
            insecure_http: false,
        };
        let err = ControlHttp::new("https://control.internal", &trust)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn urls_join_without_double_slashes() {
        let http = ControlHttp::new("http://127.0.0.1:9000/", &ControlTrust::insecure_http())
            .expect("valid");
        assert_eq!(
            http.url("/.well-known/jwks.json"),
            "http://127.0.0.1:9000/.well-known/jwks.json"
        );
    }
}
