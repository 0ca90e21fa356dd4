//! One stream from the edge → one TCP connection to the local service, bytes spliced both
//! ways with backpressure, each direction half-closed on its own like a TCP proxy. The edge
//! speaks HTTP/1.1 on the stream and reuses it for further requests, so the local connection
//! is reused too.

use crate::agent::options::LocalTarget;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use warren_proto::ResetCode;
use warren_session::Stream;

/// Copy buffer per direction: large enough for bulk transfers, bounded per stream.
const COPY_BUFFER: usize = 64 * 1024;

/// Why forwarding a stream failed, for the user.
#[derive(Debug)]
pub enum LocalFailure {
    Refused,
    Timeout,
    Other(String),
}

/// Connects to the local service and splices `stream` to it until both sides are done.
pub async fn forward(
    stream: Stream,
    target: &LocalTarget,
    addrs: &[SocketAddr],
    connect_timeout: Duration,
) -> Result<(), LocalFailure> {
    let local = match connect(addrs, connect_timeout).await {
        Ok(local) => local,
        Err(failure) => {
            let code = match failure {
                LocalFailure::Refused => ResetCode::LocalRefused,
                LocalFailure::Timeout => ResetCode::LocalTimeout,
                LocalFailure::Other(_) => ResetCode::LocalError,
            };
            stream.reset(code);
            tracing::debug!(local = %target, ?failure, "local connection failed");
            return Err(failure);
        }
    };
    let _ = local.set_nodelay(true);
    let (mut from_local, mut to_local) = local.into_split();
    let (mut from_edge, mut to_edge) = tokio::io::split(stream);
    // Either direction failing on the edge's side (the stream was reset: the visitor left)
    // abandons both at once; failures on the local side end only their own direction.
    match tokio::try_join!(
        edge_to_local(&mut from_edge, &mut to_local),
        local_to_edge(&mut from_local, &mut to_edge),
    ) {
        Ok((to_local, to_edge)) => tracing::trace!(to_local, to_edge, "stream finished"),
        Err(e) => tracing::debug!(error = %e, "stream abandoned by the edge"),
    }
    Ok(())
}

/// Copies the request side. When the local service stops reading — typically it answered
/// early (401, 413) and closed — the rest is read and discarded: the answer is still on its way
/// back, and the stream must stay open until the edge has it. `Err` only if the edge failed.
async fn edge_to_local(
    from_edge: &mut ReadHalf<Stream>,
    to_local: &mut OwnedWriteHalf,
) -> io::Result<u64> {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut copied = 0;
    let mut local_reads = true;
    loop {
        let n = from_edge.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if !local_reads {
            continue;
        }
        match to_local.write_all(&buf[..n]).await {
            Ok(()) => copied += n as u64,
            Err(e) => {
                tracing::debug!(error = %e, "the local service stopped reading");
                local_reads = false;
            }
        }
    }
    if local_reads {
        let _ = to_local.shutdown().await;
    }
    Ok(copied)
}

/// Copies the response side, then half-closes the stream. A read error on the local connection
/// ends it like a close: a local service that answers early and closes with request bytes
/// unread resets the connection right after its answer, which must still reach the visitor.
/// (HTTP framing lets the edge tell a complete answer from a cut one.) `Err` only if the edge
/// failed.
async fn local_to_edge(
    from_local: &mut OwnedReadHalf,
    to_edge: &mut WriteHalf<Stream>,
) -> io::Result<u64> {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut copied = 0;
    loop {
        let n = match from_local.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "local connection failed; ending the stream");
                break;
            }
        };
        to_edge.write_all(&buf[..n]).await?;
        copied += n as u64;
    }
    to_edge.shutdown().await?;
    Ok(copied)
}

/// The kernel buffers of a connection to the local service, each way. The local service is
/// on this machine or its network, where a round trip is microseconds, so this is plenty for
/// full speed; left to the kernel's auto-tuning, a connection whose stream waits on a visitor
/// who stopped reading would grow its receive buffer to megabytes (`tcp_rmem`), and a few
/// thousand of them push the whole machine's TCP memory into pressure, where Linux shrinks the
/// windows of every connection — the agent's session to the edge too, which then stalls every
/// tunnel on it.
const LOCAL_SOCKET_BUFFER: u32 = 64 * 1024;

async fn connect_one(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_recv_buffer_size(LOCAL_SOCKET_BUFFER)?;
    socket.set_send_buffer_size(LOCAL_SOCKET_BUFFER)?;
    socket.connect(addr).await
}

async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, LocalFailure> {
    let attempt = async {
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            "the local host resolved to no address",
        );
        for addr in addrs {
            match connect_one(*addr).await {
                Ok(socket) => return Ok(socket),
                Err(e) => last = e,
            }
        }
        Err(last)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Err(LocalFailure::Timeout),
        Ok(Ok(socket)) => Ok(socket),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Err(LocalFailure::Refused),
        Ok(Err(e)) => Err(LocalFailure::Other(e.to_string())),
    }
}
