//! The edge's HTTP client for control: fetching the JWKS and posting reports.
//!
//! Every exchange is bounded: one deadline for the whole exchange (connect, request, response
//! body) and a cap on the response body, so a slow or hostile control costs the edge one timer
//! and one bounded buffer. Plain HTTP for now; TLS is one more connector behind
//! [`ControlHttp::new`] (the rest of the edge only sees [`ControlHttp::get_json`] and
//! [`ControlHttp::post_json`]).

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
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

/// A client for one control plane, cheap to clone.
#[derive(Clone)]
pub struct ControlHttp {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl fmt::Debug for ControlHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlHttp")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ControlHttp {
    /// A client for `base` (e.g. `http://control.internal:8081`, no trailing slash needed).
    pub fn new(base: &str) -> Result<ControlHttp, String> {
        let base = base.trim_end_matches('/').to_string();
        let uri: Uri = base
            .parse()
            .map_err(|e| format!("control URL {base:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "control URL {base:?}: this edge build talks to control over plain http only \
                     for now; use an http:// URL on a private network"
                ));
            }
            _ => return Err(format!("control URL {base:?} must start with http://")),
        }
        if uri.host().is_none() {
            return Err(format!("control URL {base:?} has no host"));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONTROL_TIMEOUT));
        connector.set_nodelay(true);
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

/// hyper-util's error says "client error (Connect)"; the cause (connection refused, ...) is in
/// its sources.
fn error_chain(error: &dyn std::error::Error) -> String {
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
    fn only_plain_http_urls_are_accepted_for_now() {
        assert!(ControlHttp::new("http://127.0.0.1:9000/").is_ok());
        assert!(ControlHttp::new("https://control.example.net").is_err());
        assert!(ControlHttp::new("ftp://x").is_err());
        assert!(ControlHttp::new("not a url").is_err());
    }

    #[test]
    fn urls_join_without_double_slashes() {
        let http = ControlHttp::new("http://127.0.0.1:9000/").expect("valid");
        assert_eq!(
            http.url("/.well-known/jwks.json"),
            "http://127.0.0.1:9000/.well-known/jwks.json"
        );
    }
}
