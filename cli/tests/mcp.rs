//! `warren mcp` over stdio: the real binary spawned as an MCP server, driven by rmcp's client,
//! against a control plane and an edge (tunnels granted by control, history from control).
//!
//! Every byte between client and server passes through this test: each stdout line must be a
//! JSON-RPC message (logs at trace level go to stderr), none may contain the API token, and the
//! exchange can be written out as a transcript (`WARREN_MCP_TRANSCRIPT=path`).

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RunningService, ServiceError};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use support::{DEADLINE, EXIT_DEADLINE, Home, TestCluster, WARREN, eventually};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use warren_testkit::client;
use warren_testkit::origin::Origin;

type Client = RunningService<RoleClient, ()>;

/// Every line each way, in order: (direction, line).
#[derive(Default, Clone)]
struct Wire {
    lines: Arc<Mutex<Vec<(&'static str, String)>>>,
    /// stdout lines that were not JSON-RPC messages.
    bad: Arc<Mutex<Vec<String>>>,
}

impl Wire {
    fn push(&self, direction: &'static str, line: &str) {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((direction, line.to_string()));
    }

    fn all(&self) -> Vec<(&'static str, String)> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// `warren mcp ARGS` with its stdin and stdout spliced to an rmcp client through [`Wire`].
struct Server {
    child: tokio::process::Child,
    client: Option<Client>,
    wire: Wire,
}

impl Server {
    async fn start(home: &Home, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Server> {
        let mut command = tokio::process::Command::new(WARREN);
        command
            .arg("mcp")
            .args(args)
            .env("HOME", home.config_dir().parent().context("home")?)
            .env("XDG_CONFIG_HOME", home.config_dir())
            .env("XDG_DATA_HOME", home.data_dir())
            .env_remove("WARREN_TOKEN")
            .env_remove("WARREN_EDGE")
            .env("WARREN_LOG", "trace")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().context("spawn warren mcp")?;
        let mut child_in = child.stdin.take().context("stdin")?;
        let child_out = child.stdout.take().context("stdout")?;
        let wire = Wire::default();
        let (client_side, server_side) = tokio::io::duplex(1 << 20);
        let (from_client, mut to_client) = tokio::io::split(server_side);
        // Client → server.
        let tee = wire.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(from_client).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tee.push("client", &line);
                if child_in
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            // The client closed: so does the server's stdin.
            drop(child_in);
        });
        // Server → client: each line must be one JSON-RPC message.
        let tee = wire.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(child_out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let valid =
                    serde_json::from_str::<Value>(&line).is_ok_and(|v| v["jsonrpc"] == "2.0");
                if !valid {
                    tee.bad
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(line.clone());
                }
                tee.push("server", &line);
                if to_client
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let client = ().serve(client_side).await.context("MCP initialize")?;
        Ok(Server {
            child,
            client: Some(client),
            wire,
        })
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("client open")
    }

    async fn call(&self, tool: &str, args: Value) -> Result<CallToolResult, ServiceError> {
        let Value::Object(arguments) = args else {
            panic!("arguments must be an object");
        };
        self.client()
            .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
            .await
    }

    /// A call that must succeed; its structured content.
    async fn ok(&self, tool: &str, args: Value) -> anyhow::Result<Value> {
        let result = self.call(tool, args.clone()).await?;
        ensure!(
            result.is_error != Some(true),
            "{tool} {args} failed: {:?}",
            result.content
        );
        result
            .structured_content
            .with_context(|| format!("{tool}: no structuredContent"))
    }

    /// A call that must fail as a tool error; its text.
    async fn tool_error(&self, tool: &str, args: Value) -> anyhow::Result<String> {
        let result = self.call(tool, args.clone()).await?;
        ensure!(
            result.is_error == Some(true),
            "{tool} {args} should have failed: {result:?}"
        );
        Ok(text(&result))
    }

    /// A call refused for breaking the schema, before the tool runs: JSON-RPC invalid params
    /// (-32602), not a tool result.
    async fn invalid_params(&self, tool: &str, args: Value) -> anyhow::Result<String> {
        match self.call(tool, args.clone()).await {
            Err(ServiceError::McpError(error)) if error.code.0 == -32602 => {
                Ok(error.message.to_string())
            }
            other => bail!("{tool} {args} should be refused with -32602: {other:?}"),
        }
    }

    /// Closes stdin and waits for the process to exit.
    async fn close(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        if let Some(client) = self.client.take() {
            let _ = client.cancel().await;
        }
        let status = tokio::time::timeout(EXIT_DEADLINE, self.child.wait())
            .await
            .context("warren mcp did not exit after stdin closed")??;
        ensure!(status.success(), "warren mcp exited with {status}");
        Ok(started.elapsed())
    }
}

/// A local service that answers every request with one fixed body (to tell origins apart).
struct Fixed {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Fixed {
    async fn start(body: &'static str) -> anyhow::Result<Fixed> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Ok(Fixed { port, task })
    }

    fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Fixed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn host(url: &Value) -> anyhow::Result<String> {
    support::host_of(url)
}

async fn login(cluster: &TestCluster) -> anyhow::Result<Home> {
    let home = Home::logged_in(cluster).await?;
    Ok(home)
}

/// GET `path` through the edge until it answers `status` (within `deadline`).
async fn answers(
    cluster: &TestCluster,
    host: &str,
    status: u16,
    deadline: Duration,
) -> anyhow::Result<bytes::Bytes> {
    let started = Instant::now();
    loop {
        let (got, _, body) = client::get(cluster.edge_addr, host, "/hello").await?;
        if got.as_u16() == status {
            return Ok(body);
        }
        ensure!(
            started.elapsed() < deadline,
            "{host} answered {got} instead of {status} for {deadline:?}: {}",
            String::from_utf8_lossy(&body)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_create_list_close_and_history_over_stdio() -> anyhow::Result<()> {
    let origin = Origin::start().await?;
    let second = Fixed::start("second origin").await?;
    let third = Fixed::start("third origin").await?;
    let cluster = TestCluster::start(Duration::from_secs(3600)).await?;
    let home = login(&cluster).await?;
    let mut server = Server::start(&home, &["--max-tunnels", "3"], &[]).await?;

    let info = server.client().peer_info().context("no server info")?;
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("warren")
    );

    // Exactly the six tools, each with an input and an output schema.
    let tools = server.client().list_all_tools().await?;
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "close_tunnel",
            "create_tunnel",
            "get_connection_info",
            "get_tunnel_history",
            "list_regions",
            "list_tunnels"
        ]
    );
    for tool in &tools {
        assert!(
            tool.output_schema.is_some(),
            "{} has no outputSchema",
            tool.name
        );
        assert!(
            tool.annotations.is_some(),
            "{} has no annotations",
            tool.name
        );
    }
    let create = tools
        .iter()
        .find(|t| t.name == "create_tunnel")
        .context("create")?;
    let schema = serde_json::to_string(&create.input_schema)?;
    assert!(
        schema.contains("local_port") && schema.contains("protocol"),
        "{schema}"
    );
    let close = tools
        .iter()
        .find(|t| t.name == "close_tunnel")
        .context("close")?;
    assert_eq!(
        close.annotations.as_ref().and_then(|a| a.destructive_hint),
        Some(true)
    );

    // create → the URL works at once.
    let created = server
        .ok(
            "create_tunnel",
            json!({"local_port": origin.port(), "local_host": "127.0.0.1"}),
        )
        .await?;
    let tunnel_id = created["tunnel_id"]
        .as_str()
        .context("tunnel_id")?
        .to_string();
    assert_eq!(created["protocol"], "http");
    assert_eq!(created["region"], "local");
    assert_eq!(
        created["local_addr"],
        format!("127.0.0.1:{}", origin.port())
    );
    let first_host = host(&created["public_url"])?;
    let (status, _, body) = client::get(cluster.edge_addr, &first_host, "/hello").await?;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(&body[..], b"hello from origin");

    // Two concurrent creates, each to its own origin, on the same session.
    let (a, b) = tokio::join!(
        server.ok(
            "create_tunnel",
            json!({"local_port": second.port(), "local_host": "127.0.0.1", "subdomain": "mcp-second"}),
        ),
        server.ok(
            "create_tunnel",
            json!({"local_port": third.port(), "local_host": "127.0.0.1", "subdomain": "mcp-third"}),
        ),
    );
    let (a, b) = (a?, b?);
    assert_ne!(a["tunnel_id"], b["tunnel_id"]);
    let (_, _, body) = client::get(cluster.edge_addr, &host(&a["public_url"])?, "/hello").await?;
    assert_eq!(&body[..], b"second origin");
    let (_, _, body) = client::get(cluster.edge_addr, &host(&b["public_url"])?, "/hello").await?;
    assert_eq!(&body[..], b"third origin");

    // The limit, and each bad input, with what to do.
    let limit = server
        .tool_error(
            "create_tunnel",
            json!({"local_port": 9, "local_host": "127.0.0.1"}),
        )
        .await?;
    assert!(
        limit.contains("--max-tunnels") && limit.contains("close one"),
        "{limit}"
    );
    server
        .ok("close_tunnel", json!({"tunnel_id": b["tunnel_id"]}))
        .await?;
    let tcp = server
        .tool_error(
            "create_tunnel",
            json!({"local_port": 5432, "protocol": "tcp"}),
        )
        .await?;
    assert!(
        tcp.contains("not supported") && tcp.contains("http"),
        "{tcp}"
    );
    let lan = server
        .tool_error(
            "create_tunnel",
            json!({"local_port": 80, "local_host": "192.168.1.5"}),
        )
        .await?;
    assert!(
        lan.contains("not loopback") && lan.contains("--allow-non-loopback"),
        "{lan}"
    );
    let name = server
        .tool_error(
            "create_tunnel",
            json!({"local_port": 80, "subdomain": "Bad_Name!"}),
        )
        .await?;
    assert!(name.contains("invalid subdomain"), "{name}");
    let taken = server
        .tool_error(
            "create_tunnel",
            json!({"local_port": second.port(), "local_host": "127.0.0.1", "subdomain": "mcp-second"}),
        )
        .await?;
    assert!(taken.contains("pick another"), "{taken}");
    let unknown = server
        .tool_error("close_tunnel", json!({"tunnel_id": "tun_does_not_exist"}))
        .await?;
    assert!(unknown.contains("unknown tunnel id"), "{unknown}");
    server
        .invalid_params("create_tunnel", json!({"local_port": 0}))
        .await?;
    server
        .invalid_params("create_tunnel", json!({"local_port": 70000}))
        .await?;
    server
        .invalid_params(
            "create_tunnel",
            json!({"local_port": 80, "protocol": "gopher"}),
        )
        .await?;
    server
        .invalid_params("create_tunnel", json!({"local_port": 80, "token": "wrn_x"}))
        .await?;
    server
        .invalid_params("get_tunnel_history", json!({"limit": 500}))
        .await?;

    // list: the account's live tunnels from control, ours marked.
    let listed = eventually("list_tunnels shows the first tunnel live", || async {
        let list = server.ok("list_tunnels", json!({})).await?;
        let tunnels = list["tunnels"].as_array().cloned().unwrap_or_default();
        let ours = tunnels
            .iter()
            .find(|t| t["tunnel_id"] == tunnel_id.as_str())
            .cloned()
            .context("not listed yet")?;
        Ok(Some(ours))
    })
    .await?;
    assert_eq!(listed["owned"], true, "{listed}");

    // connection info: a command without the token.
    let info = server
        .ok(
            "get_connection_info",
            json!({"local_port": 3000, "subdomain": "demo"}),
        )
        .await?;
    assert_eq!(info["command"], "warren http 3000 --subdomain demo");
    assert!(
        info["config_entry"]
            .as_str()
            .unwrap_or("")
            .contains("local_port = 3000")
    );
    let regions = server.ok("list_regions", json!({"probe": true})).await?;
    assert_eq!(regions["regions"][0]["id"], "local", "{regions}");
    assert!(regions["regions"][0]["latency_ms"].is_number(), "{regions}");

    // close → 404 within a second → history has it with its request.
    server
        .ok("close_tunnel", json!({"tunnel_id": tunnel_id}))
        .await?;
    answers(&cluster, &first_host, 404, Duration::from_secs(1)).await?;
    let entry = eventually(
        "the closed tunnel is in the history with its request",
        || async {
            let history = server
                .ok("get_tunnel_history", json!({"limit": 10}))
                .await?;
            let entries = history["entries"].as_array().cloned().unwrap_or_default();
            let entry = entries
                .iter()
                .find(|e| e["tunnel_id"] == tunnel_id.as_str())
                .cloned()
                .context("not in the history")?;
            ensure!(
                entry["state"] == "ended" && entry["requests"] == 1,
                "{entry}"
            );
            Ok(Some(entry))
        },
    )
    .await?;
    assert!(
        entry["duration_s"].is_u64() && entry["start"].is_string(),
        "{entry}"
    );

    // Closing stdin ends the process and its tunnels.
    let second_host = host(&a["public_url"])?;
    let took = server.close().await?;
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The server said goodbye before exiting: the name is closed (404), not held for a
    // reconnect.
    answers(&cluster, &second_host, 404, Duration::from_secs(1)).await?;

    let bad = server
        .wire
        .bad
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(
        bad.is_empty(),
        "stdout lines that are not JSON-RPC: {bad:?}"
    );
    for (direction, line) in server.wire.all() {
        assert!(
            !line.contains(&cluster.token),
            "the token leaked ({direction}): {line}"
        );
    }
    if let Ok(path) = std::env::var("WARREN_MCP_TRANSCRIPT") {
        std::fs::write(path, transcript(&server.wire))?;
    }
    let _ = DEADLINE;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_every_tunnel_tool_says_how_to_get_one() -> anyhow::Result<()> {
    let home = Home::new()?;
    let mut server = Server::start(&home, &[], &[]).await?;
    for (tool, args) in [
        ("create_tunnel", json!({"local_port": 3000})),
        ("list_tunnels", json!({})),
        ("get_tunnel_history", json!({})),
    ] {
        let message = server.tool_error(tool, args).await?;
        assert!(
            message.contains("warren login") && message.contains("WARREN_TOKEN"),
            "{tool}: {message}"
        );
    }
    server.close().await?;
    Ok(())
}

/// The exchange as Markdown: one JSON-RPC message per block, pretty-printed.
fn transcript(wire: &Wire) -> String {
    let mut out = String::from(
        "# A `warren mcp` session\n\nRecorded by `cli/tests/mcp.rs` (`WARREN_MCP_TRANSCRIPT=docs/mcp-transcript.md \
         cargo test -p warren-cli --test mcp tools_create`): the real binary over stdio, an rmcp \
         client, a control plane and an edge on loopback. Every message, in order; `→` is the \
         client, `←` the server.\n\n",
    );
    for (direction, line) in wire.all() {
        let arrow = if direction == "client" { "→" } else { "←" };
        let pretty = serde_json::from_str::<Value>(&line)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or(line);
        out.push_str(&format!("{arrow}\n```json\n{pretty}\n```\n\n"));
    }
    out
}
