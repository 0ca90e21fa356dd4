//! The binary's commands: `serve`, `admin create-account`, `admin rotate-key`, `openapi`.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use warren_control::dns::DnsResolver;
use warren_control::{AppState, ControlConfig, RegionConfig};

#[derive(Debug, Parser)]
#[command(name = "warren-control", version, about = "Warren's control plane")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at start: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Serve the API.
    Serve(ServeArgs),
    /// Operator commands against the database.
    #[command(subcommand)]
    Admin(Admin),
    /// Print the OpenAPI document (what `openapi/warren-control.json` holds).
    Openapi,
}

#[derive(Debug, Subcommand)]
enum Admin {
    /// Create an account and print its first token (scope manage), once.
    CreateAccount {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, env = "WARREN_CONTROL_EMAIL")]
        email: String,
        /// The account may manage other accounts.
        #[arg(long)]
        admin: bool,
    },
    /// Add a new grant signing key; the old one stays published until its grants expire.
    RotateKey {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Args)]
struct DbArgs {
    /// postgres://... or sqlite://PATH?mode=rwc
    #[arg(long, env = "WARREN_CONTROL_DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WARREN_CONTROL_LISTEN", default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
    #[command(flatten)]
    db: DbArgs,
    /// Where clients reach control.
    #[arg(long, env = "WARREN_CONTROL_PUBLIC_URL")]
    public_url: String,
    /// Bearer secret edges send to /internal; without it /internal is disabled.
    #[arg(long, env = "WARREN_CONTROL_EDGE_SECRET", hide_env_values = true)]
    edge_secret: Option<String>,
    /// A region, repeatable (the first is the default):
    /// id=eu,name=Europe,location=Frankfurt,domain=eu.example.net,tunnel_url=wss://eu.example.net,
    /// probe_url=https://eu.example.net/_warren/probe[,public_scheme=https][,public_port=N].
    /// In the env var, separate regions with `;`.
    #[arg(
        long = "region",
        env = "WARREN_CONTROL_REGION",
        value_delimiter = ';',
        required = true
    )]
    regions: Vec<String>,
    /// Grant lifetime in seconds.
    #[arg(long, env = "WARREN_CONTROL_GRANT_TTL_SECS", default_value_t = warren_proto::grant::DEFAULT_GRANT_TTL_SECS)]
    grant_ttl_secs: u64,
    /// Failed authentications one client address may make per minute before it gets 429.
    #[arg(
        long,
        env = "WARREN_CONTROL_AUTH_FAILURES_PER_MINUTE",
        default_value_t = 10
    )]
    auth_failures_per_minute: u32,
    /// The DNS server (IP:PORT) that custom domains' TXT and CNAME records are looked up at;
    /// default: the system's resolvers (/etc/resolv.conf).
    #[arg(long, env = "WARREN_CONTROL_DNS_RESOLVER")]
    dns_resolver: Option<std::net::SocketAddr>,
    /// The cluster's Redis, shared with the edges: redis://HOST:PORT or
    /// redis+cluster://HOST:PORT,HOST:PORT. Control then reads session events from the
    /// `warren:events` stream and publishes closes on `warren:close`.
    #[arg(long, env = "WARREN_CONTROL_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// This instance's name in the events consumer group (default: the host name). Keep it
    /// stable across restarts and unique per replica.
    #[arg(long, env = "WARREN_CONTROL_INSTANCE_ID")]
    instance_id: Option<String>,
    /// PEM certificate chain: serve HTTPS instead of plain HTTP (with --tls-key-file).
    #[arg(long, env = "WARREN_CONTROL_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "WARREN_CONTROL_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<std::path::PathBuf>,
    /// Log format.
    #[arg(long, env = "WARREN_CONTROL_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Admin(Admin::CreateAccount { db, email, admin }) => {
            let state = open_for_admin(&db.database_url).await?;
            let (account, token) = warren_control::create_account(&state, &email, admin).await?;
            println!(
                "account {} ({}){}",
                account.id,
                account.email,
                if account.admin { " admin" } else { "" }
            );
            println!("token (shown once, keep it): {token}");
            Ok(())
        }
        Command::Admin(Admin::RotateKey { db }) => {
            let state = open_for_admin(&db.database_url).await?;
            let kid = warren_control::rotate_key(&state).await?;
            println!(
                "new signing key {kid}; the previous key stays published until its grants expire"
            );
            Ok(())
        }
        Command::Openapi => {
            print!("{}", warren_control::openapi_json());
            Ok(())
        }
    }
}

/// Admin commands need only the database; regions are irrelevant to them.
async fn open_for_admin(database_url: &str) -> anyhow::Result<AppState> {
    let mut config = ControlConfig::new(database_url, "http://localhost");
    config.regions.push(
        RegionConfig::parse("id=admin,domain=admin.invalid,tunnel_url=ws://admin.invalid")
            .map_err(anyhow::Error::msg)?,
    );
    AppState::open(config).await
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    let regions = args
        .regions
        .iter()
        .map(|spec| {
            RegionConfig::parse(spec).map_err(|e| anyhow::anyhow!("--region {spec:?}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = ControlConfig {
        database_url: args.db.database_url,
        public_url: args.public_url,
        regions,
        edge_secret: args.edge_secret.filter(|s| !s.is_empty()),
        grant_ttl: Duration::from_secs(args.grant_ttl_secs),
        dns_resolver: args
            .dns_resolver
            .map_or(DnsResolver::System, DnsResolver::At),
        redis_url: args.redis_url.filter(|u| !u.is_empty()),
        instance_id: args
            .instance_id
            .unwrap_or_else(warren_control::config::default_instance_id),
    };
    // Read before anything starts, so a bad file stops control at once.
    let tls = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => Some(warren_control::tls::server_config(cert, key)?),
        _ => None,
    };
    let state = AppState::open(config).await?;
    state.set_auth_failure_limit(args.auth_failures_per_minute);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    match tls {
        Some(tls) => warren_control::serve_tls(listener, tls, state, shutdown).await,
        None => warren_control::serve(listener, state, shutdown).await,
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // try_init: never panic if something installed a subscriber already.
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
