//! `warren tokens list|create|revoke`.

use super::{emit, logged_in, segment};
use crate::api::{self, CreatedToken, Tokens};
use crate::args::TokensCommand;
use crate::output::Printer;
use crate::table::{Table, or_dash, short_time};
use serde_json::{Map, Value, json};

pub async fn run(command: TokensCommand, printer: Printer) -> anyhow::Result<()> {
    let client = logged_in()?;
    match command {
        TokensCommand::List => {
            let value = client.get("/v1/tokens").await?;
            emit(printer, &value, || {
                let list: Tokens = api::decode(value.clone())?;
                let mut table =
                    Table::new(&["id", "name", "scopes", "created", "expires", "last used"]);
                for t in &list.tokens {
                    table.row([
                        t.id.clone(),
                        or_dash(t.name.as_deref()),
                        t.scopes.join(","),
                        short_time(Some(&t.created_at)),
                        short_time(t.expires_at.as_deref()),
                        short_time(t.last_used_at.as_deref()),
                    ]);
                }
                Ok(table.render())
            })
        }
        TokensCommand::Create {
            name,
            scopes,
            expires_in,
        } => {
            let mut body = Map::new();
            if let Some(name) = name {
                body.insert("name".into(), Value::String(name));
            }
            if !scopes.is_empty() {
                let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
                body.insert("scopes".into(), json!(scopes));
            }
            if let Some(secs) = expires_in {
                body.insert("expires_in_secs".into(), json!(secs));
            }
            let value = client.post("/v1/tokens", &Value::Object(body)).await?;
            emit(printer, &value, || {
                let created: CreatedToken = api::decode(value.clone())?;
                let expires = match created.expires_at.as_deref() {
                    Some(at) => short_time(Some(at)),
                    None => "never".to_string(),
                };
                Ok(format!(
                    "Created token {} (scopes {}, expires {expires}). It is shown only this once:\n{}\n",
                    created.id,
                    created.scopes.join(","),
                    created.token
                ))
            })
        }
        TokensCommand::Revoke { id } => {
            client
                .delete(&format!("/v1/tokens/{}", segment(&id)))
                .await?;
            emit(printer, &json!({ "id": id, "revoked": true }), || {
                Ok(format!("Revoked token {id}.\n"))
            })
        }
    }
}
