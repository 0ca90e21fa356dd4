//! The `Tunnel` resource as the API shows it, and `GET /v1/tunnels/history`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::ApiQuery;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;
use crate::store::tunnels::{HistoryQuery, TunnelRow};
use crate::time::rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TunnelState {
    /// Granted; no edge has reported it started yet.
    Pending,
    /// An agent session serves it.
    Live,
    /// Its last session ended, or it was closed through the API.
    Ended,
}

/// One tunnel (one row of history). Times are RFC 3339.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tunnel {
    pub id: String,
    pub account_id: String,
    pub token_id: String,
    pub protocol: String,
    pub hostname: String,
    pub public_url: String,
    pub region: String,
    pub edge_id: Option<String>,
    pub session_id: Option<String>,
    pub agent_version: Option<String>,
    pub agent_addr: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub close_reason: Option<String>,
    /// Bytes from visitors to the agent, over all sessions.
    pub bytes_in: u64,
    /// Bytes from the agent to visitors, over all sessions.
    pub bytes_out: u64,
    pub requests: u64,
    pub state: TunnelState,
}

fn total(a: i64, b: i64) -> u64 {
    u64::try_from(a.saturating_add(b)).unwrap_or(0)
}

impl Tunnel {
    pub fn new(state: &AppState, row: &TunnelRow) -> Tunnel {
        let public_url = match state.region(Some(&row.region)) {
            Some(region) => region.public_url(&row.hostname),
            None => format!("https://{}", row.hostname),
        };
        let tunnel_state = if row.ended_at.is_some() || row.closed_by_api != 0 {
            TunnelState::Ended
        } else if row.started_at.is_some() {
            TunnelState::Live
        } else {
            TunnelState::Pending
        };
        Tunnel {
            id: row.id.clone(),
            account_id: row.account_id.clone(),
            token_id: row.token_id.clone(),
            protocol: row.protocol.clone(),
            hostname: row.hostname.clone(),
            public_url,
            region: row.region.clone(),
            edge_id: row.edge_id.clone(),
            session_id: row.session_id.clone(),
            agent_version: row.agent_version.clone(),
            agent_addr: row.agent_addr.clone(),
            created_at: rfc3339(row.created_at),
            started_at: row.started_at.map(rfc3339),
            ended_at: row.ended_at.map(rfc3339),
            close_reason: row.close_reason.clone(),
            bytes_in: total(row.done_bytes_in, row.cur_bytes_in),
            bytes_out: total(row.done_bytes_out, row.cur_bytes_out),
            requests: total(row.done_requests, row.cur_requests),
            state: tunnel_state,
        }
    }
}

/// Query of `GET /v1/tunnels/history`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Only tunnels of this protocol (`http`).
    pub protocol: Option<String>,
    /// Only tunnels in this region.
    pub region: Option<String>,
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,15}\.[a-z0-9_]{1,64}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    /// Newest first.
    pub tunnels: Vec<Tunnel>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The position after `row`: `{created_at_ms}.{tunnel_id}`. Clients treat it as opaque; the
/// server validates it (the schema's pattern) and parses it back.
fn encode_cursor(row: &TunnelRow) -> String {
    format!("{}.{}", row.created_at, row.id)
}

fn decode_cursor(cursor: &str) -> Result<(i64, String), ApiError> {
    let bad = || {
        ApiError::BadRequest(
            "cursor is not one this API returned; pass next_cursor from the previous page unchanged"
                .into(),
        )
    };
    let (at, id) = cursor.split_once('.').ok_or_else(bad)?;
    let at_ok = (1..=15).contains(&at.len()) && at.bytes().all(|b| b.is_ascii_digit());
    let id_ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !at_ok || !id_ok {
        return Err(bad());
    }
    let at: i64 = at.parse().map_err(|_| bad())?;
    Ok((at, id.to_string()))
}

#[utoipa::path(get, path = "/v1/tunnels/history", tag = "tunnels", security(("bearer" = [])),
    params(HistoryParams),
    responses(
        (status = 200, description = "A page of the account's tunnels, newest first", body = HistoryPage),
        (status = 422, description = "limit out of range", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> ApiResult<Json<HistoryPage>> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::Unprocessable(format!(
            "limit must be between 1 and 200, not {limit}"
        )));
    }
    let before = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let query = HistoryQuery {
        protocol: params
            .protocol
            .filter(|p| !p.is_empty())
            .map(|p| p.to_ascii_lowercase()),
        region: params.region.filter(|r| !r.is_empty()),
        before,
        limit: limit + 1,
    };
    let mut rows = state.db().history(&caller.account.id, &query).await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = if more {
        rows.last().map(encode_cursor)
    } else {
        None
    };
    Ok(Json(HistoryPage {
        tunnels: rows.iter().map(|r| Tunnel::new(&state, r)).collect(),
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        assert_eq!(
            super::decode_cursor("12.tun_a").ok(),
            Some((12, "tun_a".to_string()))
        );
        for bad in [
            "",
            "!!",
            "12",
            ".tun",
            "12.",
            "x.tun",
            "1.TUN",
            "1234567890123456.t",
        ] {
            assert!(super::decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
