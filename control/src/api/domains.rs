//! `/v1/domains`: custom domains. An account adds a hostname it owns, creates the two DNS
//! records control names (a CNAME to the region, a TXT record holding a token), asks control to
//! verify them, and from then on may open tunnels on it (`POST /v1/tunnels` with `domain`).
//!
//! One hostname belongs to one account. A domain nobody verified within
//! [`PENDING_EXPIRY_MS`] can be added by another account, so adding a name first does not
//! keep its owner out.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warren_proto::names::CustomDomain;
use warren_proto::report::CloseTunnel;

use super::extract::ApiJson;
use crate::auth::{Caller, Scope};
use crate::config::RegionConfig;
use crate::dns::LookupError;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;
use crate::store::domains::{DOMAIN_REMOVED_REASON, DomainRow, PENDING};
use crate::store::{is_unique_violation, now_ms, random_hex};
use crate::time::rfc3339;

/// The label of the TXT record that proves ownership: `_warren-challenge.<hostname>`.
pub const CHALLENGE_LABEL: &str = "_warren-challenge";
/// Domains one account may hold.
pub const MAX_DOMAINS_PER_ACCOUNT: i64 = 100;
/// A pending domain older than this (72 h) no longer keeps other accounts from adding it.
pub const PENDING_EXPIRY_MS: i64 = 72 * 3600 * 1000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomain {
    /// A fully qualified hostname you control, e.g. `app.example.com`; stored lowercase. Not an
    /// IP address, not under this Warren's own domains.
    #[schema(max_length = 253, example = "app.example.com")]
    pub hostname: String,
    /// The region its CNAME points at (and its tunnels run in by default); omitted or `auto`
    /// = the default region.
    pub region: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DomainStatus {
    /// Added; its DNS records were not seen yet. Tunnels cannot use it.
    Pending,
    /// Its TXT and CNAME records were seen: tunnels can use it.
    Verified,
}

/// A DNS record to create at the domain's DNS provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DnsRecord {
    /// `CNAME` or `TXT`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The record's name (fully qualified, without the trailing dot).
    pub name: String,
    /// What it must hold.
    pub value: String,
}

/// A custom domain and the records that verify it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DomainInfo {
    pub id: String,
    pub hostname: String,
    pub region: String,
    pub status: DomainStatus,
    /// Create these two records, then `POST /v1/domains/{id}/verify`.
    pub records: Vec<DnsRecord>,
    pub created_at: String,
    pub verified_at: Option<String>,
    /// When control last looked the records up.
    pub last_check_at: Option<String>,
    /// What the last lookup found wrong.
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DomainList {
    pub domains: Vec<DomainInfo>,
}

impl DomainInfo {
    fn new(state: &AppState, row: &DomainRow) -> DomainInfo {
        let target = state
            .region(Some(&row.region))
            .map_or_else(|| row.region.clone(), |r| r.domain.clone());
        DomainInfo {
            id: row.id.clone(),
            hostname: row.hostname.clone(),
            region: row.region.clone(),
            status: if row.is_verified() {
                DomainStatus::Verified
            } else {
                DomainStatus::Pending
            },
            records: vec![
                DnsRecord {
                    kind: "CNAME".into(),
                    name: row.hostname.clone(),
                    value: target,
                },
                DnsRecord {
                    kind: "TXT".into(),
                    name: challenge_name(&row.hostname),
                    value: row.token.clone(),
                },
            ],
            created_at: rfc3339(row.created_at),
            verified_at: row.verified_at.map(rfc3339),
            last_check_at: row.last_check_at.map(rfc3339),
            last_error: row.last_error.clone(),
        }
    }
}

/// `_warren-challenge.<hostname>`.
pub fn challenge_name(hostname: &str) -> String {
    format!("{CHALLENGE_LABEL}.{hostname}")
}

const NOT_FOUND_HINT: &str = "list them with `GET /v1/domains` (`warren domains list`)";

fn not_found(what: &str) -> ApiError {
    ApiError::NotFound(format!(
        "this account has no domain {what:?}; {NOT_FOUND_HINT}"
    ))
}

/// The caller's domain named by id or hostname.
async fn find(state: &AppState, caller: &Caller, id: &str) -> ApiResult<DomainRow> {
    let key = id.trim().trim_end_matches('.').to_ascii_lowercase();
    state
        .db()
        .domain(&caller.account.id, &key)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Parses a requested hostname and refuses names under this Warren's own region domains.
pub fn parse_hostname(state: &AppState, raw: &str) -> ApiResult<CustomDomain> {
    let domain = CustomDomain::parse(raw).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    if let Some(region) = state
        .config()
        .regions
        .iter()
        .find(|r| domain.is_within(&r.domain))
    {
        return Err(ApiError::Unprocessable(format!(
            "{domain} is under {}, a domain of this Warren itself; use a subdomain tunnel \
             (`warren http --subdomain`) for names there",
            region.domain
        )));
    }
    Ok(domain)
}

#[utoipa::path(post, path = "/v1/domains", tag = "domains", security(("bearer" = [])),
    request_body = NewDomain,
    responses(
        (status = 201, description = "Added (or already this account's); create the records it lists, then verify", body = DomainInfo),
        (status = 403, description = "The token lacks the manage scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown region", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another account holds the hostname, or this account holds 100 domains", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a valid hostname, or one under this Warren's own domains", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_domain(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewDomain>,
) -> ApiResult<(StatusCode, Json<DomainInfo>)> {
    caller.require(Scope::Manage, "adding domains")?;
    let hostname = parse_hostname(&state, &body.hostname)?;
    let region = super::tunnels::region_or_404(&state, body.region.as_deref())?;
    let db = state.db();
    if let Some(existing) = db.domain_by_hostname(hostname.as_str()).await? {
        if existing.account_id == caller.account.id {
            return Ok((
                StatusCode::CREATED,
                Json(DomainInfo::new(&state, &existing)),
            ));
        }
        if !db
            .delete_stale_domain(&existing.id, now_ms() - PENDING_EXPIRY_MS)
            .await?
        {
            return Err(taken(&hostname));
        }
    }
    if db.count_domains(&caller.account.id).await? >= MAX_DOMAINS_PER_ACCOUNT {
        return Err(ApiError::Conflict(format!(
            "this account holds {MAX_DOMAINS_PER_ACCOUNT} domains, the most it may; remove one \
             with `DELETE /v1/domains/{{id}}` first"
        )));
    }
    let row = DomainRow {
        id: format!("dom_{}", random_hex(8)),
        account_id: caller.account.id.clone(),
        hostname: hostname.to_string(),
        region: region.id.clone(),
        token: random_hex(16),
        status: PENDING.into(),
        created_at: now_ms(),
        verified_at: None,
        last_check_at: None,
        last_error: None,
    };
    match db.insert_domain(&row).await {
        Ok(()) => Ok((StatusCode::CREATED, Json(DomainInfo::new(&state, &row)))),
        Err(e) if is_unique_violation(&e) => Err(taken(&hostname)),
        Err(e) => Err(e.into()),
    }
}

fn taken(hostname: &CustomDomain) -> ApiError {
    ApiError::Conflict(format!(
        "{hostname} was added by another account; one hostname belongs to one account (an \
         unverified one is released 72 h after it was added)"
    ))
}

#[utoipa::path(get, path = "/v1/domains", tag = "domains", security(("bearer" = [])),
    responses((status = 200, description = "The account's domains", body = DomainList)))]
pub async fn list_domains(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<DomainList>> {
    let rows = state.db().domains(&caller.account.id).await?;
    Ok(Json(DomainList {
        domains: rows.iter().map(|r| DomainInfo::new(&state, r)).collect(),
    }))
}

#[utoipa::path(get, path = "/v1/domains/{id}", tag = "domains", security(("bearer" = [])),
    params(("id" = String, Path, description = "The domain's id, or its hostname")),
    responses(
        (status = 200, description = "The domain", body = DomainInfo),
        (status = 404, description = "This account has no such domain", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn domain(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DomainInfo>> {
    let row = find(&state, &caller, &id).await?;
    Ok(Json(DomainInfo::new(&state, &row)))
}

#[utoipa::path(post, path = "/v1/domains/{id}/verify", tag = "domains", security(("bearer" = [])),
    params(("id" = String, Path, description = "The domain's id, or its hostname")),
    responses(
        (status = 200, description = "Verified (now, or before)", body = DomainInfo),
        (status = 403, description = "The token lacks the manage scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "This account has no such domain", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A record is missing or wrong; the detail says which and what was found", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The DNS resolver did not answer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify_domain(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DomainInfo>> {
    caller.require(Scope::Manage, "verifying domains")?;
    let row = find(&state, &caller, &id).await?;
    if row.is_verified() {
        return Ok(Json(DomainInfo::new(&state, &row)));
    }
    let region = state.region(Some(&row.region)).ok_or_else(|| {
        ApiError::Conflict(format!(
            "region {} of {} is no longer configured; remove the domain and add it again",
            row.region, row.hostname
        ))
    })?;
    let outcome = check_records(&state, &row, region).await;
    let error = outcome.as_ref().err().map(ToString::to_string);
    state
        .db()
        .record_domain_check(&row.id, now_ms(), error.as_deref())
        .await?;
    outcome?;
    let row = find(&state, &caller, &row.id).await?;
    tracing::info!(domain = %row.hostname, account = %row.account_id, "custom domain verified");
    Ok(Json(DomainInfo::new(&state, &row)))
}

/// Looks up the TXT and CNAME records; the error names every record that is missing or wrong
/// and what was found instead.
async fn check_records(state: &AppState, row: &DomainRow, region: &RegionConfig) -> ApiResult<()> {
    let dns = state.config().dns_resolver;
    let host = &row.hostname;
    let txt_name = challenge_name(host);
    let (txt, cname) = tokio::join!(dns.txt(&txt_name), dns.cname(host));
    let mut wrong = Vec::new();
    match txt {
        Ok(values) if values.iter().any(|v| v == &row.token) => {}
        Ok(values) => wrong.push(format!(
            "the TXT record at {txt_name} holds {}, not {:?}",
            shown(&values),
            row.token
        )),
        Err(LookupError::NoRecords) => wrong.push(format!(
            "there is no TXT record at {txt_name}; create it with the value {:?}",
            row.token
        )),
        Err(LookupError::Failed(why)) => return Err(ApiError::Unavailable(why)),
    }
    match cname {
        Ok(targets) if targets.iter().any(|t| t == &region.domain) => {}
        Ok(targets) => wrong.push(format!(
            "{host} is a CNAME for {}, not for {}",
            shown(&targets),
            region.domain
        )),
        Err(LookupError::NoRecords) => wrong.push(format!(
            "there is no CNAME record at {host}; create {host} CNAME {}",
            region.domain
        )),
        Err(LookupError::Failed(why)) => return Err(ApiError::Unavailable(why)),
    }
    if wrong.is_empty() {
        return Ok(());
    }
    Err(ApiError::Conflict(format!(
        "{host} is not verified: {} ({} asked; new records can take minutes to be visible, \
         then verify again)",
        wrong.join("; "),
        dns.describe()
    )))
}

/// Values found in DNS, quoted and cut short (they are whatever the zone holds).
fn shown(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("{:?}", v.chars().take(100).collect::<String>()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[utoipa::path(delete, path = "/v1/domains/{id}", tag = "domains", security(("bearer" = [])),
    params(("id" = String, Path, description = "The domain's id, or its hostname")),
    responses(
        (status = 204, description = "Removed; its live tunnels are closed"),
        (status = 403, description = "The token lacks the manage scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "This account has no such domain", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_domain(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Manage, "removing domains")?;
    let row = find(&state, &caller, &id).await?;
    let db = state.db();
    if !db.delete_domain(&caller.account.id, &row.id).await? {
        return Err(not_found(&id));
    }
    // After the row is gone no grant names the hostname any more; close what is open on it:
    // at once over Redis, else with the edges' next report.
    let closed = db
        .close_tunnels_on(
            &caller.account.id,
            &row.hostname,
            DOMAIN_REMOVED_REASON,
            now_ms(),
        )
        .await?;
    let closes: Vec<CloseTunnel> = closed
        .iter()
        .map(|(tunnel_id, until)| CloseTunnel {
            tunnel_id: tunnel_id.clone(),
            reason: DOMAIN_REMOVED_REASON.to_string(),
            until: u64::try_from(*until).unwrap_or(0),
        })
        .collect();
    crate::bus::publish_closes(&state, &closes).await;
    tracing::info!(domain = %row.hostname, closed = closes.len(), "custom domain removed");
    Ok(StatusCode::NO_CONTENT)
}
