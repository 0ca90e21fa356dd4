//! `warren regions` (public: no login needed, but the saved control is used): control's list of
//! regions with the latency measured from here (`probe.rs`, every region in parallel).

use super::emit;
use crate::api::{self, Regions};
use crate::config;
use crate::control_client::ControlClient;
use crate::output::Printer;
use crate::probe;
use crate::table::Table;
use serde_json::Value;

pub async fn run(printer: Printer) -> anyhow::Result<()> {
    let (control, token) = match config::current_login() {
        Ok(login) => (login.control, Some(login.token)),
        Err(_) => (
            config::env_var("WARREN_CONTROL").unwrap_or_else(|| config::DEFAULT_CONTROL.into()),
            None,
        ),
    };
    let client = ControlClient::new(&control, token)?;
    let mut value = client.get("/v1/regions").await?;
    let list: Regions = api::decode(value.clone())?;
    let targets: Vec<probe::Target> = list
        .regions
        .iter()
        .map(|r| probe::Target {
            region: r.id.clone(),
            probe_url: r.probe_url.clone(),
        })
        .collect();
    let probes = probe::probe_all(&targets, probe::SAMPLES, probe::SAMPLE_TIMEOUT).await;
    add_latency(&mut value, &probes);
    emit(printer, &value, || {
        let mut table = Table::new(&["id", "name", "location", "domain", "edge", "latency"]);
        for (r, p) in list.regions.iter().zip(&probes) {
            table.row([
                r.id.clone(),
                r.name.clone(),
                r.location.clone(),
                r.domain.clone(),
                r.tunnel_url.clone(),
                probe::latency_label(p),
            ]);
        }
        Ok(table.render())
    })
}

/// Control's JSON, each region with `latency_ms` (null when unreachable), the `probe_method`
/// and the `probe_error` if any, for `--json`.
fn add_latency(value: &mut Value, probes: &[probe::Probe]) {
    let Some(regions) = value.get_mut("regions").and_then(Value::as_array_mut) else {
        return;
    };
    for (region, p) in regions.iter_mut().zip(probes) {
        if let Some(object) = region.as_object_mut() {
            object.insert("latency_ms".into(), p.shown().map(probe::json_ms).into());
            object.insert(
                "probe_method".into(),
                serde_json::to_value(p.method).unwrap_or_default(),
            );
            object.insert("probe_error".into(), p.error.clone().into());
        }
    }
}
