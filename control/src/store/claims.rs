//! Subdomain claims: a lowercase DNS label reserved to one account, unique system-wide.

use sqlx::FromRow;

use super::Db;

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Claim {
    pub name: String,
    pub account_id: String,
    pub created_at: i64,
}

impl Db {
    /// Inserts a claim; a unique violation means somebody holds the name.
    pub async fn insert_claim(&self, claim: &Claim) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO subdomains (name, account_id, created_at) VALUES ($1, $2, $3)")
            .bind(&claim.name)
            .bind(&claim.account_id)
            .bind(claim.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn claim(&self, name: &str) -> Result<Option<Claim>, sqlx::Error> {
        sqlx::query_as("SELECT name, account_id, created_at FROM subdomains WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn claims(&self, account_id: &str) -> Result<Vec<Claim>, sqlx::Error> {
        sqlx::query_as(
            "SELECT name, account_id, created_at FROM subdomains WHERE account_id = $1 ORDER BY name",
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
}
