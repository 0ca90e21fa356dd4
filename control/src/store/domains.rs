//! Custom domains: a hostname an account adds, proves it owns through DNS, then tunnels to.

use sqlx::FromRow;

use super::Db;
use super::sql;

/// `status` of a domain whose records were not seen yet.
pub const PENDING: &str = "pending";
/// `status` of a domain whose TXT and CNAME records were seen.
pub const VERIFIED: &str = "verified";

/// A domain as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct DomainRow {
    pub id: String,
    pub account_id: String,
    /// Lowercase, no trailing dot.
    pub hostname: String,
    /// The region its CNAME should point at.
    pub region: String,
    /// The value the TXT record must hold (published in DNS by design: not a secret).
    pub token: String,
    pub status: String,
    pub created_at: i64,
    pub verified_at: Option<i64>,
    pub last_check_at: Option<i64>,
    pub last_error: Option<String>,
}

impl DomainRow {
    pub fn is_verified(&self) -> bool {
        self.status == VERIFIED
    }
}

const COLUMNS: &str = "id, account_id, hostname, region, token, status, created_at, verified_at, \
    last_check_at, last_error";

impl Db {
    /// Inserts a domain; a unique violation means the hostname is held already.
    pub async fn insert_domain(&self, d: &DomainRow) -> Result<(), sqlx::Error> {
        sqlx::query(sql(format!(
            "INSERT INTO domains ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(&d.id)
        .bind(&d.account_id)
        .bind(&d.hostname)
        .bind(&d.region)
        .bind(&d.token)
        .bind(&d.status)
        .bind(d.created_at)
        .bind(d.verified_at)
        .bind(d.last_check_at)
        .bind(&d.last_error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The domain with this hostname, whichever account holds it.
    pub async fn domain_by_hostname(
        &self,
        hostname: &str,
    ) -> Result<Option<DomainRow>, sqlx::Error> {
        sqlx::query_as(sql(format!(
            "SELECT {COLUMNS} FROM domains WHERE hostname = $1"
        )))
        .bind(hostname)
        .fetch_optional(&self.pool)
        .await
    }

    /// One of the account's domains, by id or by hostname.
    pub async fn domain(
        &self,
        account_id: &str,
        id_or_hostname: &str,
    ) -> Result<Option<DomainRow>, sqlx::Error> {
        sqlx::query_as(sql(format!(
            "SELECT {COLUMNS} FROM domains WHERE (id = $1 OR hostname = $1) AND account_id = $2"
        )))
        .bind(id_or_hostname)
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn domains(&self, account_id: &str) -> Result<Vec<DomainRow>, sqlx::Error> {
        sqlx::query_as(sql(format!(
            "SELECT {COLUMNS} FROM domains WHERE account_id = $1 ORDER BY hostname"
        )))
        .bind(account_id)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn count_domains(&self, account_id: &str) -> Result<i64, sqlx::Error> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM domains WHERE account_id = $1")
            .bind(account_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// Removes a pending domain added before `before` (ms): an unproven claim expires, so
    /// nobody can hold a hostname they do not own by adding it first.
    pub async fn delete_stale_domain(&self, id: &str, before: i64) -> Result<bool, sqlx::Error> {
        let done =
            sqlx::query("DELETE FROM domains WHERE id = $1 AND status = $2 AND created_at < $3")
                .bind(id)
                .bind(PENDING)
                .bind(before)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records the outcome of a verification: `error` is `None` when the records were right,
    /// which verifies the domain.
    pub async fn record_domain_check(
        &self,
        id: &str,
        now: i64,
        error: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let query = match error {
            None => sqlx::query(
                "UPDATE domains SET status = $1, verified_at = COALESCE(verified_at, $2), \
                 last_check_at = $2, last_error = NULL WHERE id = $3",
            )
            .bind(VERIFIED)
            .bind(now)
            .bind(id),
            Some(error) => {
                sqlx::query("UPDATE domains SET last_check_at = $1, last_error = $2 WHERE id = $3")
                    .bind(now)
                    .bind(error)
                    .bind(id)
            }
        };
        query.execute(&self.pool).await?;
        Ok(())
    }

    pub async fn delete_domain(&self, account_id: &str, id: &str) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM domains WHERE id = $1 AND account_id = $2")
            .bind(id)
            .bind(account_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Closes the account's tunnels on `hostname` whose grants are still valid, as closing
    /// them through the API does, recording `reason`; returns each closed tunnel with its
    /// grant's expiry (s).
    pub async fn close_tunnels_on(
        &self,
        account_id: &str,
        hostname: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let now_secs = now_ms / 1000;
        let open: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, grant_expires_at FROM tunnels WHERE account_id = $1 AND hostname = $2 \
             AND closed_by_api = 0 AND grant_expires_at > $3",
        )
        .bind(account_id)
        .bind(hostname)
        .bind(now_secs)
        .fetch_all(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE tunnels SET \
             close_reason = CASE WHEN ended_at IS NULL THEN $1 ELSE close_reason END, \
             ended_at = COALESCE(ended_at, $2), closed_by_api = 1 \
             WHERE account_id = $3 AND hostname = $4 AND closed_by_api = 0 \
             AND grant_expires_at > $5",
        )
        .bind(reason)
        .bind(now_ms)
        .bind(account_id)
        .bind(hostname)
        .bind(now_secs)
        .execute(&self.pool)
        .await?;
        Ok(open)
    }
}

/// The close reason of a tunnel whose custom domain was removed.
pub const DOMAIN_REMOVED_REASON: &str = "its custom domain was removed through the API";
