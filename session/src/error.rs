//! Stream failures as `io::Error`s that still carry their protocol reason.

use std::io;
use warren_proto::ResetCode;
use warren_proto::mux::StreamError;

/// The payload of an `io::Error` produced by a reset stream. Find it with [`reset_code_of`].
#[derive(Debug, thiserror::Error)]
#[error("tunnel stream reset by peer: {0}")]
pub struct StreamReset(pub ResetCode);

/// The reset code behind an error, searching its whole `source()` chain (so it also works on
/// errors from libraries such as hyper that wrap the I/O error).
pub fn reset_code_of(err: &(dyn std::error::Error + 'static)) -> Option<ResetCode> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(reset) = e.downcast_ref::<StreamReset>() {
            return Some(reset.0);
        }
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(reset) = inner.downcast_ref::<StreamReset>()
        {
            return Some(reset.0);
        }
        current = e.source();
    }
    None
}

pub(crate) fn to_io(err: StreamError) -> io::Error {
    match err {
        StreamError::Reset(code) => {
            io::Error::new(io::ErrorKind::ConnectionReset, StreamReset(code))
        }
        StreamError::Closed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "tunnel stream already closed")
        }
        StreamError::SessionClosed => {
            io::Error::new(io::ErrorKind::ConnectionAborted, "tunnel session closed")
        }
    }
}
