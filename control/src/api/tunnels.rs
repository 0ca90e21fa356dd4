//! `/v1/tunnels`: open a tunnel (a history row and a signed grant), renew its grant, list
//! live tunnels, close one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warren_proto::control::TunnelProtocol;
use warren_proto::grant::{GRANT_AUDIENCE, GRANT_ISSUER, GrantClaims};
use warren_proto::names::Subdomain;
use warren_proto::report::CloseTunnel;

use super::domains::parse_hostname;
use super::extract::ApiJson;
use super::subdomains::{ClaimKind, claim_name, ensure_not_served_by_other, taken};
use super::view::Tunnel;
use crate::auth::{Caller, Scope};
use crate::config::RegionConfig;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;
use crate::store::domains::DomainRow;
use crate::store::tunnels::TunnelRow;
use crate::store::{now_ms, random_hex};

/// A live tunnel's edge must have reported within this many milliseconds.
pub const LIVE_EDGE_WINDOW_MS: i64 = 30_000;

/// The protocols a tunnel can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTunnel {
    pub protocol: Protocol,
    /// The name to serve; claimed for the account on first use. Takes precedence over `random`.
    #[schema(
        min_length = 3,
        max_length = 63,
        pattern = r"^[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]$"
    )]
    pub subdomain: Option<String>,
    /// A random name instead of the stable default (ignored when `subdomain` is given).
    #[serde(default)]
    pub random: bool,
    /// A verified custom domain of the account to serve instead of a subdomain (see
    /// `/v1/domains`); the tunnel runs in the domain's region unless `region` says otherwise.
    #[schema(max_length = 253, example = "app.example.com")]
    pub domain: Option<String>,
    /// A region id; `auto` or omitted = the default region.
    pub region: Option<String>,
    /// Where the agent forwards to; seeds the stable default name.
    #[schema(max_length = 255)]
    pub local_addr: Option<String>,
}

/// A tunnel's grant and where to use it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TunnelGrant {
    pub tunnel_id: String,
    pub hostname: String,
    pub public_url: String,
    pub region: String,
    /// Where the agent connects (the region's tunnel URL).
    pub edge_url: String,
    /// The signed grant (JWT, EdDSA); send it in HELLO.
    pub grant: String,
    /// Unix seconds.
    pub grant_expires_at: u64,
    /// `hostname` is a custom domain of the account (not a name under the region's domain):
    /// the agent asks the edge for the grant's hostname instead of a subdomain.
    pub custom_domain: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TunnelList {
    pub tunnels: Vec<Tunnel>,
}

#[utoipa::path(post, path = "/v1/tunnels", tag = "tunnels", security(("bearer" = [])),
    request_body = NewTunnel,
    responses(
        (status = 201, description = "Tunnel recorded; here is its grant", body = TunnelGrant),
        (status = 403, description = "The token lacks the tunnel scope, or the custom domain is not verified yet", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is claimed by another account", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown region, or the account has no such custom domain", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or reserved name, or both subdomain and domain", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_tunnel(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewTunnel>,
) -> ApiResult<(StatusCode, Json<TunnelGrant>)> {
    caller.require(Scope::Tunnel, "opening tunnels")?;
    let local_addr = body.local_addr.unwrap_or_default();
    if local_addr.len() > 255 {
        return Err(ApiError::Unprocessable(
            "local_addr must be at most 255 characters".into(),
        ));
    }
    let (region, hostname) = match body.domain.as_deref() {
        Some(domain) => {
            if body.subdomain.is_some() {
                return Err(ApiError::Unprocessable(
                    "give either subdomain or domain, not both".into(),
                ));
            }
            let domain = usable_domain(&state, &caller, domain).await?;
            // A custom domain's tunnels run in its region unless another is asked for.
            let region = region_or_404(&state, body.region.as_deref().or(Some(&domain.region)))?;
            (region, domain.hostname)
        }
        None => {
            let region = region_or_404(&state, body.region.as_deref())?;
            let name = pick_name(
                &state,
                &caller,
                body.subdomain.as_deref(),
                body.random,
                &local_addr,
            )
            .await?;
            (region, format!("{name}.{}", region.domain))
        }
    };
    let row = TunnelRow {
        id: format!("tun_{}", random_hex(8)),
        account_id: caller.account.id.clone(),
        token_id: caller.token.id.clone(),
        protocol: "http".into(),
        hostname,
        region: region.id.clone(),
        edge_id: None,
        session_id: None,
        agent_version: None,
        agent_addr: None,
        created_at: now_ms(),
        started_at: None,
        ended_at: None,
        close_reason: None,
        closed_by_api: 0,
        grant_expires_at: 0,
        done_bytes_in: 0,
        done_bytes_out: 0,
        done_requests: 0,
        cur_bytes_in: 0,
        cur_bytes_out: 0,
        cur_requests: 0,
    };
    let (grant, exp) = sign_grant(&state, &row).await?;
    let row = TunnelRow {
        grant_expires_at: i64::try_from(exp).unwrap_or(i64::MAX),
        ..row
    };
    state.db().insert_tunnel(&row).await?;
    Ok((
        StatusCode::CREATED,
        Json(grant_body(&state, region, &row, grant, exp)),
    ))
}

/// The region with this id (`None` or `auto`: the default region), or a 404 listing them.
pub fn region_or_404<'a>(state: &'a AppState, id: Option<&str>) -> ApiResult<&'a RegionConfig> {
    state.region(id).ok_or_else(|| {
        let known: Vec<&str> = state
            .config()
            .regions
            .iter()
            .map(|r| r.id.as_str())
            .collect();
        ApiError::NotFound(format!(
            "unknown region {:?}; known regions: {}, or auto",
            id.unwrap_or_default(),
            known.join(", ")
        ))
    })
}

/// The caller's verified custom domain `raw`: 404 if the account has no such domain (whoever
/// else holds it), 403 while it is not verified.
async fn usable_domain(state: &AppState, caller: &Caller, raw: &str) -> ApiResult<DomainRow> {
    let hostname = parse_hostname(state, raw)?;
    let row = state
        .db()
        .domain_by_hostname(hostname.as_str())
        .await?
        .filter(|d| d.account_id == caller.account.id)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "{hostname} is not one of this account's domains; add it with `warren domains \
                 add {hostname}` (POST /v1/domains), create the DNS records it prints, then verify it"
            ))
        })?;
    if !row.is_verified() {
        return Err(ApiError::Forbidden(format!(
            "{hostname} is not verified yet, so no tunnel may serve it: create the CNAME and TXT \
             records `warren domains add` printed, then run `warren domains verify {hostname}`"
        )));
    }
    Ok(row)
}

async fn pick_name(
    state: &AppState,
    caller: &Caller,
    requested: Option<&str>,
    random: bool,
    local_addr: &str,
) -> ApiResult<Subdomain> {
    let account = caller.account.id.as_str();
    if let Some(raw) = requested {
        let name = Subdomain::parse(raw).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
        claim_name(state, account, &name, ClaimKind::Explicit).await?;
        return Ok(name);
    }
    if !random {
        // The stable name is held for the account from its first grant on, exactly like a
        // claim: nobody else can claim it or be granted it, live or between reconnects.
        let name = Subdomain::stable(&caller.token.id, local_addr);
        claim_name(state, account, &name, ClaimKind::Stable).await?;
        return Ok(name);
    }
    // A random name is not recorded as a claim (every run would leave one behind); it is held
    // by its tunnel's grant, which `ensure_not_served_by_other` honours.
    let mut name = random_name();
    // A random collision with a claim is astronomically rare; try a few times anyway.
    for _ in 0..5 {
        match state.db().claim(name.as_str()).await? {
            Some(c) if c.account_id != account => name = random_name(),
            _ => break,
        }
    }
    match state.db().claim(name.as_str()).await? {
        Some(c) if c.account_id != account => Err(taken(name.as_str())),
        _ => {
            ensure_not_served_by_other(state, account, &name).await?;
            Ok(name)
        }
    }
}

fn random_name() -> Subdomain {
    Subdomain::stable(&random_hex(16), "random")
}

/// Signs a grant for `row`; returns the JWT and its expiry (Unix seconds).
async fn sign_grant(state: &AppState, row: &TunnelRow) -> ApiResult<(String, u64)> {
    let key = state
        .db()
        .current_key()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no signing key in the database"))?;
    let now = u64::try_from(now_ms() / 1000).unwrap_or(0);
    let exp = now + state.config().grant_ttl.as_secs();
    let claims = GrantClaims {
        iss: GRANT_ISSUER.into(),
        aud: GRANT_AUDIENCE.into(),
        sub: row.account_id.clone(),
        iat: now,
        exp,
        jti: random_hex(12),
        tunnel_id: row.id.clone(),
        token_id: row.token_id.clone(),
        protocol: TunnelProtocol::Http,
        hostname: row.hostname.clone(),
        region: row.region.clone(),
        custom_domain: is_custom_domain(state, row),
    };
    let jwt = crate::grant::sign(&key, &claims).map_err(anyhow::Error::new)?;
    Ok((jwt, exp))
}

/// True when the tunnel's hostname is not a name under its region's domain.
fn is_custom_domain(state: &AppState, row: &TunnelRow) -> bool {
    let under_region = state.region(Some(&row.region)).is_some_and(|region| {
        row.hostname
            .strip_suffix(&region.domain)
            .is_some_and(|label| label.ends_with('.'))
    });
    !under_region
}

fn grant_body(
    state: &AppState,
    region: &RegionConfig,
    row: &TunnelRow,
    grant: String,
    exp: u64,
) -> TunnelGrant {
    TunnelGrant {
        tunnel_id: row.id.clone(),
        hostname: row.hostname.clone(),
        public_url: region.public_url(&row.hostname),
        region: row.region.clone(),
        edge_url: region.tunnel_url.clone(),
        grant,
        grant_expires_at: exp,
        custom_domain: is_custom_domain(state, row),
    }
}

#[utoipa::path(post, path = "/v1/tunnels/{id}/grant", tag = "tunnels", security(("bearer" = [])),
    params(("id" = String, Path, description = "The tunnel id")),
    responses(
        (status = 200, description = "A fresh grant for the same tunnel", body = TunnelGrant),
        (status = 403, description = "The token lacks the tunnel scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tunnel in this account", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The tunnel was closed through the API, or its custom domain was removed", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn renew_grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TunnelGrant>> {
    caller.require(Scope::Tunnel, "renewing grants")?;
    let row = state
        .db()
        .tunnel(&caller.account.id, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    if row.closed_by_api != 0 {
        return Err(ApiError::Gone(format!(
            "tunnel {id} was closed through the API; open a new tunnel"
        )));
    }
    let region = state.region(Some(&row.region)).ok_or_else(|| {
        ApiError::Gone(format!(
            "region {} of tunnel {id} is no longer configured",
            row.region
        ))
    })?;
    if is_custom_domain(&state, &row) {
        let held = state.db().domain_by_hostname(&row.hostname).await?;
        if !held.is_some_and(|d| d.account_id == caller.account.id && d.is_verified()) {
            return Err(ApiError::Gone(format!(
                "{} is no longer a verified domain of this account; add and verify it again \
                 (`warren domains add`)",
                row.hostname
            )));
        }
    } else if let Some(label) = row.hostname.split('.').next()
        && let Some(claim) = state.db().claim(label).await?
        && claim.account_id != caller.account.id
    {
        // A random name is held only while a grant for it is valid: one that lapsed may have
        // been claimed since (as may a name granted before stable names were recorded).
        return Err(ApiError::Gone(format!(
            "{label} is claimed by another account now; open a new tunnel with another name"
        )));
    }
    let (grant, exp) = sign_grant(&state, &row).await?;
    state
        .db()
        .set_grant_expiry(&row.id, i64::try_from(exp).unwrap_or(i64::MAX))
        .await?;
    Ok(Json(grant_body(&state, region, &row, grant, exp)))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("this account has no tunnel {id:?}"))
}

#[utoipa::path(get, path = "/v1/tunnels", tag = "tunnels", security(("bearer" = [])),
    responses((status = 200, description = "Live tunnels: started, not ended, edge seen in the last 30 s", body = TunnelList)))]
pub async fn live_tunnels(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<TunnelList>> {
    let rows = state
        .db()
        .live_tunnels(&caller.account.id, now_ms() - LIVE_EDGE_WINDOW_MS)
        .await?;
    Ok(Json(TunnelList {
        tunnels: rows.iter().map(|r| Tunnel::new(&state, r)).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/tunnels/{id}", tag = "tunnels", security(("bearer" = [])),
    params(("id" = String, Path, description = "The tunnel id")),
    responses(
        (status = 202, description = "Closed; the edge holding it drops it within a second", body = Tunnel),
        (status = 403, description = "The token lacks the manage scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tunnel in this account", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn close_tunnel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Tunnel>)> {
    caller.require(Scope::Manage, "closing tunnels")?;
    let db = state.db();
    if !db.close_tunnel(&caller.account.id, &id, now_ms()).await? {
        return Err(not_found(&id));
    }
    let row = db
        .tunnel(&caller.account.id, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    crate::bus::publish_closes(
        &state,
        &[CloseTunnel {
            tunnel_id: row.id.clone(),
            reason: crate::store::tunnels::CLOSED_REASON.to_string(),
            until: u64::try_from(row.grant_expires_at).unwrap_or(0),
        }],
    )
    .await;
    Ok((StatusCode::ACCEPTED, Json(Tunnel::new(&state, &row))))
}
