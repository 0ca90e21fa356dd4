//! `warren regions` (public: no login needed, but the saved control is used).

use super::emit;
use crate::api::{self, Regions};
use crate::config;
use crate::control_client::ControlClient;
use crate::output::Printer;
use crate::table::Table;

pub async fn run(printer: Printer) -> anyhow::Result<()> {
    let (control, token) = match config::current_login() {
        Ok(login) => (login.control, Some(login.token)),
        Err(_) => (
            config::env_var("WARREN_CONTROL").unwrap_or_else(|| config::DEFAULT_CONTROL.into()),
            None,
        ),
    };
    let client = ControlClient::new(&control, token)?;
    let value = client.get("/v1/regions").await?;
    emit(printer, &value, || {
        let list: Regions = api::decode(value.clone())?;
        let mut table = Table::new(&["id", "name", "location", "domain", "edge"]);
        for r in &list.regions {
            table.row([
                r.id.clone(),
                r.name.clone(),
                r.location.clone(),
                r.domain.clone(),
                r.tunnel_url.clone(),
            ]);
        }
        Ok(table.render())
    })
}
