//! The command line.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;

/// Expose local services at public URLs through a Warren edge.
#[derive(Parser, Debug)]
#[command(name = "warren", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Diagnostic log filter (e.g. `info`, `warren_session=debug`), written to stderr.
    #[arg(long, global = true, env = "WARREN_LOG", default_value = "warn")]
    pub log: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Expose a local HTTP service: `warren http 3000`.
    Http(HttpArgs),
    /// Run a complete Warren on this machine, and optionally a tunnel to a local port.
    Dev(DevArgs),
}

#[derive(Args, Debug)]
pub struct HttpArgs {
    /// Local port (3000) or address (localhost:3000, 192.168.1.5:80) to expose.
    pub port: String,

    /// Ask for this subdomain (e.g. `demo` for demo.<edge domain>).
    #[arg(long)]
    pub subdomain: Option<String>,

    /// Host the local service listens on, when PORT is a bare port.
    #[arg(long, default_value = "localhost")]
    pub local_host: String,

    /// The edge to connect to.
    #[arg(long, env = "WARREN_EDGE", default_value = "http://localhost:8080")]
    pub edge: String,

    /// API token for the edge.
    #[arg(long, env = "WARREN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Print events as JSON lines (NDJSON) on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Also open a tunnel to this local port (or address) and print its URL.
    pub port: Option<String>,

    /// Address the dev edge listens on; tunnels are at http://NAME.localhost:PORT.
    #[arg(long, env = "WARREN_DEV_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Subdomain for the tunnel opened with PORT.
    #[arg(long)]
    pub subdomain: Option<String>,

    /// Host the local service listens on, when PORT is a bare port.
    #[arg(long, default_value = "localhost")]
    pub local_host: String,

    /// Print events as JSON lines (NDJSON) on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}
