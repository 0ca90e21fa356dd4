//! Applying edge session events to tunnel rows, idempotently.

use warren_proto::report::SessionEvent;

use super::Db;
use super::tunnels::count;

impl Db {
    /// Applies one event from `edge_id`; unknown tunnels and stale sessions change nothing.
    pub async fn apply_event(
        &self,
        edge_id: &str,
        event: &SessionEvent,
    ) -> Result<(), sqlx::Error> {
        match event {
            SessionEvent::Started {
                tunnel_id,
                session_id,
                account_id,
                agent_version,
                agent_addr,
                at_ms,
                ..
            } => {
                sqlx::query(
                    "UPDATE tunnels SET \
                     done_bytes_in = done_bytes_in + cur_bytes_in, \
                     done_bytes_out = done_bytes_out + cur_bytes_out, \
                     done_requests = done_requests + cur_requests, \
                     cur_bytes_in = 0, cur_bytes_out = 0, cur_requests = 0, \
                     session_id = $1, edge_id = $2, agent_version = $3, agent_addr = $4, \
                     started_at = COALESCE(started_at, $5), \
                     ended_at = CASE WHEN closed_by_api = 1 THEN ended_at ELSE NULL END, \
                     close_reason = CASE WHEN closed_by_api = 1 THEN close_reason ELSE NULL END \
                     WHERE id = $6 AND account_id = $7 AND (session_id IS NULL OR session_id <> $8)",
                )
                .bind(session_id)
                .bind(edge_id)
                .bind(agent_version)
                .bind(agent_addr)
                .bind(count(*at_ms))
                .bind(tunnel_id)
                .bind(account_id)
                .bind(session_id)
                .execute(&self.pool)
                .await?;
            }
            SessionEvent::Counters {
                tunnel_id,
                session_id,
                bytes_in,
                bytes_out,
                requests,
                ..
            } => {
                self.raise_counters(tunnel_id, session_id, *bytes_in, *bytes_out, *requests)
                    .await?;
            }
            SessionEvent::Ended {
                tunnel_id,
                session_id,
                reason,
                bytes_in,
                bytes_out,
                requests,
                at_ms,
            } => {
                self.raise_counters(tunnel_id, session_id, *bytes_in, *bytes_out, *requests)
                    .await?;
                sqlx::query(
                    "UPDATE tunnels SET ended_at = COALESCE(ended_at, $1), \
                     close_reason = COALESCE(close_reason, $2) WHERE id = $3 AND session_id = $4",
                )
                .bind(count(*at_ms))
                .bind(reason)
                .bind(tunnel_id)
                .bind(session_id)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Counters are cumulative per session: keep the larger of stored and reported.
    async fn raise_counters(
        &self,
        tunnel_id: &str,
        session_id: &str,
        bytes_in: u64,
        bytes_out: u64,
        requests: u64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE tunnels SET \
             cur_bytes_in = CASE WHEN cur_bytes_in < $1 THEN $1 ELSE cur_bytes_in END, \
             cur_bytes_out = CASE WHEN cur_bytes_out < $2 THEN $2 ELSE cur_bytes_out END, \
             cur_requests = CASE WHEN cur_requests < $3 THEN $3 ELSE cur_requests END \
             WHERE id = $4 AND session_id = $5",
        )
        .bind(count(bytes_in))
        .bind(count(bytes_out))
        .bind(count(requests))
        .bind(tunnel_id)
        .bind(session_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
