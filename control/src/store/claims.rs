//! Subdomain claims: a lowercase DNS label reserved to one account, unique system-wide.
//!
//! A claim is made explicitly (`POST /v1/subdomains`, `warren http --subdomain`) or, for the
//! stable name a tunnel gets without asking for one, when that name is first granted
//! (`stable` = 1). Either way only the account releases it.

use sqlx::FromRow;

use super::Db;

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Claim {
    pub name: String,
    pub account_id: String,
    pub created_at: i64,
    /// 1 when the claim was recorded for a stable (token-derived) name.
    pub stable: i64,
}

impl Db {
    /// Inserts a claim; a unique violation means somebody holds the name.
    pub async fn insert_claim(&self, claim: &Claim) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO subdomains (name, account_id, created_at, stable) VALUES ($1, $2, $3, $4)",
        )
        .bind(&claim.name)
        .bind(&claim.account_id)
        .bind(claim.created_at)
        .bind(claim.stable)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn claim(&self, name: &str) -> Result<Option<Claim>, sqlx::Error> {
        sqlx::query_as(
            "SELECT name, account_id, created_at, stable FROM subdomains WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn claims(&self, account_id: &str) -> Result<Vec<Claim>, sqlx::Error> {
        sqlx::query_as(
            "SELECT name, account_id, created_at, stable FROM subdomains WHERE account_id = $1 \
             ORDER BY name",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await
    }

    /// Releases one of the account's claims; false when the account holds no such name.
    pub async fn delete_claim(&self, account_id: &str, name: &str) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM subdomains WHERE name = $1 AND account_id = $2")
            .bind(name)
            .bind(account_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// True when an account other than `account_id` has a tunnel on one of `hostnames` whose
    /// grant is still valid and that was not closed through the API: its agent may serve or
    /// reconnect to it at any moment, so the name is held. Account ids are never empty, so
    /// `""` asks about every account.
    pub async fn held_by_other(
        &self,
        account_id: &str,
        hostnames: &[String],
        now_secs: i64,
    ) -> Result<bool, sqlx::Error> {
        for hostname in hostnames {
            let held: Option<(String,)> = sqlx::query_as(
                "SELECT id FROM tunnels WHERE hostname = $1 AND account_id <> $2 \
                 AND closed_by_api = 0 AND grant_expires_at > $3 LIMIT 1",
            )
            .bind(hostname)
            .bind(account_id)
            .bind(now_secs)
            .fetch_optional(&self.pool)
            .await?;
            if held.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
