//! A TCP load balancer on `127.0.0.1:0`, as a region's balancer would sit in front of its
//! edges: each new connection goes to the first backend, in list order, that accepts a TCP
//! connection, and is then spliced byte for byte. A backend that stopped listening (a draining
//! or dead edge) is skipped; backends can be added and removed while it runs.
//!
//! Connections already spliced are left alone when their backend is removed: only new ones
//! move, like a real balancer taking a node out of rotation.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long one backend gets to accept a connection before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Stopped (listener and every spliced connection) when dropped.
pub struct Balancer {
    pub addr: SocketAddr,
    backends: Arc<Mutex<Vec<SocketAddr>>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Balancer {
    pub async fn start(backends: Vec<SocketAddr>) -> std::io::Result<Balancer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let backends = Arc::new(Mutex::new(backends));
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept(listener, backends.clone(), stop.clone()));
        Ok(Balancer {
            addr,
            backends,
            stop,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`: what agents get as `--edge` and visitors connect to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Appends a backend (tried after the others).
    pub fn add(&self, backend: SocketAddr) {
        let mut backends = lock(&self.backends);
        if !backends.contains(&backend) {
            backends.push(backend);
        }
    }

    /// Takes a backend out of rotation for new connections.
    pub fn remove(&self, backend: SocketAddr) {
        lock(&self.backends).retain(|b| *b != backend);
    }

    pub fn backends(&self) -> Vec<SocketAddr> {
        lock(&self.backends).clone()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.cancel();
        self.task.abort();
    }
}

fn lock(backends: &Mutex<Vec<SocketAddr>>) -> std::sync::MutexGuard<'_, Vec<SocketAddr>> {
    backends.lock().unwrap_or_else(|p| p.into_inner())
}

async fn accept(
    listener: TcpListener,
    backends: Arc<Mutex<Vec<SocketAddr>>>,
    stop: CancellationToken,
) {
    loop {
        let client = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(e) => {
                    tracing::warn!(error = %e, "balancer accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let candidates = lock(&backends).clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let Some(backend) = first_accepting(&candidates).await else {
                tracing::debug!("balancer: no backend accepts connections");
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = backend.set_nodelay(true);
            splice(client, backend, stop).await;
        });
    }
}

async fn first_accepting(candidates: &[SocketAddr]) -> Option<TcpStream> {
    for addr in candidates {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(e)) => tracing::debug!(backend = %addr, error = %e, "balancer: backend refused"),
            Err(_) => tracing::debug!(backend = %addr, "balancer: backend did not answer"),
        }
    }
    None
}

/// Copies both ways until both sides are done (or one fails, which ends both), or the
/// balancer stops.
async fn splice(mut client: TcpStream, mut backend: TcpStream, stop: CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        result = tokio::io::copy_bidirectional(&mut client, &mut backend) => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "balancer: spliced connection failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        Ok((addr, task))
    }

    async fn round_trip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut socket = TcpStream::connect(addr).await?;
        socket.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        socket.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn skips_backends_that_refuse_and_follows_changes() -> std::io::Result<()> {
        // A port nothing listens on: bound, then released.
        let dead = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
        let (live, _server) = echo_server().await?;
        let balancer = Balancer::start(vec![dead, live]).await?;
        assert_eq!(round_trip(balancer.addr).await?, b"ping");
        balancer.remove(live);
        assert!(round_trip(balancer.addr).await.is_err());
        balancer.add(live);
        assert_eq!(balancer.backends(), vec![dead, live]);
        assert_eq!(round_trip(balancer.addr).await?, b"ping");
        Ok(())
    }
}
