//! MCP over HTTP, both ways round:
//! - `warren mcp --listen`: the real binary serving streamable HTTP, driven by rmcp's client,
//!   behind its own bearer token, Host and Origin checks;
//! - an MCP server behind a tunnel: rmcp's streamable-HTTP server (DNS-rebinding protection on,
//!   as shipped) exposed with `warren http --host-header rewrite`, reached through the edge by
//!   rmcp's client with its public name: initialize, a tool call and its streamed progress
//!   notifications. Without the rewrite the same server refuses every request.
//!
//! rmcp's HTTP client is used through its Unix-socket variant (hyper, no extra HTTP stack): a
//! small forwarder in the test carries the socket to the TCP address.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolRequestParams, ClientRequest, ProgressNotificationParam, Request, RequestMetaObject,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, PeerRequestOptions};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{
    StreamableHttpClientTransport, StreamableHttpServerConfig, StreamableHttpService,
};
use rmcp::{ClientHandler, Peer, RoleClient, RoleServer, ServerHandler, ServiceExt};
use rmcp::{tool, tool_handler, tool_router};
use serde_json::json;
use support::{Home, TestCluster, Warren, host_of};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use warren_testkit::origin::Origin;

/// A Unix socket whose connections are carried to `target` (for rmcp's hyper client).
struct SocketToTcp {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl SocketToTcp {
    fn start(target: std::net::SocketAddr) -> anyhow::Result<SocketToTcp> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("mcp.sock");
        let listener = UnixListener::bind(&path)?;
        let task = tokio::spawn(async move {
            while let Ok((mut unix, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut tcp) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut unix, &mut tcp).await;
                    }
                });
            }
        });
        Ok(SocketToTcp {
            path,
            _dir: dir,
            task,
        })
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap_or_default()
    }
}

impl Drop for SocketToTcp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client that keeps every progress notification.
#[derive(Clone, Default)]
struct Progress(Arc<Mutex<Vec<ProgressNotificationParam>>>);

impl ClientHandler for Progress {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(params);
    }
}

/// One raw HTTP/1.1 request; the status code.
async fn status_of(addr: std::net::SocketAddr, request: String) -> anyhow::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(request.as_bytes()).await?;
    let mut head = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut head)).await??;
    let line = String::from_utf8_lossy(&head[..n]).to_string();
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not HTTP: {line:?}"))
}

fn initialize(host: &str, extra: &str) -> String {
    let body = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},
        "clientInfo":{"name":"raw","version":"0"}}})
    .to_string();
    format!(
        "POST /mcp HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_serves_the_tools_behind_a_bearer_token() -> anyhow::Result<()> {
    let origin = Origin::start().await?;
    let cluster = TestCluster::start(Duration::from_secs(3600)).await?;
    let home = Home::logged_in(&cluster).await?;
    let token = "mcp-bearer-token-0123456789";
    let token_file = home.config_dir().with_file_name("mcp-token");
    std::fs::write(&token_file, format!("{token}\n"))?;
    let mut server = Warren::spawn_in(
        &home,
        &[
            "mcp",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            token_file.to_str().context("path")?,
        ],
    )?;
    server.wait_for_stderr("streamable HTTP at http://").await?;
    let stderr = server.stderr_so_far();
    let url = stderr
        .split("streamable HTTP at ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .context("no URL on stderr")?
        .to_string();
    let addr: std::net::SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .parse()?;
    let authority = format!("127.0.0.1:{}", addr.port());

    // No token, a wrong one, a browser's Origin, a foreign Host: refused before MCP.
    assert_eq!(status_of(addr, initialize(&authority, "")).await?, 401);
    let wrong = "authorization: Bearer not-the-token-at-all\r\n";
    assert_eq!(status_of(addr, initialize(&authority, wrong)).await?, 401);
    let bearer = format!("authorization: Bearer {token}\r\n");
    let from_page = format!("{bearer}origin: https://evil.example\r\n");
    assert_eq!(
        status_of(addr, initialize(&authority, &from_page)).await?,
        403
    );
    assert_eq!(
        status_of(addr, initialize("rebound.example:80", &bearer)).await?,
        403
    );
    assert_eq!(status_of(addr, initialize(&authority, &bearer)).await?, 200);

    // rmcp's client with the token: the same tools as over stdio, tunnels included.
    let socket = SocketToTcp::start(addr)?;
    let config = StreamableHttpClientTransportConfig::with_uri(url.clone()).auth_header(token);
    let transport =
        StreamableHttpClientTransport::from_unix_socket_with_config(socket.path(), config);
    let client = ().serve(transport).await.context("initialize over HTTP")?;
    let tools = client.list_all_tools().await?;
    assert_eq!(
        tools.len(),
        6,
        "{:?}",
        tools.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    let args = json!({"local_port": origin.port(), "local_host": "127.0.0.1"});
    let created = client
        .call_tool(
            CallToolRequestParams::new("create_tunnel")
                .with_arguments(args.as_object().cloned().context("object")?),
        )
        .await?;
    ensure!(created.is_error != Some(true), "{created:?}");
    let created = created.structured_content.context("structured")?;
    let host = host_of(&created["public_url"])?;
    let (status, _, body) = warren_testkit::client::get(cluster.edge_addr, &host, "/hello").await?;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(&body[..], b"hello from origin");
    let closed = client
        .call_tool(
            CallToolRequestParams::new("close_tunnel").with_arguments(
                json!({"tunnel_id": created["tunnel_id"]})
                    .as_object()
                    .cloned()
                    .context("object")?,
            ),
        )
        .await?;
    ensure!(closed.is_error != Some(true), "{closed:?}");
    drop(client);

    server.signal("TERM")?;
    let status = server.exit_within(Duration::from_secs(5)).await?;
    assert!(status.success(), "{status}");
    assert!(
        !server.stderr().contains(&cluster.token),
        "the API token reached the logs"
    );
    Ok(())
}

/// An MCP server as the SDK ships it: one tool that reports progress as it goes.
#[derive(Clone)]
struct Counter {
    tool_router: ToolRouter<Counter>,
}

#[tool_router(router = tool_router)]
impl Counter {
    fn new() -> Counter {
        Counter {
            tool_router: Self::tool_router(),
        }
    }

    /// Counts to three, one progress notification per step.
    #[tool(name = "count")]
    async fn count(
        &self,
        meta: RequestMetaObject,
        client: Peer<RoleServer>,
    ) -> Result<String, rmcp::ErrorData> {
        let token = meta
            .get_progress_token()
            .ok_or_else(|| rmcp::ErrorData::invalid_params("send a progress token", None))?;
        for step in 1..=3 {
            let _ = client
                .notify_progress(
                    ProgressNotificationParam::new(token.clone(), f64::from(step))
                        .with_total(3.0)
                        .with_message(format!("step {step}")),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok("counted to 3".into())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Counter {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_server_behind_a_tunnel_works_with_host_header_rewrite() -> anyhow::Result<()> {
    // rmcp's default config: only Host localhost / 127.0.0.1 / ::1 (DNS-rebinding protection).
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let service = StreamableHttpService::new(
        || Ok(Counter::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    let served = tokio::spawn(async move { axum::serve(listener, app).await });

    let cluster = TestCluster::start(Duration::from_secs(3600)).await?;
    let home = Home::logged_in(&cluster).await?;
    let local = format!("127.0.0.1:{port}");
    let mut plain = Warren::spawn_in(
        &home,
        &["http", &local, "--subdomain", "mcp-plain", "--json"],
    )?;
    let mut rewritten = Warren::spawn_in(
        &home,
        &[
            "http",
            &local,
            "--subdomain",
            "mcp-rewrite",
            "--host-header",
            "rewrite",
            "--json",
        ],
    )?;
    let plain_host = host_of(&plain.json_event("tunnel_ready").await?["public_url"])?;
    let rewrite_host = host_of(&rewritten.json_event("tunnel_ready").await?["public_url"])?;
    // Public URLs name the edge's port already (`name.localhost:PORT`) unless it is the
    // scheme's default.
    let edge_port = cluster.edge_addr.port();
    let authority = |host: &str| {
        if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:{edge_port}")
        }
    };

    // Without the rewrite the SDK sees the public name and refuses.
    let refused = status_of(cluster.edge_addr, initialize(&authority(&plain_host), "")).await?;
    assert!(refused >= 400, "the SDK accepted a public Host: {refused}");

    // With it: initialize, a tool call, and its progress notifications streamed back.
    let socket = SocketToTcp::start(cluster.edge_addr)?;
    let url = format!("http://{}/mcp", authority(&rewrite_host));
    let transport = StreamableHttpClientTransport::from_unix_socket_with_config(
        socket.path(),
        StreamableHttpClientTransportConfig::with_uri(url),
    );
    let progress = Progress::default();
    let client = progress
        .clone()
        .serve(transport)
        .await
        .context("initialize through the tunnel")?;
    let tools = client.list_all_tools().await?;
    assert_eq!(tools.len(), 1);
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(CallToolRequestParams::new("count"))),
            PeerRequestOptions::no_options(),
        )
        .await?;
    let response = handle.await_response().await?;
    assert!(
        format!("{response:?}").contains("counted to 3"),
        "{response:?}"
    );
    let seen = support::eventually("three progress notifications", || async {
        let seen = progress.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        ensure!(seen.len() == 3, "{} so far", seen.len());
        Ok(Some(seen))
    })
    .await?;
    let steps: Vec<f64> = seen.iter().map(|p| p.progress).collect();
    assert_eq!(steps, [1.0, 2.0, 3.0]);
    drop(client);
    served.abort();
    Ok(())
}
