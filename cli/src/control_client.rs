//! A small REST client for the control plane: JSON in, JSON out, every failure one sentence.
//!
//! Plain HTTP today (hyper-util's pooled client); the connector is the one place TLS goes in
//! when control is served over HTTPS. Every call has a connect timeout (5 s) and an overall
//! timeout (15 s), and a response body larger than 1 MiB is refused rather than buffered.

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::fmt;
use std::time::Duration;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why a call to control failed. `Display` is the sentence shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{url:?} is not a control URL ({reason}): use e.g. http://127.0.0.1:8081")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot reach control at {url}: is it running? (check `warren login --control`)")]
    Unreachable { url: String },
    #[error("control at {url} did not answer within {} s: try again later", REQUEST_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("control does not accept this token: run `warren login` again")]
    Unauthorized,
    #[error("{detail} (this token is not allowed to do that: use a token with the right scope)")]
    Forbidden { detail: String },
    /// 404, 409, 410, 422 and the like: the problem's own sentence says it best.
    #[error("{detail}")]
    Problem { status: u16, detail: String },
    #[error("control at {url} failed (HTTP {status}): {detail}")]
    Server {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("control at {url} sent an answer this warren does not understand: {reason}")]
    BadResponse { url: String, reason: String },
}

impl ControlError {
    /// The HTTP status control answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ControlError::Unauthorized => Some(401),
            ControlError::Forbidden { .. } => Some(403),
            ControlError::Problem { status, .. } | ControlError::Server { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// Whether trying again later may help (control down, slow or failing).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ControlError::Unreachable { .. }
                | ControlError::Timeout { .. }
                | ControlError::Server { .. }
        ) || self.status() == Some(429)
    }
}

/// A client for one control plane, with one token (or none for public endpoints).
#[derive(Clone)]
pub struct ControlClient {
    base: String,
    token: Option<String>,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ControlClient {
    /// A client for the control plane at `url` (`http://host:port`, optionally with a path
    /// prefix).
    pub fn new(url: &str, token: Option<String>) -> Result<ControlClient, ControlError> {
        ControlClient::with_trust(url, token, &crate::agent::tls::default_trust())
    }

    /// Like [`ControlClient::new`], trusting `trust` for an https:// control.
    pub fn with_trust(
        url: &str,
        token: Option<String>,
        trust: &crate::agent::tls::EdgeTrust,
    ) -> Result<ControlClient, ControlError> {
        let base = normalise_url(url)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        // https:// is verified like the edge (`--ca-file`, `--insecure`, else the system's
        // roots); an http:// control never loads them.
        let tls = if base.starts_with("https://") {
            let config = crate::agent::tls::client_config(trust).map_err(|reason| {
                ControlError::InvalidUrl {
                    url: url.to_string(),
                    reason,
                }
            })?;
            let mut config = (*config).clone();
            // hyper-rustls sets ALPN itself (and refuses a config that already has it).
            config.alpn_protocols.clear();
            config
        } else {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        };
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(ControlClient { base, token, http })
    }

    /// The control plane's base URL, as normalised.
    pub fn url(&self) -> &str {
        &self.base
    }

    pub async fn get(&self, path: &str) -> Result<Value, ControlError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ControlError> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// DELETE; the answer's JSON body, or `Value::Null` for 204.
    pub async fn delete(&self, path: &str) -> Result<Value, ControlError> {
        self.call(Method::DELETE, path, None).await
    }

    /// One request; the JSON body of a 2xx answer (`Null` when empty), else the error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ControlError> {
        let uri = format!("{}{path}", self.base);
        let mut request = Request::builder()
            .method(method)
            .uri(&uri)
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, crate::agent::connect::AGENT_VERSION);
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let bytes = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|e| ControlError::InvalidUrl {
                url: uri.clone(),
                reason: e.to_string(),
            })?;
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(ControlError::Timeout {
                url: self.base.clone(),
            }),
        }
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<Value, ControlError> {
        let response = self.http.request(request).await.map_err(|e| {
            tracing::debug!(error = %e, "control request failed");
            ControlError::Unreachable {
                url: self.base.clone(),
            }
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| ControlError::BadResponse {
                url: self.base.clone(),
                reason: if e.is::<http_body_util::LengthLimitError>() {
                    format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes")
                } else {
                    format!("the answer broke off ({e})")
                },
            })?
            .to_bytes();
        if status.is_success() {
            if body.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&body).map_err(|e| ControlError::BadResponse {
                url: self.base.clone(),
                reason: format!("not JSON ({e})"),
            });
        }
        Err(self.problem(status, &body))
    }

    /// Turns an error answer (RFC 9457 problem+json, or anything else) into one sentence.
    fn problem(&self, status: StatusCode, body: &[u8]) -> ControlError {
        let problem: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text = |key: &str| {
            problem[key]
                .as_str()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let detail = text("detail").or_else(|| text("title")).unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("unexpected answer")
                .to_string()
        });
        match status.as_u16() {
            401 => ControlError::Unauthorized,
            403 => ControlError::Forbidden { detail },
            s if s >= 500 => ControlError::Server {
                url: self.base.clone(),
                status: s,
                detail,
            },
            s => ControlError::Problem { status: s, detail },
        }
    }
}

/// `127.0.0.1:8081` → `http://127.0.0.1:8081`; trailing slashes go; only http(s) URLs pass.
pub fn normalise_url(raw: &str) -> Result<String, ControlError> {
    let raw = raw.trim();
    let invalid = |reason: &str| ControlError::InvalidUrl {
        url: raw.to_string(),
        reason: reason.to_string(),
    };
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let trimmed = with_scheme.trim_end_matches('/').to_string();
    let uri: http::Uri = trimmed.parse().map_err(|_| invalid("not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(invalid("the scheme must be http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if uri.query().is_some() {
        return Err(invalid("no query string, please"));
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised() {
        assert_eq!(
            normalise_url("127.0.0.1:8081").ok().as_deref(),
            Some("http://127.0.0.1:8081")
        );
        assert_eq!(
            normalise_url("http://c.example/").ok().as_deref(),
            Some("http://c.example")
        );
        assert_eq!(
            normalise_url("http://c/api/").ok().as_deref(),
            Some("http://c/api")
        );
        assert!(normalise_url("ftp://c").is_err());
        assert!(normalise_url("http://").is_err());
        assert!(normalise_url("http://c/?a=1").is_err());
    }

    #[test]
    fn problems_become_sentences() -> anyhow::Result<()> {
        let client = ControlClient::new("http://c:1", None)?;
        let body = br#"{"type":"about:blank","title":"Conflict","status":409,"detail":"demo is claimed by another account"}"#;
        let e = client.problem(StatusCode::CONFLICT, body);
        assert_eq!(e.to_string(), "demo is claimed by another account");
        assert_eq!(e.status(), Some(409));
        let e = client.problem(StatusCode::UNAUTHORIZED, b"");
        assert!(e.to_string().contains("warren login"));
        let e = client.problem(StatusCode::BAD_GATEWAY, b"<html>");
        assert!(e.is_transient() && e.to_string().contains("502"), "{e}");
        let e = client.problem(StatusCode::NOT_FOUND, br#"{"title":"Not Found"}"#);
        assert_eq!(e.to_string(), "Not Found");
        Ok(())
    }

    #[tokio::test]
    async fn an_unreachable_control_is_named() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        drop(listener);
        let client = ControlClient::new(&format!("http://127.0.0.1:{port}"), None)?;
        let e = client
            .get("/v1/me")
            .await
            .map(|_| ())
            .expect_err("nothing listens");
        assert!(e.is_transient());
        assert_eq!(
            e.to_string(),
            format!(
                "cannot reach control at http://127.0.0.1:{port}: is it running? (check `warren login --control`)"
            )
        );
        Ok(())
    }
}
