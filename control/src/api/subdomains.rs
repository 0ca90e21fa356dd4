//! `/v1/subdomains`: claims of names, unique across the whole system.
//!
//! A name changes hands only when its account lets it go: a claim (explicit, or recorded for a
//! stable name the first time it is granted) is released only by `DELETE /v1/subdomains/{name}`,
//! which also closes the account's tunnels on it; and a name another account serves under a
//! grant that is still valid is refused even without a claim (a random name, or one granted
//! before stable names were recorded).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warren_proto::names::Subdomain;

use super::extract::ApiJson;
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;
use crate::store::claims::Claim;
use crate::store::tunnels::RELEASED_REASON;
use crate::store::{is_unique_violation, now_ms};
use crate::time::rfc3339;
use warren_proto::report::CloseTunnel;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubdomain {
    /// A DNS label: 3 to 63 letters, digits or hyphens; stored lowercase. Some names are
    /// reserved (`www`, `api`, ...): 422.
    #[schema(
        min_length = 3,
        max_length = 63,
        pattern = r"^[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]$"
    )]
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubdomainInfo {
    pub name: String,
    pub created_at: String,
    /// The stable name of a tunnel opened without `subdomain` (derived from its token and
    /// local address), held for the account since that tunnel was first granted. It is
    /// released like any claim.
    pub stable: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubdomainList {
    pub subdomains: Vec<SubdomainInfo>,
}

impl From<&Claim> for SubdomainInfo {
    fn from(c: &Claim) -> SubdomainInfo {
        SubdomainInfo {
            name: c.name.clone(),
            created_at: rfc3339(c.created_at),
            stable: c.stable != 0,
        }
    }
}

/// The sentence of a 409 for a name held by someone else.
pub fn taken(name: &str) -> ApiError {
    ApiError::Conflict(format!(
        "{name} is claimed by another account; choose another name, or omit it for a stable one"
    ))
}

/// The sentence of a 409 for a name another account serves without a claim.
fn in_use(name: &str) -> ApiError {
    ApiError::Conflict(format!(
        "{name} is in use by another account's tunnel; choose another name, or omit it for a \
         stable one"
    ))
}

/// How a name came to be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind {
    /// Asked for by name.
    Explicit,
    /// The stable name of a tunnel opened without one.
    Stable,
}

/// Claims `name` for `account_id` unless another account holds it (a claim, or a tunnel with
/// a valid grant on it in any region: 409); the caller's existing claim is returned as is.
pub async fn claim_name(
    state: &AppState,
    account_id: &str,
    name: &Subdomain,
    kind: ClaimKind,
) -> ApiResult<Claim> {
    let db = state.db();
    if let Some(existing) = db.claim(name.as_str()).await? {
        return if existing.account_id == account_id {
            Ok(existing)
        } else {
            Err(taken(name.as_str()))
        };
    }
    ensure_not_served_by_other(state, account_id, name).await?;
    let claim = Claim {
        name: name.to_string(),
        account_id: account_id.to_string(),
        created_at: now_ms(),
        stable: i64::from(kind == ClaimKind::Stable),
    };
    match db.insert_claim(&claim).await {
        Ok(()) => Ok(claim),
        Err(e) if is_unique_violation(&e) => match db.claim(name.as_str()).await? {
            Some(existing) if existing.account_id == account_id => Ok(existing),
            _ => Err(taken(name.as_str())),
        },
        Err(e) => Err(e.into()),
    }
}

/// 409 when another account has a tunnel with a valid grant on `name` in any region.
pub async fn ensure_not_served_by_other(
    state: &AppState,
    account_id: &str,
    name: &Subdomain,
) -> ApiResult<()> {
    let now_secs = now_ms() / 1000;
    if state
        .db()
        .held_by_other(account_id, &hostnames(state, name), now_secs)
        .await?
    {
        return Err(in_use(name.as_str()));
    }
    Ok(())
}

/// `name` under every configured region's domain.
fn hostnames(state: &AppState, name: &Subdomain) -> Vec<String> {
    state
        .config()
        .regions
        .iter()
        .map(|r| format!("{name}.{}", r.domain.to_ascii_lowercase()))
        .collect()
}

#[utoipa::path(post, path = "/v1/subdomains", tag = "subdomains", security(("bearer" = [])),
    request_body = NewSubdomain,
    responses(
        (status = 201, description = "Claimed (or already held by this account)", body = SubdomainInfo),
        (status = 403, description = "The token lacks the manage scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Claimed by another account, or served by another account's tunnel", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a valid or allowed name", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_subdomain(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewSubdomain>,
) -> ApiResult<(StatusCode, Json<SubdomainInfo>)> {
    caller.require(Scope::Manage, "claiming subdomains")?;
    let name = Subdomain::parse(&body.name).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let claim = claim_name(&state, &caller.account.id, &name, ClaimKind::Explicit).await?;
    Ok((StatusCode::CREATED, Json(SubdomainInfo::from(&claim))))
}

#[utoipa::path(get, path = "/v1/subdomains", tag = "subdomains", security(("bearer" = [])),
    responses((status = 200, description = "The account's claims", body = SubdomainList)))]
pub async fn list_subdomains(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<SubdomainList>> {
    let claims = state.db().claims(&caller.account.id).await?;
    Ok(Json(SubdomainList {
        subdomains: claims.iter().map(SubdomainInfo::from).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/subdomains/{name}", tag = "subdomains", security(("bearer" = [])),
    params(("name" = String, Path, description = "The claimed name")),
    responses(
        (status = 204, description = "Released; the account's tunnels on it are closed"),
        (status = 403, description = "The token lacks the manage scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "This account holds no such name", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_subdomain(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Manage, "releasing subdomains")?;
    let lower = name.to_ascii_lowercase();
    let Ok(parsed) = Subdomain::parse(&lower) else {
        return Err(ApiError::NotFound(format!(
            "this account has not claimed {name:?}"
        )));
    };
    let db = state.db();
    if !db.delete_claim(&caller.account.id, parsed.as_str()).await? {
        return Err(ApiError::NotFound(format!(
            "this account has not claimed {name:?}"
        )));
    }
    // Released means released: the account's tunnels stop serving it at once (over Redis, else
    // with the edges' next report) and their grants are refused, so no agent of this account
    // comes back to the name behind the next holder's back.
    let mut closes = Vec::new();
    for hostname in hostnames(&state, &parsed) {
        let closed = db
            .close_tunnels_on(&caller.account.id, &hostname, RELEASED_REASON, now_ms())
            .await?;
        closes.extend(closed.into_iter().map(|(tunnel_id, until)| CloseTunnel {
            tunnel_id,
            reason: RELEASED_REASON.to_string(),
            until: u64::try_from(until).unwrap_or(0),
        }));
    }
    crate::bus::publish_closes(&state, &closes).await;
    tracing::info!(name = %parsed, closed = closes.len(), "subdomain released");
    Ok(StatusCode::NO_CONTENT)
}
