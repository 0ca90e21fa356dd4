//! `POST /internal/v1/names`: which names control's accounts hold, for edges that also accept
//! static tokens (an edge-local account must never take a name an account of control holds).

use axum::Json;
use axum::extract::State;
use warren_proto::held::{MAX_NAMES_PER_QUERY, NamesHeld, NamesQuery};
use warren_proto::names::Subdomain;

use super::extract::ApiJson;
use crate::auth::Edge;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;
use crate::store::now_ms;

#[utoipa::path(post, path = "/internal/v1/names", tag = "internal", security(("edge_secret" = [])),
    request_body = NamesQuery,
    responses(
        (status = 200, description = "The asked names an account holds (claimed, or served under a valid grant)", body = NamesHeld),
        (status = 404, description = "The internal API is disabled (no edge secret)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Too many names, or one is not a valid name", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn held_names(
    State(state): State<AppState>,
    _edge: Edge,
    ApiJson(query): ApiJson<NamesQuery>,
) -> ApiResult<Json<NamesHeld>> {
    if query.names.len() > MAX_NAMES_PER_QUERY {
        return Err(ApiError::Unprocessable(format!(
            "ask about at most {MAX_NAMES_PER_QUERY} names at once"
        )));
    }
    let now_secs = now_ms() / 1000;
    let mut held = Vec::new();
    for raw in &query.names {
        // Reserved names are held by the system itself.
        let name = Subdomain::parse(raw).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
        let db = state.db();
        let hostnames: Vec<String> = state
            .config()
            .regions
            .iter()
            .map(|r| format!("{name}.{}", r.domain.to_ascii_lowercase()))
            .collect();
        if db.claim(name.as_str()).await?.is_some()
            || db.held_by_other("", &hostnames, now_secs).await?
        {
            held.push(name.to_string());
        }
    }
    Ok(Json(NamesHeld { held }))
}
