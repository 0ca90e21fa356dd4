//! The six tools, as MCP sees them: names, descriptions, annotations, schemas. Each result is
//! `structuredContent` (matching the tool's `outputSchema`) plus one short sentence of text;
//! each failure is a tool result with `isError` and a sentence saying what to do.

use crate::mcp::backend::{Backend, ToolError};
use crate::mcp::types::*;
use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use serde::Serialize;
use std::sync::Arc;

/// The MCP server: cheap to clone (streamable HTTP makes one per client session), all clones
/// share one [`Backend`].
#[derive(Clone)]
pub struct WarrenMcp {
    backend: Arc<Backend>,
    tool_router: ToolRouter<WarrenMcp>,
}

type ToolResult = Result<CallToolResult, String>;

/// Structured content plus a short text for clients that show only text.
fn reply<T: Serialize>(text: String, value: &T) -> ToolResult {
    let structured = serde_json::to_value(value).map_err(|e| e.to_string())?;
    let mut result = CallToolResult::structured(structured);
    result.content = vec![ContentBlock::text(text)];
    Ok(result)
}

/// Checks a tool call's arguments against the tool's input type (whose schema is the one
/// `tools/list` publishes; serde enforces its bounds). Unknown tools are left to the router.
fn check_arguments(
    tool: &str,
    arguments: Option<&rmcp::model::JsonObject>,
) -> Result<(), rmcp::ErrorData> {
    fn parse<T: serde::de::DeserializeOwned>(
        tool: &str,
        arguments: Option<&rmcp::model::JsonObject>,
    ) -> Result<(), rmcp::ErrorData> {
        let value = serde_json::Value::Object(arguments.cloned().unwrap_or_default());
        serde_json::from_value::<T>(value).map(drop).map_err(|e| {
            rmcp::ErrorData::invalid_params(format!("invalid arguments for {tool}: {e}"), None)
        })
    }
    match tool {
        "create_tunnel" => parse::<CreateTunnelInput>(tool, arguments),
        "list_tunnels" => parse::<Empty>(tool, arguments),
        "close_tunnel" => parse::<CloseTunnelInput>(tool, arguments),
        "get_connection_info" => parse::<ConnectionInfoInput>(tool, arguments),
        "list_regions" => parse::<RegionsInput>(tool, arguments),
        "get_tunnel_history" => parse::<HistoryInput>(tool, arguments),
        _ => Ok(()),
    }
}

fn failed(error: ToolError) -> String {
    error.0
}

#[tool_router(router = tool_router)]
impl WarrenMcp {
    pub fn new(backend: Arc<Backend>) -> WarrenMcp {
        WarrenMcp {
            backend,
            tool_router: Self::tool_router(),
        }
    }

    /// Expose a local port at a public URL. The tunnel runs inside this MCP server and is live
    /// when this returns; it stays until close_tunnel or until the server stops.
    #[tool(
        name = "create_tunnel",
        annotations(
            title = "Create a tunnel",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        ),
        output_schema = schema_for_output::<CreatedTunnel>()
    )]
    async fn create_tunnel(&self, Parameters(input): Parameters<CreateTunnelInput>) -> ToolResult {
        let created = self.backend.create(input).await.map_err(failed)?;
        let text = format!(
            "{} now forwards to {} (tunnel {}).",
            created.public_url, created.local_addr, created.tunnel_id
        );
        reply(text, &created)
    }

    /// The account's live tunnels, marking those this server opened (owned).
    #[tool(
        name = "list_tunnels",
        annotations(
            title = "List tunnels",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<TunnelList>()
    )]
    async fn list_tunnels(&self, Parameters(_): Parameters<Empty>) -> ToolResult {
        let list = self.backend.list().await.map_err(failed)?;
        let owned = list.tunnels.iter().filter(|t| t.owned).count();
        let text = format!(
            "{} live tunnel(s), {owned} opened by this server.",
            list.tunnels.len()
        );
        reply(text, &list)
    }

    /// Close a tunnel: one of this server's at once, or any of the account's through control
    /// (its agent is told to stop).
    #[tool(
        name = "close_tunnel",
        annotations(
            title = "Close a tunnel",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<ClosedTunnel>()
    )]
    async fn close_tunnel(&self, Parameters(input): Parameters<CloseTunnelInput>) -> ToolResult {
        let closed = self.backend.close(&input.tunnel_id).await.map_err(failed)?;
        let text = format!("Closed tunnel {} ({}).", closed.tunnel_id, closed.closed_by);
        reply(text, &closed)
    }

    /// The `warren` command and `warren start` configuration entry that open the same tunnel
    /// outside this server (for a person or a script). Never contains the API token.
    #[tool(
        name = "get_connection_info",
        annotations(
            title = "Connection info",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<ConnectionInfo>()
    )]
    async fn get_connection_info(
        &self,
        Parameters(input): Parameters<ConnectionInfoInput>,
    ) -> ToolResult {
        let info = self.backend.connection_info(&input).map_err(failed)?;
        let text = format!("Run: {}", info.command);
        reply(text, &info)
    }

    /// The regions tunnels can run in; with probe, the measured latency to each.
    #[tool(
        name = "list_regions",
        annotations(
            title = "List regions",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        ),
        output_schema = schema_for_output::<RegionList>()
    )]
    async fn list_regions(&self, Parameters(input): Parameters<RegionsInput>) -> ToolResult {
        let list = self.backend.regions(input.probe).await.map_err(failed)?;
        let ids: Vec<&str> = list.regions.iter().map(|r| r.id.as_str()).collect();
        let text = format!("Regions: {}.", ids.join(", "));
        reply(text, &list)
    }

    /// Past and present tunnels of the account, newest first: start, end, duration, requests,
    /// bytes, region.
    #[tool(
        name = "get_tunnel_history",
        annotations(
            title = "Tunnel history",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        output_schema = schema_for_output::<History>()
    )]
    async fn get_tunnel_history(&self, Parameters(input): Parameters<HistoryInput>) -> ToolResult {
        let history = self.backend.history(input).await.map_err(failed)?;
        let text = format!("{} tunnel(s) in the history.", history.entries.len());
        reply(text, &history)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for WarrenMcp {
    /// Arguments that do not match the tool's input schema are the client's mistake: a JSON-RPC
    /// invalid-params error (-32602), not a tool result. Domain failures stay tool errors.
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        check_arguments(&request.name, request.arguments.as_ref())?;
        let call = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        self.tool_router.call(call).await
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("warren", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Warren exposes local ports at public URLs. create_tunnel returns a live URL; \
                 close_tunnel when done. The API token is configured on the server, never passed \
                 to a tool.",
            )
    }
}
