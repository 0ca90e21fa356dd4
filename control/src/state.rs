//! The shared state of every handler: config, database, auth limiter.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::auth::AuthLimiter;
use crate::config::{ControlConfig, RegionConfig, redact_url};
use crate::store::Db;
use warren_bus::RedisConnection;

/// Failed authentications allowed per client address and window before 429.
pub const AUTH_FAILURES_PER_WINDOW: u32 = 10;
pub const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Cheap to clone: everything is behind one `Arc`.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    config: ControlConfig,
    db: Db,
    limiter: AuthLimiter,
    /// The cluster's Redis, for publishing closes (`bus.rs`).
    redis: Option<RedisConnection>,
}

impl AppState {
    /// Connects to the database, applies migrations and makes sure a signing key exists.
    pub async fn open(config: ControlConfig) -> anyhow::Result<AppState> {
        validate(&config)?;
        let db = Db::connect(&config.database_url)
            .await
            .with_context(|| format!("connecting to {}", redact_url(&config.database_url)))?;
        db.migrate().await.context("applying database migrations")?;
        if db
            .current_key()
            .await
            .context("reading signing keys")?
            .is_none()
        {
            db.rotate_key(&crate::grant::new_key())
                .await
                .context("creating the first signing key")?;
        }
        let redis = match &config.redis_url {
            Some(url) => Some(RedisConnection::connect(url).await.context(
                "connecting to the cluster's Redis (--redis-url); start it or leave the flag out",
            )?),
            None => None,
        };
        Ok(AppState(Arc::new(Inner {
            config,
            db,
            limiter: AuthLimiter::new(AUTH_FAILURES_PER_WINDOW, AUTH_FAILURE_WINDOW),
            redis,
        })))
    }

    pub fn config(&self) -> &ControlConfig {
        &self.0.config
    }

    pub fn db(&self) -> &Db {
        &self.0.db
    }

    /// Failed authentications a client address may make per minute before it gets 429
    /// (default [`AUTH_FAILURES_PER_WINDOW`]).
    pub fn set_auth_failure_limit(&self, per_minute: u32) {
        self.0.limiter.set_max(per_minute);
    }

    pub fn redis(&self) -> Option<&RedisConnection> {
        self.0.redis.as_ref()
    }

    pub fn limiter(&self) -> &AuthLimiter {
        &self.0.limiter
    }

    /// The region with this id; `None`, empty or `auto` is the default (first) region.
    pub fn region(&self, id: Option<&str>) -> Option<&RegionConfig> {
        match id {
            None | Some("") | Some("auto") => self.0.config.regions.first(),
            Some(id) => self.0.config.regions.iter().find(|r| r.id == id),
        }
    }
}

fn validate(config: &ControlConfig) -> anyhow::Result<()> {
    if config.regions.is_empty() {
        bail!("control needs at least one region (--region id=...,domain=...,tunnel_url=...)");
    }
    let mut ids = HashSet::new();
    for region in &config.regions {
        region.validate().map_err(anyhow::Error::msg)?;
        if !ids.insert(region.id.as_str()) {
            bail!("region {:?} is configured twice", region.id);
        }
    }
    // A few seconds are allowed so that tests can watch grants expire and be renewed (the CLI's
    // renewal test uses 4 s); operators want minutes to hours.
    if config.grant_ttl < Duration::from_secs(2) {
        bail!("the grant lifetime must be at least 2 s");
    }
    if config.instance_id.is_empty() || config.instance_id.len() > 200 {
        bail!("the instance id must be 1 to 200 characters");
    }
    if config.edge_secret.as_ref().is_some_and(|s| s.is_empty()) {
        bail!("the edge secret must not be empty (omit it to disable the internal API)");
    }
    Ok(())
}
