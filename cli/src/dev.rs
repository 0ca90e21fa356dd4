//! `warren dev`: a complete Warren in one process — a control plane on SQLite under a data
//! directory, and an edge that accepts control's grants and reports to it — plus optionally a
//! tunnel to a local port, opened through control like `warren http` does.
//!
//! The edge also accepts the dev account's API token as a static token, so the printed
//! `warren http 3000 --edge URL --token T` works without logging in.

use crate::agent;
use crate::args::DevArgs;
use crate::commands::http::{Tuning, TunnelRequest, open_tunnel, run_granted};
use crate::control_client::ControlClient;
use crate::output::Printer;
use crate::signals;
use anyhow::Context;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warren_control::{AppState, ControlConfig, RegionConfig};
use warren_edge::{Deps, EdgeConfig, Listeners};

/// Where the dev control plane listens unless told otherwise.
const DEFAULT_CONTROL_LISTEN: &str = "127.0.0.1:8081";

#[derive(Serialize)]
struct DevReady<'a> {
    event: &'static str,
    edge: &'a str,
    control: &'a str,
    token: &'a str,
    data_dir: &'a Path,
    /// With `--tls`: the local CA that signs the edge's certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<&'a Path>,
    login_command: &'a str,
    tunnel_command: &'a str,
}

pub async fn run(args: DevArgs, printer: Printer) -> anyhow::Result<()> {
    // The local target is checked before anything starts.
    let local = args
        .port
        .as_deref()
        .map(|port| agent::options::parse_local(port, &args.local_host))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let listener = TcpListener::bind(args.listen).await.with_context(|| {
        format!(
            "cannot listen on {}: is another `warren dev` running? Pass --listen 127.0.0.1:PORT",
            args.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let control_listener = bind_control(args.control_listen).await?;
    let control_addr = control_listener.local_addr()?;
    let data_dir = data_dir(args.data_dir.clone())?;
    let control_url = format!("http://127.0.0.1:{}", control_addr.port());
    let edge_url = format!("http://localhost:{}", addr.port());

    // With --tls, public URLs are https on the TLS listener; agents keep using the plain one
    // (`/_warren/*` is never redirected).
    let tls = match args.tls {
        true => {
            let files = crate::dev_tls::prepare(&data_dir)?;
            let listener = TcpListener::bind(args.tls_listen).await.with_context(|| {
                format!(
                    "cannot listen on {} for HTTPS: pass --tls-listen 127.0.0.1:PORT",
                    args.tls_listen
                )
            })?;
            Some((files, listener))
        }
        false => None,
    };
    let public = match &tls {
        Some((_, listener)) => ("https", listener.local_addr()?.port()),
        None => ("http", addr.port()),
    };
    let edge_secret = format!("{:032x}", rand::random::<u128>());
    let state = open_control(&data_dir, &control_url, addr, public, &edge_secret).await?;
    let token = warren_control::ensure_dev_account(&state)
        .await
        .context("cannot create the dev account")?;

    let shutdown = CancellationToken::new();
    signals::on_interrupt(shutdown.clone());
    // Control outlives the edge: the edge's last reports (sessions ended) must reach it.
    let control_shutdown = CancellationToken::new();
    let control = tokio::spawn(warren_control::serve(
        control_listener,
        state,
        control_shutdown.clone(),
    ));

    let mut config = EdgeConfig {
        domain: "localhost".into(),
        region: "local".into(),
        // The dev token is also a static token of the edge, as account `static:dev`.
        tokens: vec![format!("dev:{token}")],
        public_scheme: public.0.into(),
        public_port: Some(public.1),
        shutdown_grace: Duration::from_secs(5),
        control_url: Some(control_url.clone()),
        control_insecure_http: true,
        control_secret: Some(edge_secret),
        ..EdgeConfig::default()
    };
    let (tls_files, tls_listener) = match tls {
        Some((files, listener)) => (Some(files), Some(listener)),
        None => (None, None),
    };
    if let Some(files) = &tls_files {
        config.tls.tls_cert = Some(files.cert.clone());
        config.tls.tls_key = Some(files.key.clone());
        config.tls.tls_local_ca_cert = Some(files.ca.clone());
        config.tls.tls_local_ca_key = Some(files.ca_key.clone());
    }
    let deps = Deps::with_control(&config).await?;
    let edge = tokio::spawn(warren_edge::run(
        config,
        deps,
        Listeners {
            visitor: listener,
            tunnel: None,
            relay: None,
            tls: tls_listener,
            admin: None,
        },
        shutdown.clone(),
    ));

    let login_command = format!("warren login --control {control_url} --token {token}");
    let tunnel_command = format!("warren http 3000 --edge {edge_url} --token {token}");
    let ca_file = tls_files.as_ref().map(|f| f.ca.as_path());
    if printer.json {
        printer.json_line(&DevReady {
            event: "dev_ready",
            edge: &edge_url,
            control: &control_url,
            token: &token,
            data_dir: &data_dir,
            ca_file,
            login_command: &login_command,
            tunnel_command: &tunnel_command,
        });
    } else {
        println!(
            "Warren dev control at {control_url} (data in {})",
            data_dir.display()
        );
        println!(
            "Warren dev edge listening on {addr}; tunnels are served at {}://NAME.localhost:{}",
            public.0, public.1
        );
        if let Some(ca) = ca_file {
            println!(
                "HTTPS certificates come from a local CA: {} (trust it in your browser, or pass \
                 --ca-file {} to tools)",
                ca.display(),
                ca.display()
            );
        }
        println!("Log in from another terminal, then expose a port:");
        println!("  {login_command}");
        println!("  warren http 3000");
        println!("Or without logging in:");
        println!("  {tunnel_command}");
        println!("Press Ctrl-C to stop.");
    }

    let agent_result = match local {
        Some(local) => {
            let client = ControlClient::new(&control_url, Some(token))?;
            let request = TunnelRequest {
                subdomain: args.subdomain.clone(),
                ..TunnelRequest::default()
            };
            let result = match open_tunnel(&client, &request, &local).await {
                Ok(first) => {
                    run_granted(
                        client,
                        first,
                        local,
                        printer,
                        shutdown.clone(),
                        Tuning::default(),
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            shutdown.cancel();
            result
        }
        None => {
            shutdown.cancelled().await;
            Ok(())
        }
    };
    let edge_result = edge.await.context("the dev edge task failed");
    control_shutdown.cancel();
    let control_result = control.await.context("the dev control task failed");
    edge_result??;
    control_result??;
    agent_result
}

/// The control listener: the one asked for, else 127.0.0.1:8081, else (taken) any free port.
async fn bind_control(asked: Option<SocketAddr>) -> anyhow::Result<TcpListener> {
    if let Some(addr) = asked {
        return TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for control: pass another --control-listen")
        });
    }
    match TcpListener::bind(DEFAULT_CONTROL_LISTEN).await {
        Ok(listener) => Ok(listener),
        Err(e) => {
            tracing::info!(error = %e, "{DEFAULT_CONTROL_LISTEN} is taken; control gets a free port");
            TcpListener::bind("127.0.0.1:0")
                .await
                .context("cannot listen on any loopback port for control")
        }
    }
}

/// `--data-dir`, else `$XDG_DATA_HOME/warren/dev`, else `~/.local/share/warren/dev`; created
/// (owner-only) if missing.
fn data_dir(asked: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match asked {
        Some(dir) => dir,
        None => match std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
        {
            Some(xdg) => xdg.join("warren").join("dev"),
            None => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
                Some(home) => PathBuf::from(home).join(".local/share/warren/dev"),
                None => anyhow::bail!(
                    "cannot tell where to keep the dev data: pass --data-dir DIR (or set HOME)"
                ),
            },
        },
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    Ok(dir)
}

async fn open_control(
    data_dir: &Path,
    control_url: &str,
    edge: SocketAddr,
    public: (&str, u16),
    edge_secret: &str,
) -> anyhow::Result<AppState> {
    let database = data_dir.join("control.db");
    let mut config = ControlConfig::new(
        format!("sqlite://{}?mode=rwc", database.display()),
        control_url,
    );
    config.regions = vec![RegionConfig {
        id: "local".into(),
        name: "Local".into(),
        location: "this machine".into(),
        domain: "localhost".into(),
        tunnel_url: format!("http://127.0.0.1:{}", edge.port()),
        probe_url: format!("http://127.0.0.1:{}/_warren/probe", edge.port()),
        public_scheme: public.0.into(),
        public_port: Some(public.1),
    }];
    config.edge_secret = Some(edge_secret.to_string());
    AppState::open(config).await.with_context(|| {
        format!(
            "cannot open the dev database {}: delete it to start afresh, or pass another --data-dir",
            database.display()
        )
    })
}
