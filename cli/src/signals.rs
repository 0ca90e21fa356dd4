//! Ctrl-C and SIGTERM: the first asks for a clean stop, the second exits at once.

use tokio_util::sync::CancellationToken;

pub fn on_interrupt(shutdown: CancellationToken) {
    tokio::spawn(async move {
        wait().await;
        shutdown.cancel();
        wait().await;
        eprintln!("interrupted again: exiting now");
        std::process::exit(130);
    });
}

async fn wait() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
