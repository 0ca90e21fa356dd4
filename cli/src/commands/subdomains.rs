//! `warren subdomains list|claim|release`.

use super::{emit, logged_in, segment};
use crate::api::{self, Subdomain, Subdomains};
use crate::args::SubdomainsCommand;
use crate::output::Printer;
use crate::table::{Table, short_time};
use serde_json::json;

pub async fn run(command: SubdomainsCommand, printer: Printer) -> anyhow::Result<()> {
    let client = logged_in()?;
    match command {
        SubdomainsCommand::List => {
            let value = client.get("/v1/subdomains").await?;
            emit(printer, &value, || {
                let list: Subdomains = api::decode(value.clone())?;
                if list.subdomains.is_empty() {
                    return Ok(
                        "No claimed subdomains: claim one with `warren subdomains claim NAME`.\n"
                            .into(),
                    );
                }
                let mut table = Table::new(&["name", "claimed", "how"]);
                for s in &list.subdomains {
                    let how = if s.stable { "stable name" } else { "claimed" };
                    table.row([
                        s.name.clone(),
                        short_time(Some(&s.created_at)),
                        how.to_string(),
                    ]);
                }
                Ok(table.render())
            })
        }
        SubdomainsCommand::Claim { name } => {
            let value = client
                .post("/v1/subdomains", &json!({ "name": name }))
                .await?;
            emit(printer, &value, || {
                let claimed: Subdomain = api::decode(value.clone())?;
                Ok(format!(
                    "Claimed {}: `warren http PORT --subdomain {}` serves it.\n",
                    claimed.name, claimed.name
                ))
            })
        }
        SubdomainsCommand::Release { name } => {
            client
                .delete(&format!("/v1/subdomains/{}", segment(&name)))
                .await?;
            emit(printer, &json!({ "name": name, "released": true }), || {
                Ok(format!(
                    "Released {name}: any tunnel of this account serving it was closed.\n"
                ))
            })
        }
    }
}
