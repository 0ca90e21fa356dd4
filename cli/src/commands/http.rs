//! `warren http PORT`: with a login, control grants the tunnel (`POST /v1/tunnels`) and the
//! agent presents the grant to the edge control names; a background task renews the grant at
//! about half its lifetime, so reconnects always present a fresh one. With `--edge URL --token
//! T` the agent talks to a stand-alone edge with a static token, no control involved.
//!
//! The region: `--region auto` (the default) times every region's probe URL (`probe.rs`) and
//! asks for the fastest; `--region ID` forces one. The grant names the region and the edge, so
//! reconnects stay in it.

use super::segment;
use crate::agent::backoff::Backoff;
use crate::agent::grant::{self, Grant, GrantSender, unix_now};
use crate::agent::options::parse_local;
use crate::agent::{self, AgentEvent, AgentOptions, LocalTarget, TunnelSpec};
use crate::api::{self, Regions, TunnelGrant};
use crate::args::HttpArgs;
use crate::config;
use crate::control_client::ControlClient;
use crate::output::{EventPrinter, Printer};
use crate::probe;
use crate::signals;
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use warren_proto::control::MAX_HOST_HEADER_LEN;
use warren_proto::names::{CustomDomain, Subdomain};

/// `--host-header`: `rewrite` becomes the local address (`localhost:3000`), anything else is
/// sent as given once checked (visible ASCII, at most [`MAX_HOST_HEADER_LEN`] bytes).
pub fn host_header(arg: Option<&str>, local: &LocalTarget) -> Result<Option<String>, String> {
    let value = match arg {
        None => return Ok(None),
        Some("rewrite") => local.to_string(),
        Some(value) => value.to_string(),
    };
    if value.is_empty()
        || value.len() > MAX_HOST_HEADER_LEN
        || !value.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(format!(
            "--host-header {value:?}: give `rewrite` or 1 to {MAX_HOST_HEADER_LEN} visible ASCII characters, such as localhost:3000"
        ));
    }
    Ok(Some(value))
}

pub async fn run(mut args: HttpArgs, printer: Printer) -> anyhow::Result<()> {
    if let Some(path) = &args.token_file {
        args.token = Some(crate::config::read_token_file(path)?);
    }
    // What is wrong on the command line itself comes first, before any network call and even
    // when no token is configured yet.
    let local = parse_local(&args.port, &args.local_host).map_err(anyhow::Error::msg)?;
    if let Some(name) = &args.subdomain {
        Subdomain::parse(name)?;
    }
    if let Some(domain) = &args.domain {
        CustomDomain::parse(domain)?;
    }
    host_header(args.host_header.as_deref(), &local).map_err(anyhow::Error::msg)?;
    match args.edge.clone() {
        Some(edge) => standalone(&edge, args, local, printer).await,
        None => granted(args, local, printer).await,
    }
}

/// `--edge URL --token T`: straight to a stand-alone edge with a static token.
async fn standalone(
    edge: &str,
    args: HttpArgs,
    local: LocalTarget,
    printer: Printer,
) -> anyhow::Result<()> {
    let mut options = AgentOptions::new(
        edge,
        args.token.unwrap_or_default(),
        vec![TunnelSpec {
            host_header: host_header(args.host_header.as_deref(), &local)
                .map_err(anyhow::Error::msg)?,
            local,
            subdomain: args.subdomain,
        }],
    )
    .map_err(anyhow::Error::msg)?;
    options.request_log = !args.quiet;
    options.sessions = usize::from(args.sessions);
    if options.token.is_empty() {
        anyhow::bail!(
            "no token: pass --token-file, set WARREN_TOKEN or pass --token (`warren dev` prints one)"
        );
    }
    let shutdown = CancellationToken::new();
    signals::on_interrupt(shutdown.clone());
    crate::run_agent(options, printer, shutdown)
        .await
        .map_err(anyhow::Error::new)
}

/// The tunnel as control granted it.
async fn granted(args: HttpArgs, local: LocalTarget, printer: Printer) -> anyhow::Result<()> {
    let login = config::current_login_with(args.token.clone()).map_err(|_| {
        anyhow::anyhow!(
            "not logged in: run `warren login --control URL`, or pass --edge URL --token TOKEN for a stand-alone edge"
        )
    })?;
    let client = ControlClient::new(&login.control, Some(login.token))?;
    let shutdown = CancellationToken::new();
    signals::on_interrupt(shutdown.clone());
    // A custom domain's CNAME points at its region: run there unless told otherwise.
    let region = if args.domain.is_some() && args.region == "auto" {
        None
    } else {
        choose_region(&client, &args.region, printer).await?
    };
    let request = TunnelRequest {
        subdomain: args.subdomain,
        random: args.random,
        region,
        domain: args.domain,
    };
    let first = open_tunnel(&client, &request, &local).await?;
    let tuning = Tuning {
        quiet: args.quiet,
        sessions: usize::from(args.sessions),
        host_header: host_header(args.host_header.as_deref(), &local)
            .map_err(anyhow::Error::msg)?,
    };
    run_granted(client, first, local, printer, shutdown, tuning).await
}

/// The region to ask control for: `requested` checked against control's list, or with `auto`
/// the fastest region by probe (`None`, control's default, when there is nothing to choose).
pub async fn choose_region(
    client: &ControlClient,
    requested: &str,
    printer: Printer,
) -> anyhow::Result<Option<String>> {
    let list: Regions = api::decode(client.get("/v1/regions").await?)?;
    let ids: Vec<&str> = list.regions.iter().map(|r| r.id.as_str()).collect();
    if requested != "auto" {
        if ids.contains(&requested) || ids.is_empty() {
            return Ok(Some(requested.to_string()));
        }
        anyhow::bail!(
            "there is no region {requested:?}: use one of {} (or auto for the fastest); `warren regions` lists them",
            ids.join(", ")
        );
    }
    if list.regions.len() < 2 {
        return Ok(None);
    }
    let targets: Vec<probe::Target> = list
        .regions
        .iter()
        .map(|r| probe::Target {
            region: r.id.clone(),
            probe_url: r.probe_url.clone(),
        })
        .collect();
    let probes = probe::probe_all(&targets, probe::SAMPLES, probe::SAMPLE_TIMEOUT).await;
    let chosen = probe::choose(&probes);
    if printer.json {
        printer.json_line(&json!({
            "event": "region_probe",
            "regions": probe::to_json(&probes),
            "chosen": chosen.as_ref().ok(),
        }));
    } else {
        eprintln!("{}", probe::summary_line(&probes, chosen.as_deref().ok()));
    }
    chosen.map(Some).map_err(anyhow::Error::msg)
}

/// What to ask control for.
#[derive(Debug, Clone, Default)]
pub struct TunnelRequest {
    pub subdomain: Option<String>,
    pub random: bool,
    pub region: Option<String>,
    /// A verified custom domain instead of a subdomain.
    pub domain: Option<String>,
}

/// `POST /v1/tunnels`.
pub async fn open_tunnel(
    client: &ControlClient,
    args: &TunnelRequest,
    local: &LocalTarget,
) -> anyhow::Result<TunnelGrant> {
    let mut body = Map::new();
    body.insert("protocol".into(), json!("http"));
    body.insert("local_addr".into(), json!(local.to_string()));
    if let Some(name) = &args.subdomain {
        body.insert("subdomain".into(), json!(name));
    }
    if args.random {
        body.insert("random".into(), json!(true));
    }
    if let Some(region) = &args.region {
        body.insert("region".into(), json!(region));
    }
    if let Some(domain) = &args.domain {
        body.insert("domain".into(), json!(domain));
    }
    let value = client.post("/v1/tunnels", &Value::Object(body)).await?;
    api::decode(value)
}

/// How the agent of a granted tunnel runs.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// No line per request (`--quiet`).
    pub quiet: bool,
    /// Sessions to the edge (`--sessions`).
    pub sessions: usize,
    /// The `Host` the local service gets (`--host-header`, resolved).
    pub host_header: Option<String>,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            quiet: false,
            sessions: 1,
            host_header: None,
        }
    }
}

/// Runs the agent on a granted tunnel, renewing the grant until the agent stops or control
/// says the tunnel was closed.
pub async fn run_granted(
    client: ControlClient,
    first: TunnelGrant,
    local: LocalTarget,
    printer: Printer,
    shutdown: CancellationToken,
    tuning: Tuning,
) -> anyhow::Result<()> {
    let label = first
        .hostname
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(
        !label.is_empty() && !first.grant.is_empty(),
        "control granted a tunnel without a hostname or grant: is control up to date?"
    );
    // A custom domain is not `NAME.<edge domain>`: the edge takes the grant's hostname.
    let subdomain = (!first.custom_domain).then_some(label);
    let mut options = AgentOptions::new(
        &first.edge_url,
        String::new(),
        vec![TunnelSpec {
            local,
            subdomain,
            host_header: tuning.host_header.clone(),
        }],
    )
    .map_err(|e| anyhow::anyhow!("control named an edge this warren cannot use: {e}"))?;
    let (sender, receiver) = grant::channel(Grant {
        jwt: first.grant.clone(),
        expires_at: first.grant_expires_at,
    });
    options.grant = Some(receiver);
    options.request_log = !tuning.quiet;
    options.sessions = tuning.sessions;
    announce(printer, &first);

    let (events, printing) = EventPrinter::spawn(printer);
    let closed = Arc::new(Mutex::new(None::<String>));
    let renewing = tokio::spawn(renew(
        client,
        first.tunnel_id.clone(),
        sender,
        events.clone(),
        shutdown.clone(),
        closed.clone(),
    ));
    let result = agent::run(options, events, shutdown.clone()).await;
    shutdown.cancel();
    let _ = renewing.await;
    printing.finish().await;
    let closed = closed.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(reason) = closed {
        return Err(agent::AgentError::Closed(reason).into());
    }
    result.map_err(anyhow::Error::new)
}

fn announce(printer: Printer, granted: &TunnelGrant) {
    if printer.json {
        printer.json_line(&json!({
            "event": "tunnel_granted",
            "tunnel_id": granted.tunnel_id,
            "hostname": granted.hostname,
            "public_url": granted.public_url,
            "region": granted.region,
            "edge_url": granted.edge_url,
            "grant_expires_at": granted.grant_expires_at,
        }));
    } else {
        eprintln!(
            "Tunnel {} in region {} (close it with `warren tunnels close {}`)",
            granted.tunnel_id, granted.region, granted.tunnel_id
        );
    }
}

/// Renews the grant at about half its remaining lifetime. Control being down is retried with
/// backoff (the current grant keeps working meanwhile); 410 or 404 means the tunnel is gone:
/// `closed` gets the reason and the agent is stopped.
async fn renew(
    client: ControlClient,
    tunnel_id: String,
    sender: GrantSender,
    events: UnboundedSender<AgentEvent>,
    shutdown: CancellationToken,
    closed: Arc<Mutex<Option<String>>>,
) {
    let backoff = Backoff {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(30),
    };
    let path = format!("/v1/tunnels/{}/grant", segment(&tunnel_id));
    loop {
        let wait = renew_after(&sender.borrow());
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let mut attempt: u32 = 0;
        loop {
            let failure = match client.post(&path, &json!({})).await {
                Ok(value) => match api::decode::<TunnelGrant>(value) {
                    Ok(renewed) if !renewed.grant.is_empty() => {
                        sender.send_replace(Grant {
                            jwt: renewed.grant,
                            expires_at: renewed.grant_expires_at,
                        });
                        let _ = events.send(AgentEvent::GrantRenewed {
                            expires_at: renewed.grant_expires_at,
                        });
                        if attempt > 0 {
                            let _ = events.send(AgentEvent::Notice {
                                message: "renewed the tunnel's grant".into(),
                            });
                        }
                        break;
                    }
                    Ok(_) => "control sent no grant".to_string(),
                    Err(e) => e.to_string(),
                },
                Err(e) if matches!(e.status(), Some(404 | 410)) => {
                    *closed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    shutdown.cancel();
                    return;
                }
                Err(e) => e.to_string(),
            };
            attempt = attempt.saturating_add(1);
            let delay = backoff.delay(attempt);
            if attempt == 1 || attempt.is_multiple_of(10) {
                let expires_at = sender.borrow().expires_at;
                let left = expires_at.saturating_sub(unix_now());
                let _ = events.send(AgentEvent::Error {
                    message: format!(
                        "cannot renew the tunnel's grant ({failure}); retrying, the current grant works for {left} s more"
                    ),
                    fatal: false,
                });
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// Half the grant's remaining lifetime, at least a second.
fn renew_after(grant: &Grant) -> Duration {
    let left = grant.expires_at.saturating_sub(unix_now());
    Duration::from_millis(left.saturating_mul(500)).max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_rewrite_names_the_local_address_and_values_are_checked() {
        let local = LocalTarget {
            host: "localhost".into(),
            port: 8000,
        };
        assert_eq!(host_header(None, &local), Ok(None));
        assert_eq!(
            host_header(Some("rewrite"), &local),
            Ok(Some("localhost:8000".into()))
        );
        assert_eq!(
            host_header(Some("api.internal"), &local),
            Ok(Some("api.internal".into()))
        );
        for bad in ["", "two words", &"x".repeat(256)] {
            assert!(host_header(Some(bad), &local).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn renewal_comes_at_half_the_lifetime() {
        let grant = |left: u64| Grant {
            jwt: String::new(),
            expires_at: unix_now() + left,
        };
        let at = renew_after(&grant(3600));
        assert!(
            at <= Duration::from_secs(1800) && at >= Duration::from_secs(1799),
            "{at:?}"
        );
        assert_eq!(renew_after(&grant(0)), Duration::from_secs(1));
    }
}
