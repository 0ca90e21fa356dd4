//! A TCP proxy on loopback that adds latency: every byte is held for a one-way delay in each
//! direction before it is passed on, so a round trip through it costs twice the delay. The
//! delay can be changed while connections are open (`set_delay`); bytes keep their order, as
//! each direction is one timestamped queue drained in order.
//!
//! The TCP handshake with the proxy itself is not delayed (the kernel completes it), so what a
//! client notices is delayed data, as on a long path once the connection is up.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A running proxy; dropping it stops accepting and closes its connections.
pub struct LatencyProxy {
    addr: SocketAddr,
    delay_micros: Arc<AtomicU64>,
    shutdown: CancellationToken,
}

impl LatencyProxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `target`, `delay` each way.
    pub async fn start(target: SocketAddr, delay: Duration) -> io::Result<LatencyProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let proxy = LatencyProxy {
            addr: listener.local_addr()?,
            delay_micros: Arc::new(AtomicU64::new(micros(delay))),
            shutdown: CancellationToken::new(),
        };
        tokio::spawn(accept_loop(
            listener,
            target,
            proxy.delay_micros.clone(),
            proxy.shutdown.clone(),
        ));
        Ok(proxy)
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The one-way delay from now on (bytes already queued keep theirs).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_micros.store(micros(delay), Ordering::Relaxed);
    }

    pub fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_micros.load(Ordering::Relaxed))
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn micros(delay: Duration) -> u64 {
    u64::try_from(delay.as_micros()).unwrap_or(u64::MAX)
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    delay: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    loop {
        let client = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let delay = delay.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(upstream) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (upstream_read, upstream_write) = upstream.into_split();
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = async {
                    tokio::join!(
                        direction(client_read, upstream_write, delay.clone()),
                        direction(upstream_read, client_write, delay),
                    )
                } => {}
            }
        });
    }
}

/// One direction: a reader stamping chunks with when they may leave, a writer sending them
/// then, in order. End of input is passed on (as a write shutdown) after the queued bytes.
async fn direction(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Arc<AtomicU64>) {
    let (queue, mut due) = mpsc::channel::<(Instant, Vec<u8>)>(256);
    let reading = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let at = Instant::now() + Duration::from_micros(delay.load(Ordering::Relaxed));
            if queue.send((at, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let writing = async move {
        while let Some((at, bytes)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reading, writing);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant as StdInstant;

    /// An echo server; returns its address.
    async fn echo() -> io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        Ok(addr)
    }

    async fn round_trip(stream: &mut TcpStream) -> io::Result<Duration> {
        let started = StdInstant::now();
        stream.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        Ok(started.elapsed())
    }

    #[tokio::test]
    async fn adds_the_delay_each_way_and_follows_changes() -> io::Result<()> {
        let proxy = LatencyProxy::start(echo().await?, Duration::from_millis(40)).await?;
        let mut stream = TcpStream::connect(proxy.addr()).await?;
        let slow = round_trip(&mut stream).await?;
        assert!(slow >= Duration::from_millis(80), "{slow:?}");
        proxy.set_delay(Duration::ZERO);
        assert_eq!(proxy.delay(), Duration::ZERO);
        let fast = round_trip(&mut stream).await?;
        assert!(fast < Duration::from_millis(40), "{fast:?}");
        Ok(())
    }

    #[tokio::test]
    async fn keeps_bytes_in_order_when_the_delay_shrinks() -> io::Result<()> {
        let proxy = LatencyProxy::start(echo().await?, Duration::from_millis(30)).await?;
        let stream = TcpStream::connect(proxy.addr()).await?;
        let (mut r, mut w) = stream.into_split();
        let sent: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let expected = sent.clone();
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; expected.len()];
            r.read_exact(&mut got).await.map(|_| got == expected)
        });
        for (i, chunk) in sent.chunks(1000).enumerate() {
            if i == 10 {
                proxy.set_delay(Duration::ZERO);
            }
            w.write_all(chunk).await?;
            tokio::task::yield_now().await;
        }
        let in_order = reader.await.map_err(io::Error::other)??;
        assert!(in_order, "bytes came back out of order");
        Ok(())
    }
}
