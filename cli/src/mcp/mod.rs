//! `warren mcp`: an MCP server whose tools create, list and close tunnels that run in this
//! process, over stdio (the default) or MCP's streamable HTTP (`--listen`).
//!
//! stdout carries only MCP messages (logs go to stderr, as everywhere in `warren`). The API
//! token comes from the saved login, `WARREN_TOKEN` or `--token`: never from a tool argument,
//! and no result ever contains it. When stdin closes (or on SIGTERM/SIGINT) the server stops
//! and its tunnels close with it.
//!
//! # Layout
//! - `tools.rs`: the six tools as MCP sees them (names, annotations, schemas, text).
//! - `types.rs`: their arguments (parsed strictly) and structured results.
//! - `backend.rs`: what they do: tunnels over `agent/dynamic.rs`, the rest from control.
//! - `http.rs`: `--listen`: streamable HTTP behind a bearer token, Host and Origin checks.

pub mod backend;
pub mod http;
pub mod tools;
pub mod types;

use crate::args::McpArgs;
use crate::config;
use crate::control_client::ControlClient;
use backend::{Backend, Mode, Settings};
use rmcp::ServiceExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tools::WarrenMcp;

/// Longest the tunnels take to close once the server is told to stop.
pub const CLOSE_GRACE: Duration = Duration::from_secs(4);

pub async fn run(args: McpArgs) -> anyhow::Result<()> {
    let mode = mode(&args)?;
    let backend = Arc::new(Backend::new(
        mode,
        Settings {
            max_tunnels: usize::from(args.max_tunnels),
            allow_non_loopback: args.allow_non_loopback,
            region: args.region.clone(),
        },
    ));
    let shutdown = CancellationToken::new();
    crate::signals::on_interrupt(shutdown.clone());
    let served = match args.listen {
        None => stdio(backend.clone(), shutdown.clone()).await,
        Some(addr) => http::serve(backend.clone(), &args, addr, shutdown.clone()).await,
    };
    if tokio::time::timeout(CLOSE_GRACE, backend.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("tunnels did not close within {CLOSE_GRACE:?}; exiting anyway");
    }
    served
}

/// Where tunnels come from: `--edge` with a static token, else control with the login.
fn mode(args: &McpArgs) -> anyhow::Result<Mode> {
    let token = args.token.clone().filter(|t| !t.trim().is_empty());
    if let Some(edge) = &args.edge {
        return Ok(match token {
            Some(token) => Mode::Edge {
                url: edge.clone(),
                token,
            },
            None => Mode::NoToken,
        });
    }
    match config::current_login_with(token) {
        Ok(login) => Ok(Mode::Control(ControlClient::new(
            &login.control,
            Some(login.token),
        )?)),
        // The server still starts: every tool then says how to log in.
        Err(_) => Ok(Mode::NoToken),
    }
}

async fn stdio(backend: Arc<Backend>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let server = WarrenMcp::new(backend)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("MCP initialization failed: {e}"))?;
    let cancel = server.cancellation_token();
    let stop = tokio::spawn(async move {
        shutdown.cancelled().await;
        cancel.cancel();
    });
    let quit = server.waiting().await;
    stop.abort();
    tracing::info!(?quit, "MCP client gone");
    Ok(())
}
