//! The command line.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Expose local services at public URLs through a Warren edge.
#[derive(Parser, Debug)]
#[command(name = "warren", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Print JSON instead of text: the API's JSON for commands that ask control, one JSON event
    /// per line (NDJSON) for `http` and `dev`.
    #[arg(long, global = true)]
    pub json: bool,

    /// Diagnostic log filter (e.g. `info`, `warren_session=debug`), written to stderr.
    #[arg(long, global = true, env = "WARREN_LOG", default_value = "warn")]
    pub log: String,

    /// Trust only the CA certificates in this PEM file for a `wss://`/`https://` edge (a
    /// private CA, or the one `warren dev --tls` prints), instead of the system's roots.
    #[arg(long, global = true, env = "WARREN_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// Do not verify the edge's TLS certificate at all. For test edges only: anyone on the
    /// path could read and change the tunnel's traffic. Prints a warning.
    #[arg(
        long,
        global = true,
        env = "WARREN_INSECURE",
        conflicts_with = "ca_file"
    )]
    pub insecure: bool,
}

impl Cli {
    /// Whom agents trust for the edge's certificate.
    pub fn edge_trust(&self) -> crate::agent::tls::EdgeTrust {
        use crate::agent::tls::EdgeTrust;
        match (&self.ca_file, self.insecure) {
            (_, true) => EdgeTrust::Insecure,
            (Some(path), false) => EdgeTrust::CaFile(path.clone()),
            (None, false) => EdgeTrust::System,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Expose a local HTTP service: `warren http 3000`.
    Http(HttpArgs),
    /// Run a complete Warren on this machine, and optionally a tunnel to a local port.
    Dev(DevArgs),
    /// Save a control plane and API token for the other commands (checked first).
    Login(LoginArgs),
    /// Forget the saved login.
    Logout,
    /// List, create and revoke API tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// List, claim and release subdomains.
    #[command(subcommand)]
    Subdomains(SubdomainsCommand),
    /// Custom domains: add one, verify its DNS records, list, remove.
    #[command(subcommand)]
    Domains(DomainsCommand),
    /// List live tunnels, or close one.
    Tunnels {
        #[command(subcommand)]
        command: Option<TunnelsCommand>,
    },
    /// Past and present tunnels, newest first.
    History(HistoryArgs),
    /// The regions tunnels can run in.
    Regions,
    /// An MCP server for AI agents: tools to create, list and close tunnels, run in this
    /// process (stdio by default, streamable HTTP with --listen).
    Mcp(McpArgs),
}

#[derive(Args, Debug)]
pub struct McpArgs {
    /// Use this stand-alone edge with a static token (--token or WARREN_TOKEN) instead of the
    /// saved login's control plane.
    #[arg(long, env = "WARREN_EDGE")]
    pub edge: Option<String>,

    /// Default region for create_tunnel when the tool call names none: an id, or `auto`
    /// (control's choice, by latency when it has several).
    #[arg(long, default_value = "auto", conflicts_with = "edge")]
    pub region: String,

    /// At most this many tunnels open at once through this server (1 to 64).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_tunnels: u16,

    /// Let create_tunnel forward to hosts other than loopback (another machine on the LAN).
    #[arg(long)]
    pub allow_non_loopback: bool,

    /// Token: the edge's static token with --edge, else an API token for control (overrides
    /// the saved login). Never a tool argument.
    #[arg(long, env = "WARREN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Serve MCP's streamable HTTP transport on this address (e.g. 127.0.0.1:8765) instead
    /// of stdio. Clients must send `Authorization: Bearer <token>` (see --token-file).
    #[arg(long, env = "WARREN_MCP_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// With --listen: read the bearer token clients must present from this file (at least
    /// 16 characters). Without it a random one is generated and printed once to stderr.
    #[arg(long, env = "WARREN_MCP_TOKEN_FILE", requires = "listen")]
    pub token_file: Option<PathBuf>,

    /// With --listen: also accept these `Host` names (besides loopback), e.g. when the server
    /// is reached as `mcp.internal:8765` from a container.
    #[arg(long = "allow-host", requires = "listen")]
    pub allow_hosts: Vec<String>,
}

#[derive(Args, Debug)]
pub struct HttpArgs {
    /// Local port (3000) or address (localhost:3000, 192.168.1.5:80) to expose.
    pub port: String,

    /// Ask for this subdomain (e.g. `demo` for demo.<edge domain>).
    #[arg(long)]
    pub subdomain: Option<String>,

    /// Ask control for a random subdomain instead of the stable one.
    #[arg(long, conflicts_with_all = ["subdomain", "edge"])]
    pub random: bool,

    /// Serve this verified custom domain (`warren domains add`) instead of a subdomain.
    #[arg(long, conflicts_with_all = ["subdomain", "random", "edge"])]
    pub domain: Option<String>,

    /// Region to run the tunnel in (`warren regions`): `auto` probes every region's latency and
    /// picks the fastest; an id forces that region.
    #[arg(long, default_value = "auto", conflicts_with = "edge")]
    pub region: String,

    /// Host the local service listens on, when PORT is a bare port.
    #[arg(long, default_value = "localhost")]
    pub local_host: String,

    /// Connect to this edge directly with a static --token, without control.
    #[arg(long, env = "WARREN_EDGE")]
    pub edge: Option<String>,

    /// Token: the edge's static token with --edge, else an API token for control (overrides
    /// the saved login).
    #[arg(long, env = "WARREN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// File holding the token (first line), instead of --token: kept out of `ps`.
    #[arg(long, env = "WARREN_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,

    /// Print no line per request (the URL, warnings and errors still are); the edge then sends
    /// no request logs at all, which saves a little CPU per request on both sides.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Connections (sessions) to the edge that carry the tunnel, 1 to 8. Each has a thread of
    /// its own here and its own reader and writer at the edge, and new requests take them in
    /// turn, so a busy tunnel is not queued behind one connection. The extra ones must reach
    /// the same edge (behind a load balancer, one that keeps a client on one edge).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub sessions: u8,

    /// The `Host` header the local service gets: `rewrite` sends the local address (e.g.
    /// `localhost:3000`), which local servers that check Host (dev servers, MCP SDKs with
    /// DNS-rebinding protection) accept; any other value is sent as is. The visitor's host is
    /// kept in `X-Forwarded-Host`.
    #[arg(long)]
    pub host_header: Option<String>,
}

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Also open a tunnel to this local port (or address) and print its URL.
    pub port: Option<String>,

    /// Address the dev edge listens on; tunnels are at http://NAME.localhost:PORT.
    #[arg(long, env = "WARREN_DEV_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address the dev control plane listens on [default: 127.0.0.1:8081, or a free port if
    /// that one is taken].
    #[arg(long, env = "WARREN_DEV_CONTROL_LISTEN")]
    pub control_listen: Option<SocketAddr>,

    /// Where the dev control plane keeps its SQLite database [default:
    /// $XDG_DATA_HOME/warren/dev, else ~/.local/share/warren/dev].
    #[arg(long, env = "WARREN_DEV_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Subdomain for the tunnel opened with PORT.
    #[arg(long)]
    pub subdomain: Option<String>,

    /// Host the local service listens on, when PORT is a bare port.
    #[arg(long, default_value = "localhost")]
    pub local_host: String,

    /// Also serve tunnels over HTTPS (https://NAME.localhost:PORT) with a certificate from a
    /// local CA kept in the data directory; its path is printed (trust it, or pass it to
    /// --ca-file). The plain listener then redirects visitors to HTTPS.
    #[arg(long)]
    pub tls: bool,

    /// Address of the HTTPS listener with --tls.
    #[arg(long, env = "WARREN_DEV_TLS_LISTEN", default_value = "127.0.0.1:8443")]
    pub tls_listen: SocketAddr,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The control plane's URL [default: WARREN_CONTROL, the saved one, or http://127.0.0.1:8081].
    #[arg(long)]
    pub control: Option<String>,

    /// The API token; asked for (without echo) when not given. Prefer --token-file or the
    /// prompt: a flag's value is visible to every user in `ps`.
    #[arg(long)]
    pub token: Option<String>,

    /// File holding the API token (first line).
    #[arg(long, env = "WARREN_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// The account's tokens.
    List,
    /// A new token; it is shown once.
    Create {
        /// A name to recognise it by.
        #[arg(long)]
        name: Option<String>,
        /// What it may do (repeat for several) [default: tunnel].
        #[arg(long = "scope", value_enum)]
        scopes: Vec<Scope>,
        /// Lifetime, e.g. `90m`, `12h`, `30d`; never expires if not given.
        #[arg(long, value_parser = parse_lifetime)]
        expires_in: Option<u64>,
    },
    /// Revoke a token by id (`warren tokens list`).
    Revoke { id: String },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Read everything of the account.
    Read,
    /// Read, and open tunnels.
    Tunnel,
    /// Everything of the account: tokens, subdomains, closing tunnels.
    Manage,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Tunnel => "tunnel",
            Scope::Manage => "manage",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum SubdomainsCommand {
    /// The account's claimed subdomains.
    List,
    /// Reserve a subdomain for this account.
    Claim { name: String },
    /// Give a claimed subdomain back.
    Release { name: String },
}

#[derive(Subcommand, Debug)]
pub enum DomainsCommand {
    /// The account's custom domains and whether they are verified.
    List,
    /// Add a hostname you own; prints the two DNS records to create.
    Add {
        /// e.g. app.example.com
        hostname: String,
        /// The region its CNAME points at [default: control's default region].
        #[arg(long)]
        region: Option<String>,
    },
    /// Check the DNS records; once they are right the domain can serve tunnels.
    Verify {
        /// The hostname or the domain's id.
        domain: String,
    },
    /// Remove a domain; its live tunnels are closed.
    Remove {
        /// The hostname or the domain's id.
        domain: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TunnelsCommand {
    /// Live tunnels (the default).
    List,
    /// Close a tunnel: its agent is disconnected and told why.
    Close { id: String },
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Only this protocol (e.g. `http`).
    #[arg(long)]
    pub protocol: Option<String>,
    /// Only this region.
    #[arg(long)]
    pub region: Option<String>,
    /// At most this many tunnels (1-200).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=200))]
    pub limit: Option<u16>,
    /// Continue after a previous page (its `next_cursor`).
    #[arg(long)]
    pub cursor: Option<String>,
}

/// `30d`, `12h`, `90m`, `45s`, `2w` or plain seconds → seconds.
pub fn parse_lifetime(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    let bad = || format!("{raw:?} is not a lifetime: use e.g. 30d, 12h, 90m or 3600");
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    match number.checked_mul(unit) {
        Some(0) => Err(format!(
            "{raw:?}: a token that expires at once is of no use"
        )),
        Some(secs) => Ok(secs),
        None => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse() {
        assert_eq!(parse_lifetime("30d"), Ok(30 * 86_400));
        assert_eq!(parse_lifetime("90m"), Ok(5400));
        assert_eq!(parse_lifetime("3600"), Ok(3600));
        assert_eq!(parse_lifetime("2w"), Ok(14 * 86_400));
        assert!(parse_lifetime("0d").is_err());
        assert!(parse_lifetime("d").is_err());
        assert!(parse_lifetime("3 days").is_err());
        assert!(parse_lifetime("99999999999999999999d").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn random_and_subdomain_exclude_each_other() {
        let parsed =
            Cli::try_parse_from(["warren", "http", "3000", "--random", "--subdomain", "a"]);
        assert!(parsed.is_err());
        for conflicting in ["--subdomain", "--random"] {
            let mut argv = vec!["warren", "http", "3000", "--domain", "app.example.com"];
            argv.push(conflicting);
            if conflicting == "--subdomain" {
                argv.push("a");
            }
            assert!(Cli::try_parse_from(argv).is_err(), "{conflicting}");
        }
        let parsed = Cli::try_parse_from([
            "warren", "tokens", "create", "--scope", "read", "--scope", "manage",
        ]);
        assert!(matches!(
            parsed.map(|c| c.command),
            Ok(Command::Tokens(TokensCommand::Create { scopes, .. })) if scopes == [Scope::Read, Scope::Manage]
        ));
    }
}
