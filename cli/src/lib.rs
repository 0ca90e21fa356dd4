//! The `warren` command: the agent that holds tunnels open (`warren http`), and `warren dev`,
//! a whole Warren in one process.
//!
//! # Layout
//! - `args.rs`: the command line (clap).
//! - `agent/`: the agent: connect, serve streams, forward to the local service, reconnect.
//! - `dev.rs`: `warren dev`.
//! - `output.rs`: text for people, NDJSON for scripts.
//! - `signals.rs`: Ctrl-C handling.
#![forbid(unsafe_code)]

pub mod agent;
pub mod args;
pub mod dev;
pub mod output;
pub mod signals;

use agent::{AgentError, AgentOptions, TunnelSpec};
use args::{Cli, Command, HttpArgs};
use output::Printer;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Runs a parsed command line; the exit code says how it went.
pub async fn run(cli: Cli) -> ExitCode {
    let printer = Printer {
        json: match &cli.command {
            Command::Http(a) => a.json,
            Command::Dev(a) => a.json,
        },
    };
    let result = match cli.command {
        Command::Http(args) => http(args, printer).await,
        Command::Dev(args) => dev::run(args, printer).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            printer.fatal(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

async fn http(args: HttpArgs, printer: Printer) -> anyhow::Result<()> {
    // What is wrong on the command line itself (port, --edge) comes first: it is reported as
    // such even when no token is configured yet.
    let local =
        agent::options::parse_local(&args.port, &args.local_host).map_err(anyhow::Error::msg)?;
    let options = AgentOptions::new(
        &args.edge,
        args.token.unwrap_or_default(),
        vec![TunnelSpec {
            local,
            subdomain: args.subdomain,
        }],
    )
    .map_err(anyhow::Error::msg)?;
    if options.token.is_empty() {
        anyhow::bail!("no token: pass --token or set WARREN_TOKEN (`warren dev` prints one)");
    }
    let shutdown = CancellationToken::new();
    signals::on_interrupt(shutdown.clone());
    run_agent(options, printer, shutdown)
        .await
        .map_err(anyhow::Error::new)
}

/// Runs the agent, printing its events as they come.
pub async fn run_agent(
    options: AgentOptions,
    printer: Printer,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let printing = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            printer.agent_event(&event);
        }
    });
    let result = agent::run(options, tx, shutdown).await;
    let _ = printing.await;
    result
}
