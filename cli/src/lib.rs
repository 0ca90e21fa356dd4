//! The `warren` command: the agent that holds tunnels open (`warren http`), `warren dev` (a
//! whole Warren in one process), and the commands that manage an account through control.
//!
//! # Layout
//! - `args.rs`: the command line (clap).
//! - `agent/`: the agent: connect, serve streams, forward to the local service, reconnect.
//! - `commands/`: one file per command group (`login`/`logout`, `tokens`, `subdomains`,
//!   `domains`, `tunnels`, `history`, `regions`, `http`).
//! - `config.rs`: the saved login (`~/.config/warren/config.toml`).
//! - `control_client.rs`: the REST client for control; `api.rs`: the bodies it reads.
//! - `mcp/`: `warren mcp`, the MCP server whose tools open tunnels in this process.
//! - `dev.rs`: `warren dev`; `dev_tls.rs`: its local CA for `--tls`.
//! - `output.rs`, `table.rs`: text for people, JSON for scripts.
//! - `probe.rs`: latency to each region, for `--region auto`.
//! - `signals.rs`: Ctrl-C handling.
#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod args;
pub mod commands;
pub mod config;
pub mod control_client;
pub mod dev;
pub mod dev_tls;
pub mod mcp;
pub mod output;
pub mod probe;
pub mod signals;
pub mod table;

use agent::{AgentError, AgentOptions};
use args::{Cli, Command};
use output::Printer;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Runs a parsed command line; the exit code says how it went.
pub async fn run(cli: Cli) -> ExitCode {
    let printer = Printer { json: cli.json };
    agent::tls::set_default_trust(cli.edge_trust());
    let result = match cli.command {
        Command::Http(args) => commands::http::run(args, printer).await,
        Command::Dev(args) => dev::run(args, printer).await,
        Command::Login(args) => commands::account::login(args, printer).await,
        Command::Logout => commands::account::logout(printer),
        Command::Tokens(command) => commands::tokens::run(command, printer).await,
        Command::Subdomains(command) => commands::subdomains::run(command, printer).await,
        Command::Domains(command) => commands::domains::run(command, printer).await,
        Command::Tunnels { command } => commands::tunnels::run(command, printer).await,
        Command::History(args) => commands::history::run(args, printer).await,
        Command::Regions => commands::regions::run(printer).await,
        Command::Mcp(args) => mcp::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            printer.fatal(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Runs the agent, printing its events as they come.
pub async fn run_agent(
    options: AgentOptions,
    printer: Printer,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let (tx, printing) = output::EventPrinter::spawn(printer);
    let result = agent::run(options, tx, shutdown).await;
    printing.finish().await;
    result
}
