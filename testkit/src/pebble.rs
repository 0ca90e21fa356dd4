//! A real ACME server for tests: `pebble` with `pebble-challtestsrv` as its DNS, both on free
//! loopback ports, killed when dropped. Pebble's own HTTPS certificate comes from a CA made
//! here with rcgen ([`Pebble::ca_file`] is what `--acme-ca-file` takes); the CA pebble issues
//! from is fetched from its management API ([`Pebble::issuing_roots`]).
//!
//! challtestsrv answers every A query with 127.0.0.1, so HTTP-01 validation requests go to
//! `127.0.0.1:<http_port>`: give it the edge's visitor port. Orders are counted from pebble's
//! log ([`Pebble::orders`]).
//!
//! If the binaries are missing, [`Pebble::start`] fails with the command that installs them.

use crate::redis::{free_port, rand_suffix};
use anyhow::{Context, bail};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "pebble is not installed: run `sudo apt-get install -y pebble` (Debian/Ubuntu; \
     it brings pebble and pebble-challtestsrv), then run the tests again";

/// Settings of one pebble.
#[derive(Debug, Clone)]
pub struct PebbleOptions {
    /// Where pebble sends HTTP-01 validation requests (on 127.0.0.1).
    pub http_port: u16,
    /// Lifetime of the certificates it issues.
    pub validity: Duration,
}

impl Default for PebbleOptions {
    fn default() -> Self {
        PebbleOptions {
            http_port: 5002,
            validity: Duration::from_secs(3600),
        }
    }
}

pub struct Pebble {
    pebble: Child,
    dns: Child,
    dir: PathBuf,
    /// `https://127.0.0.1:PORT/dir`.
    pub directory: String,
    /// `http://127.0.0.1:PORT`: challtestsrv's management API.
    pub challtestsrv_url: String,
    management: SocketAddr,
    ca_pem: String,
}

impl Pebble {
    pub fn start(options: PebbleOptions) -> anyhow::Result<Pebble> {
        let dir = std::env::temp_dir().join(format!(
            "warren-pebble-{}-{:x}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).context("cannot create a directory for pebble")?;
        let ca_pem = write_server_cert(&dir)?;
        let (acme_port, management_port) = (free_port()?, free_port()?);
        let (dns_port, challtestsrv_port, tls_port) = (free_port()?, free_port()?, free_port()?);
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{acme_port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": dir.join("server.pem"),
                "privateKey": dir.join("server.key"),
                "httpPort": options.http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": options.validity.as_secs().max(1),
            }
        });
        std::fs::write(dir.join("pebble.json"), config.to_string())?;
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-management", &format!("127.0.0.1:{challtestsrv_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(log_file(&dir, "challtestsrv.log")?)
            .stderr(Stdio::null())
            .spawn()
            .map_err(spawn_error)?;
        let log = log_file(&dir, "pebble.log")?;
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(spawn_error);
        let pebble = match pebble {
            Ok(child) => child,
            Err(e) => {
                let mut challtestsrv = challtestsrv;
                let _ = challtestsrv.kill();
                let _ = challtestsrv.wait();
                return Err(e);
            }
        };
        let server = Pebble {
            pebble,
            dns: challtestsrv,
            dir,
            directory: format!("https://127.0.0.1:{acme_port}/dir"),
            challtestsrv_url: format!("http://127.0.0.1:{challtestsrv_port}"),
            management: SocketAddr::from(([127, 0, 0, 1], management_port)),
            ca_pem,
        };
        for port in [acme_port, management_port, challtestsrv_port] {
            wait_for_port(port)?;
        }
        Ok(server)
    }

    /// The root pebble's HTTPS certificate chains to: what `--acme-ca-file` takes.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `--acme-dns-provider` for this pebble's DNS.
    pub fn dns_provider(&self) -> String {
        format!("challtestsrv={}", self.challtestsrv_url)
    }

    /// The roots pebble issues from (PEM), regenerated at every start of pebble.
    pub async fn issuing_roots(&self) -> anyhow::Result<rustls::RootCertStore> {
        let trust = crate::tls::roots_from_pem(&self.ca_pem)?;
        let (status, body) =
            crate::tls::https_get(self.management, "127.0.0.1", "/roots/0", trust).await?;
        if status != 200 {
            bail!("pebble's /roots/0 answered {status}");
        }
        crate::tls::roots_from_pem(&String::from_utf8_lossy(&body))
    }

    /// How many new orders pebble has received (from its log).
    pub fn orders(&self) -> anyhow::Result<usize> {
        let log = std::fs::read_to_string(self.dir.join("pebble.log"))?;
        Ok(log
            .lines()
            .filter(|l| l.contains("POST /order-plz"))
            .count())
    }

    /// Pebble's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [&mut self.pebble, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn_error(e: std::io::Error) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!(INSTALL),
        _ => anyhow::anyhow!("cannot start pebble: {e}"),
    }
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    std::fs::File::create(dir.join(name)).with_context(|| format!("cannot create {name}"))
}

/// A CA and a certificate for `localhost`/`127.0.0.1` signed by it: pebble's HTTPS identity.
fn write_server_cert(dir: &Path) -> anyhow::Result<String> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Warren test CA for pebble");
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let issuer = Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    std::fs::write(dir.join("server.pem"), cert.pem())?;
    std::fs::write(dir.join("server.key"), key.serialize_pem())?;
    Ok(ca.pem())
}

fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("pebble did not listen on {addr} within 10s")
}
