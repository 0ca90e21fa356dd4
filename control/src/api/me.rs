//! `GET /v1/me` and the admin-only `/v1/accounts`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiQuery};
use crate::accounts::{Account, TokenInfo, create_account_row};
use crate::auth::{Caller, Scope};
use crate::error::{ApiResult, Problem};
use crate::state::AppState;

/// Who the caller is.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub account: Account,
    pub token: TokenInfo,
}

#[utoipa::path(get, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, description = "The caller's account and token", body = Me)))]
pub async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        account: Account::from(&caller.account),
        token: TokenInfo::from(&caller.token),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// The account's email address (unique, case-insensitive).
    #[schema(
        min_length = 3,
        max_length = 254,
        pattern = r"^[!-?A-~]+@[!-?A-~]+\.[!-?A-~]+$"
    )]
    pub email: String,
    /// Whether the account may manage other accounts.
    #[serde(default)]
    pub admin: bool,
}

/// The new account and its first token (scope `manage`), shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedAccount {
    pub account: Account,
    /// The token; it is shown only in this response.
    pub token: String,
    pub token_id: String,
}

#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", security(("bearer" = [])),
    request_body = NewAccount,
    responses(
        (status = 201, description = "Account created", body = CreatedAccount),
        (status = 403, description = "Not an admin, or the token lacks the manage scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The email is taken", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_account(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewAccount>,
) -> ApiResult<(StatusCode, Json<CreatedAccount>)> {
    caller.require_admin()?;
    caller.require(Scope::Manage, "creating accounts")?;
    let (account, token, row) = create_account_row(&state, &body.email, body.admin).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedAccount {
            account: Account::from(&account),
            token,
            token_id: row.id,
        }),
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountList {
    pub accounts: Vec<Account>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccountListParams {
    /// At most this many accounts (1..=1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", security(("bearer" = [])),
    params(AccountListParams),
    responses(
        (status = 200, description = "All accounts, oldest first", body = AccountList),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_accounts(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<AccountListParams>,
) -> ApiResult<Json<AccountList>> {
    caller.require_admin()?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(crate::error::ApiError::Unprocessable(format!(
            "limit must be between 1 and 1000, not {limit}"
        )));
    }
    let rows = state.db().accounts(limit).await?;
    Ok(Json(AccountList {
        accounts: rows.iter().map(Account::from).collect(),
    }))
}
