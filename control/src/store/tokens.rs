//! API tokens as stored: the id, the SHA-256 of the whole token, scopes, expiry, revocation.

use sqlx::FromRow;

use super::Db;
use super::sql;

/// A token row. `hash` is hex SHA-256 of the whole token; the token itself is never stored.
#[derive(Clone, PartialEq, Eq, FromRow)]
pub struct TokenRow {
    pub id: String,
    pub account_id: String,
    pub hash: String,
    pub name: Option<String>,
    /// Comma-separated scopes.
    pub scopes: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl std::fmt::Debug for TokenRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRow")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("hash", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str =
    "id, account_id, hash, name, scopes, created_at, expires_at, last_used_at, revoked_at";

impl Db {
    pub async fn insert_token(&self, token: &TokenRow) -> Result<(), sqlx::Error> {
        sqlx::query(sql(format!(
            "INSERT INTO tokens ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )))
        .bind(&token.id)
        .bind(&token.account_id)
        .bind(&token.hash)
        .bind(&token.name)
        .bind(&token.scopes)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.last_used_at)
        .bind(token.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A token by id, whatever its account (authentication looks it up this way).
    pub async fn token(&self, id: &str) -> Result<Option<TokenRow>, sqlx::Error> {
        sqlx::query_as(sql(format!("SELECT {COLUMNS} FROM tokens WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
    }

    /// The account's tokens that are not revoked, newest first.
    pub async fn tokens(&self, account_id: &str) -> Result<Vec<TokenRow>, sqlx::Error> {
        sqlx::query_as(sql(format!(
            "SELECT {COLUMNS} FROM tokens WHERE account_id = $1 AND revoked_at IS NULL \
             ORDER BY created_at DESC, id DESC"
        )))
        .bind(account_id)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn touch_token(&self, id: &str, now: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revokes one of the account's tokens; false when the account has no such live token.
    pub async fn revoke_token(
        &self,
        account_id: &str,
        id: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
