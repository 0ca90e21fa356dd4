//! Accounts and tokens as operations shared by the API, the binary and `warren dev`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Scope, generate_token};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::accounts::AccountRow;
use crate::store::tokens::TokenRow;
use crate::store::{is_unique_violation, now_ms};
use crate::time::rfc3339;

/// An account as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub admin: bool,
    /// RFC 3339.
    pub created_at: String,
}

impl From<&AccountRow> for Account {
    fn from(row: &AccountRow) -> Account {
        Account {
            id: row.id.clone(),
            email: row.email.clone(),
            admin: row.is_admin(),
            created_at: rfc3339(row.created_at),
        }
    }
}

/// A token as the API lists it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// The 16-character id, also part of the token.
    pub id: String,
    pub name: Option<String>,
    pub scopes: Vec<Scope>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
}

impl From<&TokenRow> for TokenInfo {
    fn from(row: &TokenRow) -> TokenInfo {
        TokenInfo {
            id: row.id.clone(),
            name: row.name.clone(),
            scopes: crate::auth::scopes_from_db(&row.scopes),
            created_at: rfc3339(row.created_at),
            expires_at: row.expires_at.map(rfc3339),
            last_used_at: row.last_used_at.map(rfc3339),
        }
    }
}

/// Longest accepted email address (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// Lowercases and sanity-checks an email address; the error is a sentence.
pub fn parse_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_ascii_lowercase();
    if email.is_empty() || email.len() > MAX_EMAIL_LEN {
        return Err(format!(
            "email must be 1 to {MAX_EMAIL_LEN} characters long"
        ));
    }
    let valid = match email.split_once('@') {
        // The same rule as the schema's pattern: LOCAL@X.Y, printable ASCII, one `@`.
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain
                    .rfind('.')
                    .is_some_and(|dot| dot > 0 && dot + 1 < domain.len())
                && email.chars().all(|c| c.is_ascii_graphic())
        }
        None => false,
    };
    if !valid {
        return Err(format!(
            "{raw:?} is not an email address like name@example.com"
        ));
    }
    Ok(email)
}

/// Creates an account and its first token (scope manage); the token is returned once.
pub async fn create_account_row(
    state: &AppState,
    email: &str,
    admin: bool,
) -> Result<(AccountRow, String, TokenRow), ApiError> {
    let email = parse_email(email).map_err(ApiError::Unprocessable)?;
    let account = match state.db().insert_account(&email, admin).await {
        Ok(account) => account,
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::Conflict(format!(
                "an account with email {email} already exists"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let (token, row) = issue_token(
        state,
        &account.id,
        Some("first token".into()),
        &[Scope::Manage],
        None,
    )
    .await?;
    Ok((account, token, row))
}

/// Creates and stores a token; returns the secret (shown once) and the row.
pub async fn issue_token(
    state: &AppState,
    account_id: &str,
    name: Option<String>,
    scopes: &[Scope],
    expires_in_secs: Option<u64>,
) -> Result<(String, TokenRow), ApiError> {
    let expires_at = expires_in_secs.map(|secs| {
        now_ms().saturating_add(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
    });
    let (token, row) = generate_token(account_id, name, scopes, expires_at);
    state.db().insert_token(&row).await?;
    Ok((token, row))
}

/// The dev account's email (`warren dev`).
pub const DEV_EMAIL: &str = "dev@warren.localhost";
const DEV_TOKEN_SETTING: &str = "dev_token";

/// Returns the dev account's token, creating the account and token on first use. The dev
/// token is kept in the `settings` table in plain text so `warren dev` prints the same token
/// after a restart: meant for the local SQLite database of `warren dev` only.
pub async fn ensure_dev_account_token(state: &AppState) -> Result<String, ApiError> {
    let db = state.db();
    if let Some(token) = db.setting(DEV_TOKEN_SETTING).await? {
        let usable = match crate::auth::token_id_of(&token) {
            Some(id) => db
                .token(id)
                .await?
                .is_some_and(|row| row.revoked_at.is_none() && row.expires_at.is_none()),
            None => false,
        };
        if usable {
            return Ok(token);
        }
    }
    let account = match db.account_by_email(DEV_EMAIL).await? {
        Some(account) => account,
        None => db.insert_account(DEV_EMAIL, true).await?,
    };
    let (token, _) = issue_token(
        state,
        &account.id,
        Some("warren dev".into()),
        &[Scope::Manage],
        None,
    )
    .await?;
    db.set_setting(DEV_TOKEN_SETTING, &token).await?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    #[test]
    fn emails_are_checked_and_lowercased() {
        assert_eq!(
            super::parse_email(" A@Example.COM "),
            Ok("a@example.com".into())
        );
        for bad in ["", "a", "a@b", "@b.c", "a@.c", "a@b.", "a b@c.d", "a@b@c.d"] {
            assert!(super::parse_email(bad).is_err(), "{bad}");
        }
        assert!(super::parse_email(&format!("{}@b.c", "a".repeat(300))).is_err());
    }
}
