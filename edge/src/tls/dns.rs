//! DNS providers: where DNS-01 TXT records go. The ACME code only sees [`DnsProvider`].
//!
//! - [`ExecHook`]: runs an operator's script (`HOOK present FQDN VALUE`, `HOOK cleanup FQDN
//!   VALUE`), lego's `exec` convention. It reaches any DNS service without Warren carrying an
//!   API client per provider, and `nsupdate` (RFC 2136 with TSIG) is a three-line script (see
//!   docs/operations.md).
//! - [`ChallTestSrv`]: pebble-challtestsrv's management API, for tests.

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Longest a provider may take to set or clear one record.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
#[error("DNS provider: {0}")]
pub struct DnsError(pub String);

#[async_trait]
pub trait DnsProvider: Send + Sync + 'static {
    /// Publishes TXT `value` at `fqdn` (e.g. `_acme-challenge.eu.example.net.`).
    async fn set_txt(&self, fqdn: &str, value: &str) -> Result<(), DnsError>;
    /// Removes it again.
    async fn clear_txt(&self, fqdn: &str, value: &str) -> Result<(), DnsError>;
}

/// An `--acme-dns-provider` value that names no provider this edge knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--acme-dns-provider {raw:?} is not understood: use exec=/path/to/hook (runs \
     `hook present|cleanup FQDN VALUE`) or challtestsrv=http://HOST:PORT (tests)"
)]
pub struct BadDnsProvider {
    pub raw: String,
}

/// Parses `--acme-dns-provider`: `exec=PATH` or `challtestsrv=URL`.
pub fn parse_provider(raw: &str) -> Result<Arc<dyn DnsProvider>, BadDnsProvider> {
    match raw.split_once('=') {
        Some(("exec", path)) if !path.is_empty() => Ok(Arc::new(ExecHook {
            path: PathBuf::from(path),
        })),
        Some(("challtestsrv", url)) if url.starts_with("http://") => {
            Ok(Arc::new(ChallTestSrv::new(url)))
        }
        _ => Err(BadDnsProvider {
            raw: raw.to_string(),
        }),
    }
}

/// Runs an operator's hook script.
pub struct ExecHook {
    path: PathBuf,
}

impl ExecHook {
    async fn run(&self, action: &str, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let mut command = tokio::process::Command::new(&self.path);
        command
            .arg(action)
            .arg(fqdn)
            .arg(value)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(PROVIDER_TIMEOUT, command.output())
            .await
            .map_err(|_| {
                DnsError(format!(
                    "{} {action} did not finish within {PROVIDER_TIMEOUT:?}",
                    self.path.display()
                ))
            })?
            .map_err(|e| DnsError(format!("cannot run {}: {e}", self.path.display())))?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr: String = stderr.chars().take(500).collect();
        Err(DnsError(format!(
            "{} {action} {fqdn} failed ({}): {stderr}",
            self.path.display(),
            output.status
        )))
    }
}

#[async_trait]
impl DnsProvider for ExecHook {
    async fn set_txt(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        self.run("present", fqdn, value).await
    }

    async fn clear_txt(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        self.run("cleanup", fqdn, value).await
    }
}

/// pebble-challtestsrv's management API (`POST /set-txt`, `POST /clear-txt`).
pub struct ChallTestSrv {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl ChallTestSrv {
    pub fn new(base: &str) -> ChallTestSrv {
        ChallTestSrv {
            base: base.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Result<(), DnsError> {
        let url = format!("{}{path}", self.base);
        let request = http::Request::post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| DnsError(format!("bad challtestsrv URL {url}: {e}")))?;
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let _ = response.into_body().collect().await;
            Ok::<_, hyper_util::client::legacy::Error>(status)
        };
        match tokio::time::timeout(PROVIDER_TIMEOUT, exchange).await {
            Ok(Ok(status)) if status.is_success() => Ok(()),
            Ok(Ok(status)) => Err(DnsError(format!("{url} answered {status}"))),
            Ok(Err(e)) => Err(DnsError(format!("cannot reach {url}: {e}"))),
            Err(_) => Err(DnsError(format!("{url} did not answer in time"))),
        }
    }
}

#[async_trait]
impl DnsProvider for ChallTestSrv {
    async fn set_txt(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        self.post(
            "/set-txt",
            serde_json::json!({"host": fqdn, "value": value}),
        )
        .await
    }

    async fn clear_txt(&self, fqdn: &str, _value: &str) -> Result<(), DnsError> {
        self.post("/clear-txt", serde_json::json!({"host": fqdn}))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_parse_or_say_what_to_pass() {
        assert!(parse_provider("exec=/usr/local/bin/dns-hook").is_ok());
        assert!(parse_provider("challtestsrv=http://127.0.0.1:8055").is_ok());
        let err = parse_provider("route53")
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("exec="));
        assert!(parse_provider("exec=").is_err());
    }

    #[tokio::test]
    async fn the_exec_hook_gets_action_name_and_value() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("log");
        let hook = dir.path().join("hook");
        std::fs::write(
            &hook,
            format!("#!/bin/sh\necho \"$1 $2 $3\" >> {}\n", log.display()),
        )
        .expect("write hook");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let provider = ExecHook { path: hook };
        provider
            .set_txt("_acme-challenge.a.", "v1")
            .await
            .expect("present");
        provider
            .clear_txt("_acme-challenge.a.", "v1")
            .await
            .expect("cleanup");
        let seen = std::fs::read_to_string(&log).expect("log");
        assert_eq!(
            seen,
            "present _acme-challenge.a. v1\ncleanup _acme-challenge.a. v1\n"
        );
        let failing = ExecHook {
            path: PathBuf::from("/bin/false"),
        };
        assert!(failing.set_txt("x.", "y").await.is_err());
    }
}
