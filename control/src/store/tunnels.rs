//! Tunnel history: one row per tunnel, updated by edge reports.
//!
//! Counters are cumulative per session. A row keeps the finished sessions' totals (`done_*`)
//! and the current session's latest counters (`cur_*`); a new session folds `cur_*` into
//! `done_*`. Every update is one conditional statement, so retried reports change nothing.

use sqlx::FromRow;

use super::Db;
use super::domains::DOMAIN_REMOVED_REASON;
use super::sql;

/// A tunnel as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TunnelRow {
    pub id: String,
    pub account_id: String,
    pub token_id: String,
    pub protocol: String,
    pub hostname: String,
    pub region: String,
    pub edge_id: Option<String>,
    pub session_id: Option<String>,
    pub agent_version: Option<String>,
    pub agent_addr: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub close_reason: Option<String>,
    pub closed_by_api: i64,
    /// Unix seconds.
    pub grant_expires_at: i64,
    pub done_bytes_in: i64,
    pub done_bytes_out: i64,
    pub done_requests: i64,
    pub cur_bytes_in: i64,
    pub cur_bytes_out: i64,
    pub cur_requests: i64,
}

const COLUMNS: &str = "id, account_id, token_id, protocol, hostname, region, edge_id, session_id, \
    agent_version, agent_addr, created_at, started_at, ended_at, close_reason, closed_by_api, \
    grant_expires_at, done_bytes_in, done_bytes_out, done_requests, cur_bytes_in, cur_bytes_out, \
    cur_requests";

/// Filters and position of a history page.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub protocol: Option<String>,
    pub region: Option<String>,
    /// Rows strictly older than this `(created_at, id)`.
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

/// Saturating u64 → i64 for counters.
pub fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Db {
    pub async fn insert_tunnel(&self, t: &TunnelRow) -> Result<(), sqlx::Error> {
        sqlx::query(sql(format!(
            "INSERT INTO tunnels ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
        )))
        .bind(&t.id)
        .bind(&t.account_id)
        .bind(&t.token_id)
        .bind(&t.protocol)
        .bind(&t.hostname)
        .bind(&t.region)
        .bind(&t.edge_id)
        .bind(&t.session_id)
        .bind(&t.agent_version)
        .bind(&t.agent_addr)
        .bind(t.created_at)
        .bind(t.started_at)
        .bind(t.ended_at)
        .bind(&t.close_reason)
        .bind(t.closed_by_api)
        .bind(t.grant_expires_at)
        .bind(t.done_bytes_in)
        .bind(t.done_bytes_out)
        .bind(t.done_requests)
        .bind(t.cur_bytes_in)
        .bind(t.cur_bytes_out)
        .bind(t.cur_requests)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One of the account's tunnels.
    pub async fn tunnel(
        &self,
        account_id: &str,
        id: &str,
    ) -> Result<Option<TunnelRow>, sqlx::Error> {
        sqlx::query_as(sql(format!(
            "SELECT {COLUMNS} FROM tunnels WHERE id = $1 AND account_id = $2"
        )))
        .bind(id)
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn set_grant_expiry(&self, id: &str, exp_secs: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE tunnels SET grant_expires_at = $1 WHERE id = $2")
            .bind(exp_secs)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The account's live tunnels: started, not ended, edge seen after `edge_seen_after` (ms).
    pub async fn live_tunnels(
        &self,
        account_id: &str,
        edge_seen_after: i64,
    ) -> Result<Vec<TunnelRow>, sqlx::Error> {
        let columns = COLUMNS
            .split(", ")
            .map(|c| format!("t.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        sqlx::query_as(sql(format!(
            "SELECT {columns} FROM tunnels t JOIN edges e ON e.id = t.edge_id \
             WHERE t.account_id = $1 AND t.started_at IS NOT NULL AND t.ended_at IS NULL \
             AND e.last_seen_at > $2 ORDER BY t.created_at DESC, t.id DESC"
        )))
        .bind(account_id)
        .bind(edge_seen_after)
        .fetch_all(&self.pool)
        .await
    }

    /// A page of the account's history, newest first (`limit` rows at most).
    pub async fn history(
        &self,
        account_id: &str,
        q: &HistoryQuery,
    ) -> Result<Vec<TunnelRow>, sqlx::Error> {
        let mut text = format!("SELECT {COLUMNS} FROM tunnels WHERE account_id = $1");
        let mut n = 1;
        if q.protocol.is_some() {
            n += 1;
            text.push_str(&format!(" AND protocol = ${n}"));
        }
        if q.region.is_some() {
            n += 1;
            text.push_str(&format!(" AND region = ${n}"));
        }
        if q.before.is_some() {
            text.push_str(&format!(
                " AND (created_at < ${} OR (created_at = ${} AND id < ${}))",
                n + 1,
                n + 1,
                n + 2
            ));
            n += 2;
        }
        text.push_str(&format!(
            " ORDER BY created_at DESC, id DESC LIMIT ${}",
            n + 1
        ));
        let mut query = sqlx::query_as(super::sql(text)).bind(account_id);
        if let Some(protocol) = &q.protocol {
            query = query.bind(protocol);
        }
        if let Some(region) = &q.region {
            query = query.bind(region);
        }
        if let Some((created_at, id)) = &q.before {
            query = query.bind(*created_at).bind(id);
        }
        query.bind(q.limit).fetch_all(&self.pool).await
    }

    /// Marks one of the account's tunnels closed through the API; false if it has none such.
    pub async fn close_tunnel(
        &self,
        account_id: &str,
        id: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE tunnels SET ended_at = COALESCE(ended_at, $1), \
             close_reason = CASE WHEN closed_by_api = 0 THEN $2 ELSE close_reason END, \
             closed_by_api = 1 WHERE id = $3 AND account_id = $4",
        )
        .bind(now)
        .bind(CLOSED_REASON)
        .bind(id)
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Tunnels closed through the API (or by revoking their token) in `region` whose grants
    /// are still valid at `now_secs`: id, grant expiry, and why.
    pub async fn closed_tunnels(
        &self,
        region: &str,
        now_secs: i64,
    ) -> Result<Vec<(String, i64, String)>, sqlx::Error> {
        let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(
            "SELECT id, grant_expires_at, close_reason FROM tunnels WHERE region = $1 \
             AND closed_by_api = 1 AND grant_expires_at > $2 \
             ORDER BY grant_expires_at DESC LIMIT 1000",
        )
        .bind(region)
        .bind(now_secs)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, until, reason)| (id, until, api_reason(reason)))
            .collect())
    }

    /// Closes the account's tunnels opened with `token_id` whose grants are still valid at
    /// `now_secs` (the token was revoked); returns their ids and grant expiries.
    pub async fn close_tunnels_of_token(
        &self,
        account_id: &str,
        token_id: &str,
        now_ms: i64,
    ) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let now_secs = now_ms / 1000;
        sqlx::query(
            "UPDATE tunnels SET \
             close_reason = CASE WHEN ended_at IS NULL THEN $1 ELSE close_reason END, \
             ended_at = COALESCE(ended_at, $2), closed_by_api = 1 \
             WHERE account_id = $3 AND token_id = $4 AND closed_by_api = 0 \
             AND grant_expires_at > $5",
        )
        .bind(REVOKED_REASON)
        .bind(now_ms)
        .bind(account_id)
        .bind(token_id)
        .bind(now_secs)
        .execute(&self.pool)
        .await?;
        sqlx::query_as(
            "SELECT id, grant_expires_at FROM tunnels WHERE account_id = $1 AND token_id = $2 \
             AND closed_by_api = 1 AND grant_expires_at > $3",
        )
        .bind(account_id)
        .bind(token_id)
        .bind(now_secs)
        .fetch_all(&self.pool)
        .await
    }

    /// Records that `edge` reported now.
    pub async fn touch_edge(&self, edge: &str, region: &str, now: i64) -> Result<(), sqlx::Error> {
        let done = sqlx::query("UPDATE edges SET region = $1, last_seen_at = $2 WHERE id = $3")
            .bind(region)
            .bind(now)
            .bind(edge)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            let inserted =
                sqlx::query("INSERT INTO edges (id, region, last_seen_at) VALUES ($1, $2, $3)")
                    .bind(edge)
                    .bind(region)
                    .bind(now)
                    .execute(&self.pool)
                    .await;
            match inserted {
                // Another report of the same edge inserted it first: it is fresh either way.
                Err(e) if super::is_unique_violation(&e) => {}
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }
}

/// What an edge tells the agent of a tunnel closed through the API: the stored reason when it
/// is one of the API's (a tunnel that had ended by itself keeps its own reason in history).
fn api_reason(stored: Option<String>) -> String {
    match stored {
        Some(reason)
            if reason == REVOKED_REASON
                || reason == DOMAIN_REMOVED_REASON
                || reason == RELEASED_REASON =>
        {
            reason
        }
        _ => CLOSED_REASON.to_string(),
    }
}

/// The close reason of a tunnel closed through the API.
pub const CLOSED_REASON: &str = "closed through the API";
/// The close reason of a tunnel whose subdomain its account released.
pub const RELEASED_REASON: &str =
    "its subdomain was released through the API (`warren subdomains release`)";
/// The close reason of a tunnel whose token was revoked.
pub const REVOKED_REASON: &str = "the token that opened it was revoked (log in with another token)";
