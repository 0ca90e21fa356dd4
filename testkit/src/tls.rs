//! An HTTPS client for tests: trusts only the roots it is given, names the SNI it is told,
//! and shows what the server presented.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Every certificate in `pem` as a root store.
pub fn roots_from_pem(pem: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert?)?;
    }
    anyhow::ensure!(!roots.is_empty(), "no certificate in the PEM data");
    Ok(roots)
}

/// A TLS connection to `addr` naming `sni`, verified against `roots`, offering `alpn`.
pub async fn connect(
    addr: SocketAddr,
    sni: &str,
    roots: RootCertStore,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from(sni.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// A fingerprint of the leaf certificate the server presented (its DER, hashed), to tell
/// two certificates apart.
pub fn peer_serial(stream: &TlsStream<TcpStream>) -> Option<String> {
    use sha2::{Digest, Sha256};
    let leaf = stream.get_ref().1.peer_certificates()?.first()?;
    let digest = Sha256::digest(leaf.as_ref());
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// An HTTP/1.1 connection kept open over TLS, for several requests.
pub struct HttpsConnection {
    sender: http1::SendRequest<Empty<Bytes>>,
    host: String,
    /// The leaf certificate presented at the handshake.
    pub leaf: String,
}

impl HttpsConnection {
    pub async fn open(
        addr: SocketAddr,
        sni: &str,
        roots: RootCertStore,
    ) -> anyhow::Result<HttpsConnection> {
        let stream = connect(addr, sni, roots, &[b"http/1.1"]).await?;
        let leaf = peer_serial(&stream).unwrap_or_default();
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(HttpsConnection {
            sender,
            host: sni.to_string(),
            leaf,
        })
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<(u16, Bytes)> {
        self.sender.ready().await?;
        let request = http::Request::get(path)
            .header(http::header::HOST, &self.host)
            .body(Empty::new())?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// One GET over a fresh TLS connection.
pub async fn https_get(
    addr: SocketAddr,
    sni: &str,
    path: &str,
    roots: RootCertStore,
) -> anyhow::Result<(u16, Bytes)> {
    HttpsConnection::open(addr, sni, roots)
        .await?
        .get(path)
        .await
}
