//! The harness: a fresh database per test (PostgreSQL or SQLite), the app reached either
//! through `oneshot` or over real HTTP, and helpers to make accounts and requests.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use serde_json::Value;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use warren_control::{AppState, ControlConfig, RegionConfig};

pub const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const EDGE_SECRET: &str = "edge-secret-for-tests";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Oneshot,
    Http,
}

/// Where the test database lives, dropped (best effort) at the end.
enum DbGuard {
    Postgres { admin_url: String, name: String },
    Sqlite { path: std::path::PathBuf },
}

pub struct Ctx {
    pub state: AppState,

    transport: Transport,
    app: Router,
    http: Option<(SocketAddr, CancellationToken)>,
    guard: Option<DbGuard>,
    /// An admin account's token (scope manage).
    pub admin: String,
}

/// A response: status, headers, and the body as JSON (Null when empty or not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Resp {
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts the response is a problem+json with this status; returns its detail.
    #[track_caller]
    pub fn problem(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "{}",
            self.text
        );
        assert_eq!(self.json["status"], status, "{}", self.text);
        assert!(
            self.json["type"].as_str().is_some_and(|t| !t.is_empty()),
            "{}",
            self.text
        );
        assert!(
            self.json["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{}",
            self.text
        );
        let detail = self.json["detail"].as_str().unwrap_or_default().to_string();
        assert!(!detail.is_empty(), "{}", self.text);
        detail
    }
}

fn random_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

pub fn region() -> RegionConfig {
    RegionConfig {
        id: "eu".into(),
        name: "Europe".into(),
        location: "Frankfurt".into(),
        domain: "eu.test.example".into(),
        tunnel_url: "ws://127.0.0.1:9/tunnel".into(),
        probe_url: "http://127.0.0.1:9/_warren/probe".into(),
        public_scheme: "http".into(),
        public_port: Some(8080),
    }
}

pub fn region_us() -> RegionConfig {
    RegionConfig {
        id: "us".into(),
        name: "US".into(),
        location: "Virginia".into(),
        domain: "us.test.example".into(),
        tunnel_url: "wss://us.test.example".into(),
        probe_url: "https://us.test.example/_warren/probe".into(),
        public_scheme: "https".into(),
        public_port: None,
    }
}

async fn create_pg_database() -> (String, DbGuard) {
    let base = std::env::var("WARREN_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_PG.to_string());
    sqlx::any::install_default_drivers();
    let mut conn = match tokio::time::timeout(
        Duration::from_secs(10),
        sqlx::AnyConnection::connect(&base),
    )
    .await
    {
        Ok(Ok(conn)) => conn,
        other => panic!(
            "PostgreSQL is not reachable at {base} ({}). These tests need it: run ./scripts/test \
             (it starts PostgreSQL), or on Debian `apt-get install -y postgresql && service \
             postgresql start` with trust auth for 127.0.0.1, or point WARREN_TEST_POSTGRES at a \
             server where user postgres may CREATE DATABASE",
            match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".into(),
            }
        ),
    };
    let name = format!("warren_test_{}", random_suffix());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
    let _ = conn.close().await;
    let (without_query, query) = match base.split_once('?') {
        Some((a, q)) => (a, format!("?{q}")),
        None => (base.as_str(), String::new()),
    };
    let (prefix, _) = without_query
        .rsplit_once('/')
        .expect("database URL has a path");
    let url = format!("{prefix}/{name}{query}");
    (
        url,
        DbGuard::Postgres {
            admin_url: base.clone(),
            name,
        },
    )
}

impl Ctx {
    pub async fn new(backend: Backend, transport: Transport) -> Ctx {
        Ctx::with_regions(backend, transport, vec![region(), region_us()]).await
    }

    pub async fn with_regions(
        backend: Backend,
        transport: Transport,
        regions: Vec<RegionConfig>,
    ) -> Ctx {
        Ctx::with_config(backend, transport, regions, |_| {}).await
    }

    /// A context whose config `configure` changes before control opens.
    pub async fn with_config(
        backend: Backend,
        transport: Transport,
        regions: Vec<RegionConfig>,
        configure: impl FnOnce(&mut ControlConfig),
    ) -> Ctx {
        let (url, guard) = match backend {
            Backend::Postgres => create_pg_database().await,
            Backend::Sqlite => {
                let path = std::env::temp_dir()
                    .join(format!("warren-control-test-{}.db", random_suffix()));
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    DbGuard::Sqlite { path },
                )
            }
        };
        let mut config = ControlConfig::new(url, "http://127.0.0.1:8081");
        config.regions = regions;
        config.edge_secret = Some(EDGE_SECRET.into());
        configure(&mut config);
        let state = AppState::open(config).await.expect("control opens");
        let (_, admin) = warren_control::create_account(&state, "admin@example.com", true)
            .await
            .expect("admin account");
        let app = warren_control::app(state.clone());
        let http = match transport {
            Transport::Oneshot => None,
            Transport::Http => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let addr = listener.local_addr().expect("addr");
                let shutdown = CancellationToken::new();
                tokio::spawn(warren_control::serve(
                    listener,
                    state.clone(),
                    shutdown.clone(),
                ));
                Some((addr, shutdown))
            }
        };
        Ctx {
            state,
            transport,
            app,
            http,
            guard: Some(guard),
            admin,
        }
    }

    /// A new non-admin account; returns its first token (scope manage).
    pub async fn account(&self, email: &str) -> String {
        warren_control::create_account(&self.state, email, false)
            .await
            .expect("account")
            .1
    }

    /// A token of the account behind `manage_token` with these scopes.
    pub async fn token(&self, manage_token: &str, scopes: &[&str]) -> String {
        let r = self
            .call(
                Method::POST,
                "/v1/tokens",
                Some(manage_token),
                Some(serde_json::json!({ "scopes": scopes })),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.json["token"].as_str().expect("token").to_string()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let body = body.map(|b| serde_json::to_vec(&b).expect("json"));
        let mut headers = vec![];
        if body.is_some() {
            headers.push(("content-type", "application/json".to_string()));
        }
        if let Some(token) = token {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        self.raw(
            method,
            path,
            &headers,
            body.unwrap_or_default(),
            "127.0.0.1",
        )
        .await
    }

    /// Any request; `client_ip` is the address the oneshot transport reports (HTTP is always
    /// 127.0.0.1).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        client_ip: &str,
    ) -> Resp {
        let (status, headers, bytes) = match &self.http {
            None => {
                let mut req = Request::builder().method(method).uri(path);
                for (k, v) in headers {
                    req = req.header(*k, v);
                }
                let mut req = req.body(Body::from(body)).expect("request");
                let addr: SocketAddr = format!("{client_ip}:40000").parse().expect("addr");
                req.extensions_mut().insert(ConnectInfo(addr));
                let resp = self.app.clone().oneshot(req).await.expect("infallible");
                let (parts, body) = resp.into_parts();
                let bytes = body.collect().await.expect("body").to_bytes();
                (parts.status, parts.headers, bytes)
            }
            Some((addr, _)) => {
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build_http::<Full<Bytes>>();
                let mut req = Request::builder()
                    .method(method)
                    .uri(format!("http://{addr}{path}"));
                for (k, v) in headers {
                    req = req.header(*k, v);
                }
                let req = req.body(Full::new(Bytes::from(body))).expect("request");
                let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
                    .await
                    .expect("response within 20 s")
                    .expect("HTTP request");
                let (parts, body) = resp.into_parts();
                let bytes = body.collect().await.expect("body").to_bytes();
                (parts.status, parts.headers, bytes)
            }
        };
        let text = String::from_utf8_lossy(&bytes).to_string();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            json,
            text,
        }
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Stops the server and drops the database (best effort).
    pub async fn finish(mut self) {
        if let Some((_, shutdown)) = self.http.take() {
            shutdown.cancel();
        }
        self.state.db().pool.close().await;
        match self.guard.take() {
            Some(DbGuard::Postgres { admin_url, name }) => {
                if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            }
            Some(DbGuard::Sqlite { path }) => {
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(path.with_extension("db-wal"));
                let _ = std::fs::remove_file(path.with_extension("db-shm"));
            }
            None => {}
        }
    }
}

/// Writes each test once and runs it against PostgreSQL and SQLite, through `oneshot` and
/// over real HTTP: `name::pg_oneshot`, `name::pg_http`, `name::sqlite_oneshot`, `name::sqlite_http`.
macro_rules! api_tests {
    ($(async fn $name:ident($ctx:ident: &Ctx) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use crate::common::{Backend, Ctx, Transport};

            async fn run($ctx: &Ctx) $body

            async fn go(backend: Backend, transport: Transport) {
                let ctx = Ctx::new(backend, transport).await;
                run(&ctx).await;
                ctx.finish().await;
            }

            #[tokio::test]
            async fn pg_oneshot() { go(Backend::Postgres, Transport::Oneshot).await }
            #[tokio::test]
            async fn pg_http() { go(Backend::Postgres, Transport::Http).await }
            #[tokio::test]
            async fn sqlite_oneshot() { go(Backend::Sqlite, Transport::Oneshot).await }
            #[tokio::test]
            async fn sqlite_http() { go(Backend::Sqlite, Transport::Http).await }
        }
    )*};
}
pub(crate) use api_tests;

/// Like [`api_tests!`], for tests that need a real DNS server: each gets a fresh
/// `pebble-challtestsrv` (`$dns`) and a control that looks records up there.
macro_rules! dns_api_tests {
    ($(async fn $name:ident($ctx:ident: &Ctx, $dns:ident: &ChallTestSrv) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use crate::challtestsrv::ChallTestSrv;
            use crate::common::{Backend, Ctx, Transport, region, region_us};
            use warren_control::dns::DnsResolver;

            async fn run($ctx: &Ctx, $dns: &ChallTestSrv) $body

            async fn go(backend: Backend, transport: Transport) {
                let dns = ChallTestSrv::start().expect("pebble-challtestsrv starts");
                let at = DnsResolver::At(dns.dns);
                let ctx = Ctx::with_config(backend, transport, vec![region(), region_us()], |c| {
                    c.dns_resolver = at;
                })
                .await;
                run(&ctx, &dns).await;
                ctx.finish().await;
            }

            #[tokio::test]
            async fn pg_oneshot() { go(Backend::Postgres, Transport::Oneshot).await }
            #[tokio::test]
            async fn pg_http() { go(Backend::Postgres, Transport::Http).await }
            #[tokio::test]
            async fn sqlite_oneshot() { go(Backend::Sqlite, Transport::Oneshot).await }
            #[tokio::test]
            async fn sqlite_http() { go(Backend::Sqlite, Transport::Http).await }
        }
    )*};
}
pub(crate) use dns_api_tests;
