//! Ctrl-C and SIGTERM: the first asks for a clean stop, the second exits at once.

use tokio_util::sync::CancellationToken;

/// Cancels `shutdown` on the first interrupt; exits on the second. The handlers are installed
/// before this returns, so a signal that arrives right after (say, just as `warren dev` prints
/// that it is ready) still stops the process cleanly instead of killing it.
pub fn on_interrupt(shutdown: CancellationToken) {
    let mut signals = Signals::install();
    tokio::spawn(async move {
        signals.next().await;
        shutdown.cancel();
        signals.next().await;
        eprintln!("interrupted again: exiting now");
        std::process::exit(130);
    });
}

/// SIGINT and SIGTERM listeners, registered with the OS when created.
struct Signals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let unix = signal(SignalKind::interrupt())
                .and_then(|interrupt| Ok((interrupt, signal(SignalKind::terminate())?)))
                .ok();
            Signals { unix }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some((interrupt, terminate)) = &mut self.unix {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
