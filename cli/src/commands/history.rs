//! `warren history`: past and present tunnels, newest first, a page at a time.

use super::{emit, logged_in, query_value};
use crate::api::{self, Tunnels};
use crate::args::HistoryArgs;
use crate::output::{Printer, format_bytes};
use crate::table::{Table, or_dash, short_time};

pub async fn run(args: HistoryArgs, printer: Printer) -> anyhow::Result<()> {
    let client = logged_in()?;
    let value = client.get(&path(&args)).await?;
    emit(printer, &value, || {
        let page: Tunnels = api::decode(value.clone())?;
        if page.tunnels.is_empty() {
            return Ok("No tunnels yet.\n".into());
        }
        let mut table = Table::new(&[
            "id", "url", "region", "state", "started", "ended", "requests", "in", "out", "reason",
        ]);
        for t in &page.tunnels {
            table.row([
                t.id.clone(),
                t.public_url.clone(),
                t.region.clone(),
                t.state.clone(),
                short_time(t.started_at.as_deref()),
                short_time(t.ended_at.as_deref()),
                t.requests.to_string(),
                format_bytes(t.bytes_in),
                format_bytes(t.bytes_out),
                or_dash(t.close_reason.as_deref()),
            ]);
        }
        let mut text = table.render();
        if let Some(cursor) = page.next_cursor.filter(|c| !c.is_empty()) {
            text.push_str(&format!("More: warren history --cursor {cursor}\n"));
        }
        Ok(text)
    })
}

fn path(args: &HistoryArgs) -> String {
    let mut query = Vec::new();
    if let Some(p) = &args.protocol {
        query.push(format!("protocol={}", query_value(p)));
    }
    if let Some(r) = &args.region {
        query.push(format!("region={}", query_value(r)));
    }
    if let Some(l) = args.limit {
        query.push(format!("limit={l}"));
    }
    if let Some(c) = &args.cursor {
        query.push(format!("cursor={}", query_value(c)));
    }
    if query.is_empty() {
        "/v1/tunnels/history".into()
    } else {
        format!("/v1/tunnels/history?{}", query.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_carries_the_filters() {
        let args = HistoryArgs {
            protocol: Some("http".into()),
            region: None,
            limit: Some(5),
            cursor: Some("a b".into()),
        };
        assert_eq!(
            path(&args),
            "/v1/tunnels/history?protocol=http&limit=5&cursor=a%20b"
        );
    }
}
