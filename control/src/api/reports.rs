//! `POST /internal/v1/reports`: edges report session events and learn what to close.

use axum::Json;
use axum::extract::State;
use warren_proto::report::{CloseTunnel, EdgeReport, MAX_EVENTS_PER_REPORT, ReportReply};

use super::extract::ApiJson;
use crate::auth::Edge;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;
use crate::store::now_ms;

#[utoipa::path(post, path = "/internal/v1/reports", tag = "internal", security(("edge_secret" = [])),
    request_body = EdgeReport,
    responses(
        (status = 200, description = "Applied; the reply lists tunnels to close", body = ReportReply),
        (status = 404, description = "The internal API is disabled (no edge secret)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn report(
    State(state): State<AppState>,
    _edge: Edge,
    ApiJson(report): ApiJson<EdgeReport>,
) -> ApiResult<Json<ReportReply>> {
    check(&report).map_err(ApiError::Unprocessable)?;
    apply(&state, &report).await?;
    let now = now_ms();
    let closed = state
        .db()
        .closed_tunnels(&report.region, now / 1000)
        .await?;
    let close = closed
        .into_iter()
        .map(|(tunnel_id, until, reason)| CloseTunnel {
            tunnel_id,
            reason,
            until: u64::try_from(until).unwrap_or(0),
        })
        .collect();
    Ok(Json(ReportReply { close }))
}

/// What makes a report acceptable, over HTTP or from the Redis Stream.
pub(crate) fn check(report: &EdgeReport) -> Result<(), String> {
    if report.events.len() > MAX_EVENTS_PER_REPORT {
        return Err(format!(
            "a report carries at most {MAX_EVENTS_PER_REPORT} events, this one {}",
            report.events.len()
        ));
    }
    if report.edge_id.is_empty() || report.edge_id.len() > 200 || report.region.is_empty() {
        return Err("edge_id and region must be non-empty".into());
    }
    Ok(())
}

/// Records that the edge is alive and applies its events (idempotently: a report applied
/// twice changes nothing).
pub(crate) async fn apply(state: &AppState, report: &EdgeReport) -> Result<(), sqlx::Error> {
    let db = state.db();
    db.touch_edge(&report.edge_id, &report.region, now_ms())
        .await?;
    for event in &report.events {
        db.apply_event(&report.edge_id, event).await?;
    }
    Ok(())
}
