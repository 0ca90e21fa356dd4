//! `warren tunnels [list|close ID]`.

use super::{emit, logged_in, segment};
use crate::api::{self, Tunnel, Tunnels};
use crate::args::TunnelsCommand;
use crate::output::{Printer, format_bytes};
use crate::table::{Table, or_dash, short_time};

pub async fn run(command: Option<TunnelsCommand>, printer: Printer) -> anyhow::Result<()> {
    let client = logged_in()?;
    match command.unwrap_or(TunnelsCommand::List) {
        TunnelsCommand::List => {
            let value = client.get("/v1/tunnels").await?;
            emit(printer, &value, || {
                let list: Tunnels = api::decode(value.clone())?;
                if list.tunnels.is_empty() {
                    return Ok("No live tunnels: start one with `warren http PORT`.\n".into());
                }
                let mut table = Table::new(&[
                    "id", "url", "region", "agent", "since", "requests", "in", "out",
                ]);
                for t in &list.tunnels {
                    table.row([
                        t.id.clone(),
                        t.public_url.clone(),
                        t.region.clone(),
                        or_dash(t.agent_addr.as_deref()),
                        short_time(t.started_at.as_deref().or(Some(&t.created_at))),
                        t.requests.to_string(),
                        format_bytes(t.bytes_in),
                        format_bytes(t.bytes_out),
                    ]);
                }
                Ok(table.render())
            })
        }
        TunnelsCommand::Close { id } => {
            let value = client
                .delete(&format!("/v1/tunnels/{}", segment(&id)))
                .await?;
            emit(printer, &value, || {
                let closed: Tunnel = api::decode(value.clone()).unwrap_or_default();
                let url = if closed.public_url.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", closed.public_url)
                };
                Ok(format!(
                    "Closed tunnel {id}{url}: its agent is being disconnected.\n"
                ))
            })
        }
    }
}
