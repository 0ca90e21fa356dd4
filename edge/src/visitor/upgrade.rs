//! A switched protocol (WebSocket, or any `Upgrade`): after the 101, bytes flow both ways
//! between the visitor and the tunnel stream until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::Instrument;

/// Joins the visitor's upgraded connection to the local service's, in a task of its own.
pub fn splice(visitor: OnUpgrade, local: OnUpgrade, request_id: String) {
    let span = tracing::debug_span!("upgrade", request_id = %request_id);
    tokio::spawn(
        async move {
            let (visitor, local) = match tokio::try_join!(visitor, local) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade did not complete");
                    return;
                }
            };
            let mut visitor = TokioIo::new(visitor);
            let mut local = TokioIo::new(local);
            match tokio::io::copy_bidirectional(&mut visitor, &mut local).await {
                Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
                Err(e) => tracing::debug!(error = %e, "upgraded connection failed"),
            }
        }
        .instrument(span),
    );
}
