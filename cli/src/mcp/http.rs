//! `warren mcp --listen ADDR`: the same tools over MCP's streamable HTTP transport at `/mcp`,
//! for an agent on another machine or in a container.
//!
//! Three checks before a request reaches MCP: a bearer token of this server's own (from
//! `--token-file`, or generated and printed once to stderr; never the API token), compared in
//! constant time; the `Host` must be loopback or one of `--allow-host` (DNS rebinding); and a
//! request carrying a browser's `Origin` is refused (a web page cannot drive tunnels).

use crate::args::McpArgs;
use crate::mcp::backend::Backend;
use crate::mcp::tools::WarrenMcp;
use anyhow::Context as _;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The shortest bearer token accepted from `--token-file`.
pub const MIN_TOKEN_LEN: usize = 16;
/// The longest token file read.
const MAX_TOKEN_FILE: u64 = 4096;
/// Largest request body MCP reads (tool calls are small).
const MAX_BODY: usize = 1 << 20;

pub async fn serve(
    backend: Arc<Backend>,
    args: &McpArgs,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let token = match &args.token_file {
        Some(path) => read_token(path)?,
        None => {
            let token = format!("{:032x}", rand::random::<u128>());
            // Shown once, on stderr (stdout is not used by --listen).
            eprintln!("warren mcp: clients must send `Authorization: Bearer {token}`");
            token
        }
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    eprintln!("warren mcp: streamable HTTP at http://{local}/mcp");
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    hosts.extend(args.allow_hosts.iter().cloned());
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .enforce_origin_validation()
        .with_max_request_body_bytes(MAX_BODY)
        .with_cancellation_token(shutdown.child_token());
    let service = StreamableHttpService::new(
        move || Ok(WarrenMcp::new(backend.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(middleware::from_fn_with_state(Arc::new(digest), bearer));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("the MCP HTTP server failed")
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read --token-file {}", path.display()))?;
    anyhow::ensure!(
        meta.len() <= MAX_TOKEN_FILE,
        "--token-file {} is larger than {MAX_TOKEN_FILE} bytes: it should hold one token",
        path.display()
    );
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --token-file {}", path.display()))?;
    let token = text.trim().to_string();
    anyhow::ensure!(
        token.len() >= MIN_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_graphic()),
        "--token-file {} must hold one token of at least {MIN_TOKEN_LEN} visible ASCII characters",
        path.display()
    );
    Ok(token)
}

/// Lets through only requests with the server's bearer token.
async fn bearer(State(digest): State<Arc<[u8; 32]>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| -> [u8; 32] { Sha256::digest(t.trim().as_bytes()).into() });
    let ok = presented.is_some_and(|p| {
        p.iter()
            .zip(digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    });
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "warren mcp: send `Authorization: Bearer <token>` with the token warren mcp printed (or its --token-file)\n",
        )
            .into_response();
    }
    next.run(request).await
}
