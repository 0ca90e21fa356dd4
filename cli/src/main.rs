//! `warren`: parse the command line, start diagnostics, run.

use clap::Parser;
use std::process::ExitCode;
use warren_cli::args::Cli;

fn main() -> ExitCode {
    // One rustls crypto provider (ring), chosen before anything uses TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // The agent serves one session: on one thread it needs no cross-thread wake-ups per request
    // (docs/performance.md measured 3.2 futex calls per request on the multi-thread runtime).
    // `warren dev` runs an edge and control too, which want every core.
    let one_thread = matches!(cli.command, warren_cli::args::Command::Http(_));
    let runtime = if one_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(warren_cli::run(cli))
}
