//! The TLS handshake of one visitor connection.
//!
//! The ClientHello is read first ([`LazyConfigAcceptor`]) so that a name without a certificate
//! can be looked up asynchronously (the shared store, the route table) before the handshake
//! goes on. A name nobody serves fails the handshake with a TLS alert from rustls (the
//! resolver returns nothing): clean for the client, a debug line here.

use super::Tls;
use rustls::server::Acceptor;
use std::io;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

/// Completes the handshake on `socket`, or says why not.
pub async fn handshake<S>(tls: &Tls, socket: S) -> io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = LazyConfigAcceptor::new(Acceptor::default(), socket).await?;
    let sni = start.client_hello().server_name().map(str::to_string);
    if let Some(sni) = &sni
        && tls.resolver.lookup(sni).is_none()
    {
        if let Some(manager) = &tls.manager {
            manager.on_unknown_name(sni).await;
        } else if let Some(ca) = &tls.local_ca
            && tls.is_own_tunnel_name(&sni.to_ascii_lowercase())
        {
            ca.mint(&sni.to_ascii_lowercase(), &tls.resolver);
        }
    }
    start.into_stream(tls.server_config.clone()).await
}
