//! Grant signing keys: Ed25519, newest is current; retired keys stay published while the
//! grants they signed may still be valid.

use sqlx::FromRow;

use super::Db;
use super::sql;

/// A signing key row; `private_key` is base64 of the 32-byte seed and never logged.
#[derive(Clone, FromRow)]
pub struct KeyRow {
    pub kid: String,
    pub private_key: String,
    pub public_key: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for KeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRow")
            .field("kid", &self.kid)
            .field("private_key", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

const COLUMNS: &str = "kid, private_key, public_key, created_at, retired_at";

impl Db {
    /// The key that signs new grants (the newest one not retired).
    pub async fn current_key(&self) -> Result<Option<KeyRow>, sqlx::Error> {
        sqlx::query_as(sql(format!(
            "SELECT {COLUMNS} FROM signing_keys WHERE retired_at IS NULL \
             ORDER BY created_at DESC, kid DESC LIMIT 1"
        )))
        .fetch_optional(&self.pool)
        .await
    }

    /// Keys to publish: current ones and those retired after `retired_after` (ms).
    pub async fn published_keys(&self, retired_after: i64) -> Result<Vec<KeyRow>, sqlx::Error> {
        sqlx::query_as(sql(format!(
            "SELECT {COLUMNS} FROM signing_keys WHERE retired_at IS NULL OR retired_at > $1 \
             ORDER BY created_at DESC, kid DESC"
        )))
        .bind(retired_after)
        .fetch_all(&self.pool)
        .await
    }

    /// Retires the current keys and adds `key` as the new current one, in one transaction.
    pub async fn rotate_key(&self, key: &KeyRow) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(sql(format!(
            "INSERT INTO signing_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
        )))
        .bind(&key.kid)
        .bind(&key.private_key)
        .bind(&key.public_key)
        .bind(key.created_at)
        .bind(key.retired_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
}
