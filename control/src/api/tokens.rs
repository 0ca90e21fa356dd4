//! `/v1/tokens`: create (shown once), list, revoke.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warren_proto::report::CloseTunnel;

use super::extract::ApiJson;
use crate::accounts::{TokenInfo, issue_token};
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;
use crate::store::now_ms;
use crate::time::rfc3339;

/// Longest token name.
pub const MAX_NAME_LEN: usize = 100;
/// Longest token lifetime: ten years.
pub const MAX_EXPIRES_IN_SECS: u64 = 10 * 365 * 86_400;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A label for your own use (at most 100 characters, no control characters).
    #[schema(max_length = 100, pattern = r"^[^\x00-\x1f\x7f]*$")]
    pub name: Option<String>,
    /// Default `["tunnel"]`.
    #[schema(min_items = 1)]
    pub scopes: Option<Vec<Scope>>,
    /// Lifetime in seconds (1 to 10 years' worth); none = never expires.
    #[schema(minimum = 1, maximum = 315360000)]
    #[serde(default, deserialize_with = "whole_number")]
    pub expires_in_secs: Option<u64>,
}

/// A JSON number with no fractional part (`60` or `60.0`: JSON Schema calls both integers).
fn whole_number<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(de)? else {
        return Ok(None);
    };
    if let Some(v) = n.as_u64() {
        return Ok(Some(v));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom(format!(
            "expires_in_secs must be a whole number of seconds, not {n}"
        ))),
    }
}

/// The new token; `token` is shown only in this response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    pub token: String,
    pub id: String,
    pub name: Option<String>,
    pub scopes: Vec<Scope>,
    pub created_at: String,
    pub expires_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", security(("bearer" = [])),
    request_body = NewToken,
    responses(
        (status = 201, description = "Token created", body = CreatedToken),
        (status = 403, description = "The token lacks the manage scope", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    caller.require(Scope::Manage, "creating tokens")?;
    let name = match body.name.map(|n| n.trim().to_string()) {
        Some(n) if n.chars().count() > MAX_NAME_LEN => {
            return Err(ApiError::Unprocessable(format!(
                "name must be at most {MAX_NAME_LEN} characters"
            )));
        }
        Some(n) if n.chars().any(|c| c < ' ' || c == '\x7f') => {
            return Err(ApiError::Unprocessable(
                "name must not contain control characters".into(),
            ));
        }
        Some(n) if n.is_empty() => None,
        other => other,
    };
    let mut scopes = body.scopes.unwrap_or_else(|| vec![Scope::Tunnel]);
    scopes.dedup();
    if scopes.is_empty() {
        return Err(ApiError::Unprocessable(
            "scopes must name at least one of read, tunnel, manage".into(),
        ));
    }
    if let Some(secs) = body.expires_in_secs
        && !(1..=MAX_EXPIRES_IN_SECS).contains(&secs)
    {
        return Err(ApiError::Unprocessable(format!(
            "expires_in_secs must be between 1 and {MAX_EXPIRES_IN_SECS}"
        )));
    }
    let (token, row) = issue_token(
        &state,
        &caller.account.id,
        name,
        &scopes,
        body.expires_in_secs,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token,
            id: row.id,
            name: row.name,
            scopes,
            created_at: rfc3339(row.created_at),
            expires_at: row.expires_at.map(rfc3339),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", security(("bearer" = [])),
    responses((status = 200, description = "The account's tokens that are not revoked", body = TokenList)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<TokenList>> {
    let rows = state.db().tokens(&caller.account.id).await?;
    Ok(Json(TokenList {
        tokens: rows.iter().map(TokenInfo::from).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", security(("bearer" = [])),
    params(("id" = String, Path, description = "The token id (16 hex characters)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "The token lacks the manage scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such token in this account", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Manage, "revoking tokens")?;
    let now = now_ms();
    if state
        .db()
        .revoke_token(&caller.account.id, &id, now)
        .await?
    {
        // Its live tunnels close too: at once over Redis, else with the edges' next report.
        let closed = state
            .db()
            .close_tunnels_of_token(&caller.account.id, &id, now)
            .await?;
        let closes: Vec<CloseTunnel> = closed
            .into_iter()
            .map(|(tunnel_id, until)| CloseTunnel {
                tunnel_id,
                reason: crate::store::tunnels::REVOKED_REASON.to_string(),
                until: u64::try_from(until).unwrap_or(0),
            })
            .collect();
        crate::bus::publish_closes(&state, &closes).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "this account has no token {id:?}"
        )))
    }
}
