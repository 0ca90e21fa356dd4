//! What the tools do, without MCP: tunnels opened in this process over one session per edge
//! (`agent/dynamic.rs`), and the account's tunnels, regions and history from control.
//!
//! With a login, each tunnel is granted by control (`POST /v1/tunnels`, which picks the edge)
//! and opened with its own grant; with `--edge URL --token T` tunnels go straight to that edge
//! and there is no control to ask for the account's other tunnels, regions or history.
//! Every failure is a [`ToolError`]: a sentence saying what happened and what to do.

use crate::agent::dynamic::{Open, SetError, TunnelSet};
use crate::agent::grant::Grant;
use crate::agent::options::{AgentOptions, LocalTarget};
use crate::api::{self, Regions, TunnelGrant, Tunnels};
use crate::commands::http::{TunnelRequest, open_tunnel};
use crate::commands::{query_value, segment};
use crate::control_client::{ControlClient, ControlError};
use crate::mcp::types::*;
use crate::probe;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use warren_proto::TunnelId;
use warren_proto::control::RejectCode;
use warren_proto::names::Subdomain;

/// A failure the agent can act on: becomes a tool result with `isError`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, ToolError> {
    Err(ToolError(message.into()))
}

/// Where tunnels come from.
// One per server: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Mode {
    /// The saved login (or `WARREN_TOKEN`): control grants each tunnel.
    Control(ControlClient),
    /// `--edge URL` with a static token.
    Edge { url: String, token: String },
    /// No token anywhere: every tool that needs one says how to get one.
    NoToken,
}

/// The server's settings from the command line.
pub struct Settings {
    pub max_tunnels: usize,
    pub allow_non_loopback: bool,
    /// `--region`: used when a call names none (`auto`: control's choice).
    pub region: String,
}

/// A tunnel this server opened.
struct Owned {
    set: Arc<TunnelSet>,
    id: TunnelId,
    created: CreatedTunnel,
    /// The subdomain asked for, if any.
    subdomain: Option<String>,
}

pub struct Backend {
    mode: Mode,
    settings: Settings,
    /// One session (tunnel set) per edge URL.
    sets: tokio::sync::Mutex<HashMap<String, Arc<TunnelSet>>>,
    owned: Mutex<BTreeMap<String, Owned>>,
    next_local: Mutex<u64>,
}

const NO_TOKEN: &str =
    "no API token: run `warren login`, or set WARREN_TOKEN in the MCP server's environment";

impl Backend {
    pub fn new(mode: Mode, settings: Settings) -> Backend {
        Backend {
            mode,
            settings,
            sets: tokio::sync::Mutex::default(),
            owned: Mutex::default(),
            next_local: Mutex::new(1),
        }
    }

    pub async fn create(&self, input: CreateTunnelInput) -> Result<CreatedTunnel, ToolError> {
        if input.protocol != Protocol::Http {
            return fail(format!(
                "{} tunnels are not supported by this Warren yet: use protocol \"http\"",
                input.protocol.as_str()
            ));
        }
        let host = input
            .local_host
            .clone()
            .unwrap_or_else(|| "localhost".into());
        if !self.settings.allow_non_loopback && !is_loopback(&host) {
            return fail(format!(
                "local_host {host:?} is not loopback: this MCP server forwards only to this machine \
                 (localhost, 127.0.0.1, ::1) unless started with --allow-non-loopback"
            ));
        }
        if let Some(name) = &input.subdomain {
            Subdomain::parse(name).map_err(|m| {
                ToolError(format!(
                    "invalid subdomain {name:?}: {m}; pick another name"
                ))
            })?;
        }
        self.reap();
        if let Some(name) = &input.subdomain
            && let Some((id, _)) = lock(&self.owned)
                .iter()
                .find(|(_, o)| o.subdomain.as_deref() == Some(name.as_str()))
        {
            return fail(format!(
                "subdomain {name:?} is already this server's tunnel {id}: pick another one, or close that tunnel first"
            ));
        }
        if lock(&self.owned).len() >= self.settings.max_tunnels {
            return fail(format!(
                "this server already holds {} tunnels (its --max-tunnels limit): close one with close_tunnel first",
                self.settings.max_tunnels
            ));
        }
        let local = LocalTarget {
            host,
            port: input.local_port.get(),
        };
        let host_header = match input.host_header.as_deref() {
            None => None,
            Some(arg) => {
                crate::commands::http::host_header(Some(arg), &local).map_err(ToolError)?
            }
        };
        let (set, open, tunnel_id, region) = match &self.mode {
            Mode::NoToken => return fail(NO_TOKEN),
            Mode::Edge { url, token } => {
                let set = self.set(url, token).await?;
                let mut next = lock(&self.next_local);
                let tunnel_id = format!("local_{}", *next);
                *next += 1;
                let open = Open {
                    local: local.clone(),
                    subdomain: input.subdomain.clone(),
                    host_header,
                    grant: None,
                };
                (set, open, tunnel_id, String::new())
            }
            Mode::Control(client) => {
                let region = input.region.clone().or_else(|| {
                    (self.settings.region != "auto").then(|| self.settings.region.clone())
                });
                let request = TunnelRequest {
                    subdomain: input.subdomain.clone(),
                    random: false,
                    region,
                    domain: None,
                };
                let granted =
                    open_tunnel(client, &request, &local)
                        .await
                        .map_err(|e| match e.downcast_ref::<ControlError>() {
                            Some(e) => control_error("create the tunnel", e),
                            None => ToolError(format!("could not create the tunnel: {e:#}")),
                        })?;
                let set = self.set(&granted.edge_url, "").await?;
                let open = Open {
                    local: local.clone(),
                    subdomain: label(&granted),
                    host_header,
                    grant: Some(Grant {
                        jwt: granted.grant.clone(),
                        expires_at: granted.grant_expires_at,
                    }),
                };
                (set, open, granted.tunnel_id.clone(), granted.region.clone())
            }
        };
        let opened = set.open(open).await.map_err(|e| open_error(&e))?;
        let created = CreatedTunnel {
            tunnel_id: tunnel_id.clone(),
            public_url: opened.public_url.clone(),
            protocol: Protocol::Http,
            region,
            local_addr: opened.local.to_string(),
        };
        lock(&self.owned).insert(
            tunnel_id,
            Owned {
                set,
                id: opened.id,
                created: created.clone(),
                subdomain: input.subdomain.clone(),
            },
        );
        Ok(created)
    }

    pub async fn list(&self) -> Result<TunnelList, ToolError> {
        self.reap();
        let owned: BTreeMap<String, CreatedTunnel> = lock(&self.owned)
            .iter()
            .map(|(id, o)| (id.clone(), o.created.clone()))
            .collect();
        let client = match &self.mode {
            Mode::Control(client) => client,
            Mode::NoToken => return fail(NO_TOKEN),
            Mode::Edge { .. } => {
                let tunnels = owned
                    .into_values()
                    .map(|c| LiveTunnel {
                        tunnel_id: c.tunnel_id,
                        public_url: c.public_url,
                        protocol: "http".into(),
                        region: c.region,
                        owned: true,
                        local_addr: Some(c.local_addr),
                        started_at: None,
                        requests: None,
                        bytes_in: None,
                        bytes_out: None,
                    })
                    .collect();
                return Ok(TunnelList { tunnels });
            }
        };
        let value = client
            .get("/v1/tunnels")
            .await
            .map_err(|e| control_error("list the tunnels", &e))?;
        let list: Tunnels = api::decode(value).map_err(|e| ToolError(e.to_string()))?;
        let tunnels = list
            .tunnels
            .into_iter()
            .map(|t| LiveTunnel {
                owned: owned.contains_key(&t.id),
                local_addr: owned.get(&t.id).map(|c| c.local_addr.clone()),
                tunnel_id: t.id,
                public_url: t.public_url,
                protocol: t.protocol,
                region: t.region,
                started_at: t.started_at,
                requests: Some(t.requests),
                bytes_in: Some(t.bytes_in),
                bytes_out: Some(t.bytes_out),
            })
            .collect();
        Ok(TunnelList { tunnels })
    }

    pub async fn close(&self, tunnel_id: &str) -> Result<ClosedTunnel, ToolError> {
        self.reap();
        let owned = lock(&self.owned).remove(tunnel_id);
        if let Some(owned) = owned {
            return match owned.set.close(owned.id).await {
                Ok(()) => Ok(ClosedTunnel {
                    tunnel_id: tunnel_id.to_string(),
                    public_url: owned.created.public_url,
                    closed_by: "this MCP server's session".into(),
                }),
                Err(SetError::Refused {
                    code: RejectCode::UnknownTunnel,
                    ..
                }) => fail(format!("tunnel {tunnel_id} had already ended")),
                Err(e) => fail(format!("could not close tunnel {tunnel_id}: {e}")),
            };
        }
        let Mode::Control(client) = &self.mode else {
            return fail(format!(
                "unknown tunnel id {tunnel_id:?}: list_tunnels shows the tunnels this server can close"
            ));
        };
        match client
            .delete(&format!("/v1/tunnels/{}", segment(tunnel_id)))
            .await
        {
            Ok(value) => {
                let closed: api::Tunnel = api::decode(value).unwrap_or_default();
                Ok(ClosedTunnel {
                    tunnel_id: tunnel_id.to_string(),
                    public_url: closed.public_url,
                    closed_by: "control (its agent is told to stop)".into(),
                })
            }
            Err(e) if matches!(e.status(), Some(404 | 400)) => fail(format!(
                "unknown tunnel id {tunnel_id:?}: list_tunnels shows the account's live tunnels"
            )),
            Err(e) => Err(control_error("close the tunnel", &e)),
        }
    }

    pub async fn regions(&self, probe: bool) -> Result<RegionList, ToolError> {
        let client = self.control("list regions")?;
        let value = client
            .get("/v1/regions")
            .await
            .map_err(|e| control_error("list the regions", &e))?;
        let list: Regions = api::decode(value).map_err(|e| ToolError(e.to_string()))?;
        let probes = if probe {
            let targets: Vec<probe::Target> = list
                .regions
                .iter()
                .map(|r| probe::Target {
                    region: r.id.clone(),
                    probe_url: r.probe_url.clone(),
                })
                .collect();
            probe::probe_all(&targets, probe::SAMPLES, probe::SAMPLE_TIMEOUT).await
        } else {
            Vec::new()
        };
        let regions = list
            .regions
            .into_iter()
            .map(|r| {
                let latency_ms = probes
                    .iter()
                    .find(|p| p.region == r.id)
                    .and_then(probe::Probe::shown)
                    .map(probe::json_ms);
                Region {
                    id: r.id,
                    name: r.name,
                    location: r.location,
                    latency_ms,
                }
            })
            .collect();
        Ok(RegionList { regions })
    }

    pub async fn history(&self, input: HistoryInput) -> Result<History, ToolError> {
        let client = self.control("read tunnel history")?;
        let since = match &input.since {
            Some(since) => Some(parse_rfc3339(since).ok_or_else(|| {
                ToolError(format!(
                    "since {since:?} is not an RFC 3339 time such as 2026-12-07T13:00:00Z"
                ))
            })?),
            None => None,
        };
        let mut path = format!("/v1/tunnels/history?limit={}", input.limit);
        if let Some(protocol) = &input.protocol {
            path.push_str(&format!("&protocol={}", query_value(protocol.as_str())));
        }
        let value = client
            .get(&path)
            .await
            .map_err(|e| control_error("read the history", &e))?;
        let page: Tunnels = api::decode(value).map_err(|e| ToolError(e.to_string()))?;
        let entries = page
            .tunnels
            .into_iter()
            .filter(|t| {
                let created = parse_rfc3339(&t.created_at).unwrap_or(0);
                since.is_none_or(|since| created >= since)
            })
            .map(|t| {
                let start = t.started_at.as_deref().and_then(parse_rfc3339);
                let end = t.ended_at.as_deref().and_then(parse_rfc3339);
                HistoryEntry {
                    duration_s: start.zip(end).map(|(s, e)| e.saturating_sub(s)),
                    tunnel_id: t.id,
                    public_url: t.public_url,
                    protocol: t.protocol,
                    region: t.region,
                    state: t.state,
                    start: t.started_at,
                    end: t.ended_at,
                    requests: t.requests,
                    bytes_in: t.bytes_in,
                    bytes_out: t.bytes_out,
                    close_reason: t.close_reason,
                }
            })
            .collect();
        Ok(History { entries })
    }

    /// The command and `warren start` entry for the same tunnel, without any token.
    pub fn connection_info(
        &self,
        input: &ConnectionInfoInput,
    ) -> Result<ConnectionInfo, ToolError> {
        if input.protocol != Protocol::Http {
            return fail(format!(
                "{} tunnels are not supported by this Warren yet: use protocol \"http\"",
                input.protocol.as_str()
            ));
        }
        if let Some(name) = &input.subdomain {
            Subdomain::parse(name).map_err(|m| {
                ToolError(format!(
                    "invalid subdomain {name:?}: {m}; pick another name"
                ))
            })?;
        }
        if let Some(region) = &input.region
            && (region.is_empty()
                || region.len() > 63
                || !region
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return fail(format!(
                "invalid region {region:?}: list_regions shows the ids"
            ));
        }
        let port = input.local_port.get();
        let mut command = format!("warren http {port}");
        let mut entry = format!("[[tunnels]]\nprotocol = \"http\"\nlocal_port = {port}\n");
        if let Some(name) = &input.subdomain {
            command.push_str(&format!(" --subdomain {name}"));
            entry.push_str(&format!("subdomain = \"{name}\"\n"));
        }
        let setup = match &self.mode {
            Mode::Edge { url, .. } => {
                command.push_str(&format!(" --edge {url}"));
                entry.push_str(&format!("edge = \"{url}\"\n"));
                "set WARREN_TOKEN to the edge's token first (it is never put on the command line)"
                    .to_string()
            }
            _ => {
                if let Some(region) = &input.region {
                    command.push_str(&format!(" --region {region}"));
                    entry.push_str(&format!("region = \"{region}\"\n"));
                }
                "log in once with `warren login --control URL` (or set WARREN_TOKEN); the token is never put on the command line"
                    .to_string()
            }
        };
        Ok(ConnectionInfo {
            command,
            config_entry: entry,
            setup,
        })
    }

    /// Closes every tunnel this server holds (the sessions end with GOAWAY).
    pub async fn shutdown(&self) {
        let sets: Vec<Arc<TunnelSet>> = self.sets.lock().await.values().cloned().collect();
        for set in sets {
            set.shutdown().await;
        }
    }

    fn control(&self, what: &str) -> Result<&ControlClient, ToolError> {
        match &self.mode {
            Mode::Control(client) => Ok(client),
            Mode::NoToken => fail(NO_TOKEN),
            Mode::Edge { .. } => fail(format!(
                "cannot {what} with --edge: that needs control (start `warren mcp` after `warren login`)"
            )),
        }
    }

    async fn set(&self, edge: &str, token: &str) -> Result<Arc<TunnelSet>, ToolError> {
        let mut sets = self.sets.lock().await;
        if let Some(set) = sets.get(edge) {
            return Ok(set.clone());
        }
        let options = AgentOptions::dynamic(edge, token.to_string())
            .map_err(|e| ToolError(format!("cannot use the edge {edge:?}: {e}")))?;
        let set = Arc::new(TunnelSet::new(options));
        sets.insert(edge.to_string(), set.clone());
        Ok(set)
    }

    /// Forgets owned tunnels that ended without close_tunnel (closed through control, taken
    /// over, or their session was lost).
    fn reap(&self) {
        let mut owned = lock(&self.owned);
        let sets: Vec<Arc<TunnelSet>> = owned.values().map(|o| o.set.clone()).collect();
        for set in sets {
            for (ended, reason) in set.take_ended() {
                owned.retain(|_, o| !(Arc::ptr_eq(&o.set, &set) && o.id == ended.id));
                tracing::info!(url = %ended.public_url, %reason, "tunnel ended");
            }
        }
    }
}

/// The subdomain to ask the edge for: the label control granted (none for a custom domain).
fn label(granted: &TunnelGrant) -> Option<String> {
    if granted.custom_domain {
        return None;
    }
    granted.hostname.split('.').next().map(str::to_string)
}

fn open_error(error: &SetError) -> ToolError {
    ToolError(match error {
        SetError::Refused {
            code: RejectCode::SubdomainTaken,
            message,
        } => format!("{message} (the subdomain is taken: pick another one)"),
        SetError::Refused {
            code: RejectCode::SubdomainInvalid,
            message,
        } => format!("invalid subdomain: {message}"),
        other => format!("the edge did not open the tunnel: {other}"),
    })
}

fn control_error(what: &str, error: &ControlError) -> ToolError {
    ToolError(match error.status() {
        Some(401) => format!(
            "control refused the API token ({error}): run `warren login` again or set WARREN_TOKEN"
        ),
        Some(409) => {
            format!("could not {what}: {error} (the subdomain is taken: pick another one)")
        }
        Some(400 | 422) => format!("could not {what}: {error}"),
        _ => format!("could not {what}: {error}"),
    })
}

pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2026-12-07T13:00:00Z`, fractions and
/// offsets allowed).
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes.len() > 40 || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let h: i64 = rest[1..3].parse().ok()?;
            let m: i64 = rest[4..6].parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    // Howard Hinnant's days-from-civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(secs).ok()
}

// Updated by single inserts and removes, so a panic elsewhere cannot leave it half-changed.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_to_unix_seconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-12-07T13:56:44.123Z"),
            Some(1_796_651_804)
        );
        assert_eq!(
            parse_rfc3339("2026-12-07T14:56:44+01:00"),
            Some(1_796_651_804)
        );
        assert_eq!(parse_rfc3339("2026-13-07T13:56:44Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn only_loopback_hosts_are_loopback() {
        for host in ["localhost", "127.0.0.1", "::1", "[::1]", "127.1.2.3"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["192.168.1.5", "example.com", "0.0.0.0"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
