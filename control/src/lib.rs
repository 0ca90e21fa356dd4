//! Warren's control plane: accounts, API tokens, subdomain claims, custom domains, tunnel
//! grants and history.
//!
//! A library with a thin binary (`warren-control`): the binary, `warren dev` and the tests
//! all call [`AppState::open`], [`app`] and [`serve`]. PostgreSQL in production, SQLite as the
//! embedded default, one set of SQL for both (sqlx `Any`). See `docs/control.md`.
//!
//! # Layout
//! - `config.rs`: [`ControlConfig`], [`RegionConfig`] (and the `--region` syntax)
//! - `state.rs`: [`AppState`]: opens the database, migrates, ensures a signing key
//! - `auth.rs`: tokens (`wrn_<id>_<secret>`, SHA-256 at rest), scopes, the `Caller` and `Edge`
//!   extractors, the failed-authentication limiter
//! - `accounts.rs`: account and token operations shared by API, binary and `warren dev`
//! - `grant.rs`: Ed25519 JWT signing and the JWKS
//! - `dns.rs`: TXT and CNAME lookups that verify custom domains
//! - `api/`: the routes (one file per resource), extractors, the OpenAPI document
//! - `store/`: SQL, one file per table; `events.rs` applies edge reports idempotently
//! - `bus.rs`: with `--redis-url`, session events from the edges' Redis Stream (consumer
//!   group) and closes published to every edge
//! - `error.rs`: [`ApiError`] → `application/problem+json`
//! - `time.rs`: RFC 3339 formatting
//! - `tls.rs`: the HTTPS listener (`--tls-cert-file`, `--tls-key-file`), [`serve_tls`]
//! - `main.rs`, `cli.rs`: the binary
#![forbid(unsafe_code)]

mod accounts;
pub mod api;
mod auth;
pub mod bus;
pub mod config;
pub mod dns;
pub mod error;
mod grant;
mod state;
pub mod store;
mod time;
pub mod tls;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use accounts::{Account, TokenInfo, parse_email};
pub use api::{app, openapi, openapi_json};
pub use auth::{Scope, TOKEN_PREFIX};
pub use config::{ControlConfig, RegionConfig};
pub use error::{ApiError, Problem};
pub use grant::{Jwk, Jwks};
pub use state::AppState;

/// Serves the API on an already bound listener until `shutdown` is cancelled; in-flight
/// requests finish first.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "control listening");
    let consumer = state.config().redis_url.clone().map(|url| {
        tokio::spawn(bus::consume_events(
            state.clone(),
            url,
            shutdown.child_token(),
        ))
    });
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    if let Some(consumer) = consumer {
        // Cancelled with `shutdown`; unapplied entries stay pending in Redis.
        let _ = consumer.await;
    }
    Ok(())
}

/// Like [`serve`], over TLS with `tls` (from [`tls::server_config`]).
pub async fn serve_tls(
    listener: TcpListener,
    tls: std::sync::Arc<rustls::ServerConfig>,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "control listening over TLS");
    let consumer = state.config().redis_url.clone().map(|url| {
        tokio::spawn(bus::consume_events(
            state.clone(),
            url,
            shutdown.child_token(),
        ))
    });
    tls::serve_tls(listener, tls, app(state), shutdown).await?;
    if let Some(consumer) = consumer {
        let _ = consumer.await;
    }
    Ok(())
}

/// Creates an account with a first token (scope `manage`); returns the token, shown once.
pub async fn create_account(
    state: &AppState,
    email: &str,
    admin: bool,
) -> anyhow::Result<(Account, String)> {
    let (row, token, _) = accounts::create_account_row(state, email, admin)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((Account::from(&row), token))
}

/// The token of the dev account (admin, scope `manage`), created on first use and the same
/// on every later call against the same database (`warren dev`).
pub async fn ensure_dev_account(state: &AppState) -> anyhow::Result<String> {
    accounts::ensure_dev_account_token(state)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Adds a new grant signing key; the previous one stays published until its grants expire.
/// Returns the new key id.
pub async fn rotate_key(state: &AppState) -> anyhow::Result<String> {
    let key = grant::new_key();
    state.db().rotate_key(&key).await?;
    Ok(key.kid)
}
