//! A real DNS server for tests: `pebble-challtestsrv` (Let's Encrypt's challenge test server) on
//! free loopback ports, answering DNS over UDP and TCP, with its management API to set TXT and
//! CNAME records. Killed when dropped.
//!
//! Self-contained (std, tokio, anyhow, serde_json): control's API tests include this file with
//! `#[path]` instead of depending on the whole testkit.

use anyhow::{Context, bail};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INSTALL: &str = "pebble-challtestsrv is not installed: run `apt-get install -y pebble` \
     (Debian/Ubuntu), then run the tests again";

/// One `pebble-challtestsrv` process serving DNS only.
pub struct ChallTestSrv {
    child: Child,
    /// Where it answers DNS queries (UDP and TCP).
    pub dns: SocketAddr,
    /// Its management HTTP API.
    pub management: SocketAddr,
}

impl ChallTestSrv {
    /// Starts a server and waits until both its DNS and management ports accept connections.
    /// A port taken between choosing and binding it makes the process exit: then it tries again
    /// with other ports.
    pub fn start() -> anyhow::Result<ChallTestSrv> {
        let mut last = None;
        for _ in 0..5 {
            match ChallTestSrv::spawn() {
                Ok(server) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("pebble-challtestsrv did not start")))
    }

    fn spawn() -> anyhow::Result<ChallTestSrv> {
        let dns = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let management = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let child = Command::new("pebble-challtestsrv")
            .args(["-dns01", &dns.to_string()])
            .args(["-management", &management.to_string()])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => anyhow::anyhow!(INSTALL),
                _ => anyhow::anyhow!("cannot start pebble-challtestsrv: {e}"),
            })?;
        let mut server = ChallTestSrv {
            child,
            dns,
            management,
        };
        server.wait_until_ready()?;
        Ok(server)
    }

    fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("pebble-challtestsrv exited at start ({status}); a port may have been taken");
            }
            if std::net::TcpStream::connect(self.management).is_ok()
                && std::net::TcpStream::connect(self.dns).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("pebble-challtestsrv did not listen within 10 s")
    }

    /// `http://IP:PORT` of the management API (what an ACME DNS-01 provider for tests posts to).
    pub fn management_url(&self) -> String {
        format!("http://{}", self.management)
    }

    /// Answers TXT queries for `host` (a trailing dot is added) with `value`.
    pub async fn set_txt(&self, host: &str, value: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({ "host": fqdn(host), "value": value });
        self.post("/set-txt", &body).await
    }

    /// Removes the TXT answers for `host`.
    pub async fn clear_txt(&self, host: &str) -> anyhow::Result<()> {
        self.post("/clear-txt", &serde_json::json!({ "host": fqdn(host) }))
            .await
    }

    /// Answers CNAME queries for `host` with `target`.
    pub async fn set_cname(&self, host: &str, target: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({ "host": fqdn(host), "target": fqdn(target) });
        self.post("/set-cname", &body).await
    }

    /// Removes the CNAME answer for `host`.
    pub async fn clear_cname(&self, host: &str) -> anyhow::Result<()> {
        self.post("/clear-cname", &serde_json::json!({ "host": fqdn(host) }))
            .await
    }

    /// One management call: an HTTP/1.1 POST with a JSON body, which must answer 200.
    async fn post(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<()> {
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.management,
            body.len()
        );
        let exchange = async {
            let mut conn = tokio::net::TcpStream::connect(self.management).await?;
            conn.write_all(request.as_bytes()).await?;
            let mut response = Vec::new();
            conn.read_to_end(&mut response).await?;
            anyhow::Ok(response)
        };
        let response = tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .context("pebble-challtestsrv's management API did not answer within 5 s")??;
        let text = String::from_utf8_lossy(&response);
        let status = text.lines().next().unwrap_or_default();
        if !status.starts_with("HTTP/1.1 200") {
            bail!("pebble-challtestsrv {path} answered {status:?}");
        }
        Ok(())
    }
}

impl Drop for ChallTestSrv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fqdn(host: &str) -> String {
    if host.ends_with('.') {
        host.to_string()
    } else {
        format!("{host}.")
    }
}

/// A loopback port that was free a moment ago (the OS picks it).
fn free_port() -> anyhow::Result<u16> {
    let listener = StdListener::bind("127.0.0.1:0").context("cannot bind a free port")?;
    Ok(listener.local_addr()?.port())
}
