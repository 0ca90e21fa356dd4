//! Public endpoints: regions, the JWKS, health and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, Problem};
use crate::grant::{Jwk, Jwks};
use crate::state::AppState;
use crate::store::now_ms;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Region {
    pub id: String,
    pub name: String,
    pub location: String,
    /// Where agents connect.
    pub tunnel_url: String,
    /// What the CLI probes to measure latency.
    pub probe_url: String,
    /// Tunnels are `NAME.{domain}`.
    pub domain: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RegionList {
    pub regions: Vec<Region>,
}

#[utoipa::path(get, path = "/v1/regions", tag = "regions",
    responses((status = 200, description = "The regions; the first is the default", body = RegionList)))]
pub async fn regions(State(state): State<AppState>) -> Json<RegionList> {
    let regions = state
        .config()
        .regions
        .iter()
        .map(|r| Region {
            id: r.id.clone(),
            name: r.name.clone(),
            location: r.location.clone(),
            tunnel_url: r.tunnel_url.clone(),
            probe_url: r.probe_url.clone(),
            domain: r.domain.clone(),
        })
        .collect();
    Json(RegionList { regions })
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "grants",
    responses((status = 200, description = "Public keys that verify grants (current and recently retired)", body = Jwks)))]
pub async fn jwks(State(state): State<AppState>) -> ApiResult<Json<Jwks>> {
    let ttl_ms = i64::try_from(state.config().grant_ttl.as_millis()).unwrap_or(i64::MAX);
    // A retired key stays published while grants it signed may be valid (plus a minute).
    let keys = state
        .db()
        .published_keys(now_ms() - ttl_ms - 60_000)
        .await?;
    Ok(Json(Jwks {
        keys: keys.iter().map(Jwk::from).collect(),
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "The database answers", body = Health),
        (status = 503, description = "The database does not answer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<(StatusCode, Json<Health>)> {
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.db().ping()).await {
        Ok(Ok(())) => Ok((
            StatusCode::OK,
            Json(Health {
                status: "ok".into(),
            }),
        )),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::Unavailable("the database does not answer".into()))
        }
        Err(_) => Err(ApiError::Unavailable(
            "the database did not answer within 2 s".into(),
        )),
    }
}
