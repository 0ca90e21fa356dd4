//! One stream from the edge → one TCP connection to the local service, bytes spliced both
//! ways with backpressure. The edge speaks HTTP/1.1 on the stream and reuses it for further
//! requests, so the local connection is reused too.

use crate::agent::options::LocalTarget;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
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
    mut stream: Stream,
    target: &LocalTarget,
    addrs: &[SocketAddr],
    connect_timeout: Duration,
) -> Result<(), LocalFailure> {
    let mut local = match connect(addrs, connect_timeout).await {
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
    match tokio::io::copy_bidirectional_with_sizes(
        &mut stream,
        &mut local,
        COPY_BUFFER,
        COPY_BUFFER,
    )
    .await
    {
        Ok((to_local, to_edge)) => {
            tracing::trace!(to_local, to_edge, "stream finished");
        }
        Err(e) => {
            // If the local side failed, tell the edge why; if the edge side did, dropping the
            // local connection is all there is to do.
            if warren_session::reset_code_of(&e).is_none() {
                stream.reset(ResetCode::LocalError);
            }
            tracing::debug!(error = %e, "stream ended with an error");
        }
    }
    Ok(())
}

async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, LocalFailure> {
    let attempt = async {
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            "the local host resolved to no address",
        );
        for addr in addrs {
            match TcpStream::connect(addr).await {
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
