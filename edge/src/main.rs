//! `warren-edge`: parse settings, start logging, bind, run.

use clap::Parser;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warren_edge::{Deps, EdgeConfig, Listeners};

/// jemalloc, whose background thread hands pages freed after a peak (100,000 streams closed)
/// back to the system within seconds; glibc's malloc kept the whole peak resident for good
/// (docs/performance.md, "Memory after a peak").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The Warren edge: serves tunnels to visitors and accepts agents.
#[derive(Parser)]
#[command(name = "warren-edge", version)]
struct Args {
    /// Address for visitors (and agents, at /_warren/tunnel on the edge's domain).
    #[arg(long, env = "WARREN_EDGE_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,

    /// Optional separate address for agents only.
    #[arg(long, env = "WARREN_EDGE_TUNNEL_LISTEN")]
    tunnel_listen: Option<SocketAddr>,

    /// Internal address other edges relay visitor requests to (cluster mode, with --redis-url).
    /// Bind it where visitors cannot reach it.
    #[arg(long, env = "WARREN_EDGE_RELAY_LISTEN")]
    relay_listen: Option<SocketAddr>,

    /// HTTPS for visitors (needs --tls-cert/--tls-key or --acme-directory). With it, the
    /// visitor listener redirects to HTTPS, except ACME challenges and /_warren/*.
    #[arg(long, env = "WARREN_EDGE_TLS_LISTEN")]
    tls_listen: Option<SocketAddr>,

    /// Operators' listener: /_warren/certs (certificate expiry, JSON), /metrics, /healthz.
    /// Bind it where visitors cannot reach it.
    #[arg(long, env = "WARREN_EDGE_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,

    /// Log format: text or json.
    #[arg(long, env = "WARREN_LOG_FORMAT", default_value = "text")]
    log_format: String,

    /// Worker threads serving visitors and agents (default: one per CPU core). On a machine
    /// shared with other busy processes, fewer workers wake each other less: docs/operations.md.
    #[arg(long, env = "WARREN_EDGE_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,

    #[command(flatten)]
    edge: EdgeConfig,
}

fn main() -> anyhow::Result<()> {
    warren_edge::tls::install_crypto_provider();
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(workers) = args.workers {
        runtime.worker_threads(usize::from(workers));
    }
    let runtime = runtime
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(serve(args))
}

async fn serve(mut args: Args) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    args.edge.read_secret_files()?;
    args.edge.validate()?;
    // Static tokens, control (grants), or both; neither is refused with what to pass.
    let deps = Deps::from_config(&args.edge).await?;
    let visitor = TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let tunnel = bind_optional(args.tunnel_listen).await?;
    let tls = bind_optional(args.tls_listen).await?;
    let admin = bind_optional(args.admin_listen).await?;
    let relay = match (args.relay_listen, &args.edge.redis_url) {
        (Some(addr), Some(_)) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?,
        ),
        (None, Some(_)) => anyhow::bail!(
            "--redis-url makes this edge a cluster member: pass --relay-listen ADDR so other edges can relay to it"
        ),
        (Some(_), None) => anyhow::bail!("--relay-listen needs --redis-url and --relay-key"),
        (None, None) => None,
    };
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let listeners = Listeners {
        visitor,
        tunnel,
        relay,
        tls,
        admin,
    };
    warren_edge::run(args.edge, deps, listeners, shutdown).await
}

async fn bind_optional(addr: Option<SocketAddr>) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    Ok(Some(listener))
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// First SIGTERM or Ctrl-C drains; a second one exits at once.
fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down (signal again to exit now)");
        shutdown.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
