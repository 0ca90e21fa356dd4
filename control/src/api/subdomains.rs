//! `/v1/subdomains`: claims of names, unique across the whole system.

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
use crate::store::{is_unique_violation, now_ms};
use crate::time::rfc3339;

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
        }
    }
}

/// The sentence of a 409 for a name held by someone else.
pub fn taken(name: &str) -> ApiError {
    ApiError::Conflict(format!(
        "{name} is claimed by another account; choose another name, or omit it for a stable one"
    ))
}

/// Claims `name` for `account_id` unless held; `Ok(false)` when the caller held it already.
pub async fn claim_name(state: &AppState, account_id: &str, name: &Subdomain) -> ApiResult<Claim> {
    let db = state.db();
    if let Some(existing) = db.claim(name.as_str()).await? {
        return if existing.account_id == account_id {
            Ok(existing)
        } else {
            Err(taken(name.as_str()))
        };
    }
    let claim = Claim {
        name: name.to_string(),
        account_id: account_id.to_string(),
        created_at: now_ms(),
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

#[utoipa::path(post, path = "/v1/subdomains", tag = "subdomains", security(("bearer" = [])),
    request_body = NewSubdomain,
    responses(
        (status = 201, description = "Claimed (or already held by this account)", body = SubdomainInfo),
        (status = 403, description = "The token lacks the manage scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Claimed by another account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a valid or allowed name", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_subdomain(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewSubdomain>,
) -> ApiResult<(StatusCode, Json<SubdomainInfo>)> {
    caller.require(Scope::Manage, "claiming subdomains")?;
    let name = Subdomain::parse(&body.name).map_err(ApiError::Unprocessable)?;
    let claim = claim_name(&state, &caller.account.id, &name).await?;
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
        (status = 204, description = "Released"),
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
    if state.db().delete_claim(&caller.account.id, &lower).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "this account has not claimed {name:?}"
        )))
    }
}
