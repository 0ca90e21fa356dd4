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

use super::extract::ApiJson;
use super::subdomains::{claim_name, taken};
use super::view::Tunnel;
use crate::auth::{Caller, Scope};
use crate::config::RegionConfig;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;
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
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TunnelList {
    pub tunnels: Vec<Tunnel>,
}

#[utoipa::path(post, path = "/v1/tunnels", tag = "tunnels", security(("bearer" = [])),
    request_body = NewTunnel,
    responses(
        (status = 201, description = "Tunnel recorded; here is its grant", body = TunnelGrant),
        (status = 403, description = "The token lacks the tunnel scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is claimed by another account", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown region", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or reserved name", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_tunnel(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewTunnel>,
) -> ApiResult<(StatusCode, Json<TunnelGrant>)> {
    caller.require(Scope::Tunnel, "opening tunnels")?;
    let region = state.region(body.region.as_deref()).ok_or_else(|| {
        let known: Vec<&str> = state
            .config()
            .regions
            .iter()
            .map(|r| r.id.as_str())
            .collect();
        ApiError::NotFound(format!(
            "unknown region {:?}; known regions: {}, or auto",
            body.region.as_deref().unwrap_or_default(),
            known.join(", ")
        ))
    })?;
    let local_addr = body.local_addr.unwrap_or_default();
    if local_addr.len() > 255 {
        return Err(ApiError::Unprocessable(
            "local_addr must be at most 255 characters".into(),
        ));
    }
    let name = pick_name(
        &state,
        &caller,
        body.subdomain.as_deref(),
        body.random,
        &local_addr,
    )
    .await?;
    let hostname = format!("{name}.{}", region.domain);
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
        Json(grant_body(region, &row, grant, exp)),
    ))
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
        let name = Subdomain::parse(raw).map_err(ApiError::Unprocessable)?;
        claim_name(state, account, &name).await?;
        return Ok(name);
    }
    let name = if random {
        let mut name = random_name();
        // A random collision with a claim is astronomically rare; try a few times anyway.
        for _ in 0..5 {
            match state.db().claim(name.as_str()).await? {
                Some(c) if c.account_id != account => name = random_name(),
                _ => break,
            }
        }
        name
    } else {
        Subdomain::stable(&caller.token.id, local_addr)
    };
    match state.db().claim(name.as_str()).await? {
        Some(c) if c.account_id != account => Err(taken(name.as_str())),
        _ => Ok(name),
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
    };
    let jwt = crate::grant::sign(&key, &claims).map_err(anyhow::Error::new)?;
    Ok((jwt, exp))
}

fn grant_body(region: &RegionConfig, row: &TunnelRow, grant: String, exp: u64) -> TunnelGrant {
    TunnelGrant {
        tunnel_id: row.id.clone(),
        hostname: row.hostname.clone(),
        public_url: region.public_url(&row.hostname),
        region: row.region.clone(),
        edge_url: region.tunnel_url.clone(),
        grant,
        grant_expires_at: exp,
    }
}

#[utoipa::path(post, path = "/v1/tunnels/{id}/grant", tag = "tunnels", security(("bearer" = [])),
    params(("id" = String, Path, description = "The tunnel id")),
    responses(
        (status = 200, description = "A fresh grant for the same tunnel", body = TunnelGrant),
        (status = 403, description = "The token lacks the tunnel scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tunnel in this account", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The tunnel was closed through the API", body = Problem, content_type = "application/problem+json"),
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
    let (grant, exp) = sign_grant(&state, &row).await?;
    state
        .db()
        .set_grant_expiry(&row.id, i64::try_from(exp).unwrap_or(i64::MAX))
        .await?;
    Ok(Json(grant_body(region, &row, grant, exp)))
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
