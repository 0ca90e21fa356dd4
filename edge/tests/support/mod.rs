//! Test support for an edge connected to control: a tiny real control (JWKS + reports), an
//! agent that speaks the session protocol directly, and grant signing. Everything runs on
//! loopback ports the OS picks.

#![allow(dead_code)]

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warren_edge::grant::jwks::{Jwk, Jwks};
use warren_edge::grant::jwt;
use warren_edge::{Deps, EdgeConfig, Listeners};
use warren_proto::control::{Credential, Hello, Reject, TunnelProtocol, TunnelRequest, Welcome};
use warren_proto::grant::GrantClaims;
use warren_proto::mux::{Heartbeat, Role};
use warren_proto::report::{CloseTunnel, EdgeReport, ReportReply, SessionEvent};
use warren_proto::{Mux, Settings, TunnelId};
use warren_session::handshake::{self, HandshakeError};
use warren_session::{Session, SessionEvent as MuxEvent};

pub const SECRET: &str = "edge-secret-for-tests-0123";
pub const REGION: &str = "local";
pub const DEADLINE: Duration = Duration::from_secs(10);

/// What the fake control serves and has seen.
#[derive(Default)]
pub struct ControlState {
    pub keys: Vec<Jwk>,
    /// While set, every request fails with 503.
    pub down: bool,
    pub jwks_fetches: usize,
    pub reports: Vec<EdgeReport>,
    pub bad_auth: usize,
    pub close: Vec<CloseTunnel>,
}

/// A real HTTP server playing control.
pub struct FakeControl {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<ControlState>>,
    stop: CancellationToken,
}

impl FakeControl {
    pub async fn start(keys: Vec<Jwk>) -> FakeControl {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind control");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(ControlState {
            keys,
            ..ControlState::default()
        }));
        let stop = CancellationToken::new();
        let (task_state, task_stop) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    () = task_stop.cancelled() => return,
                };
                let state = task_state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| control_handler(state.clone(), req));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        FakeControl { addr, state, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut ControlState) -> T) -> T {
        f(&mut self.state.lock().expect("control state"))
    }

    /// Every event reported so far, in order.
    pub fn events(&self) -> Vec<SessionEvent> {
        self.with(|s| s.reports.iter().flat_map(|r| r.events.clone()).collect())
    }

    /// Polls until `found` picks something out of the reported events.
    pub async fn wait_for_event<T>(&self, mut found: impl FnMut(&SessionEvent) -> Option<T>) -> T {
        poll(|| self.events().iter().find_map(&mut found)).await
    }

    /// Stops accepting connections (control is gone).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

async fn control_handler(
    state: Arc<Mutex<ControlState>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let authorized = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == format!("Bearer {SECRET}").as_bytes());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut state = state.lock().expect("control state");
    if state.down {
        return Ok(reply(StatusCode::SERVICE_UNAVAILABLE, b"{}".to_vec()));
    }
    let (status, json) = match path.as_str() {
        "/.well-known/jwks.json" => {
            state.jwks_fetches += 1;
            let jwks = Jwks {
                keys: state.keys.clone(),
            };
            (StatusCode::OK, serde_json::to_vec(&jwks).expect("json"))
        }
        "/internal/v1/reports" if !authorized => {
            state.bad_auth += 1;
            (StatusCode::UNAUTHORIZED, b"{}".to_vec())
        }
        "/internal/v1/reports" => match serde_json::from_slice::<EdgeReport>(&body) {
            Ok(report) => {
                state.reports.push(report);
                let reply = ReportReply {
                    close: state.close.clone(),
                };
                (StatusCode::OK, serde_json::to_vec(&reply).expect("json"))
            }
            Err(_) => (StatusCode::BAD_REQUEST, b"{}".to_vec()),
        },
        _ => (StatusCode::NOT_FOUND, b"{}".to_vec()),
    };
    Ok(reply(status, json))
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// A signing key and its id, as control holds them.
pub struct Key {
    pub kid: String,
    pub signing: SigningKey,
}

impl Key {
    pub fn new(kid: &str) -> Key {
        Key {
            kid: kid.to_string(),
            signing: SigningKey::from_bytes(&rand::random::<[u8; 32]>()),
        }
    }

    pub fn jwk(&self) -> Jwk {
        Jwk::ed25519(&self.kid, &self.signing.verifying_key())
    }

    pub fn sign(&self, claims: &GrantClaims) -> String {
        jwt::sign(claims, &self.kid, &self.signing)
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Claims of a valid grant for `name.localhost`, tunnel `t_<name>`.
pub fn claims(name: &str) -> GrantClaims {
    GrantClaims {
        iss: "warren-control".into(),
        aud: "warren-edge".into(),
        sub: "acct_1".into(),
        iat: now(),
        exp: now() + 3600,
        jti: format!("j_{name}"),
        tunnel_id: format!("t_{name}"),
        token_id: "0123456789abcdef".into(),
        protocol: TunnelProtocol::Http,
        hostname: format!("{name}.localhost"),
        region: REGION.into(),
        custom_domain: false,
    }
}

/// An edge connected to `control`.
pub struct Edge {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Edge {
    pub fn config(control: &FakeControl) -> EdgeConfig {
        EdgeConfig {
            control_url: Some(control.url()),
            control_insecure_http: true,
            control_secret: Some(SECRET.into()),
            region: REGION.into(),
            heartbeat_interval: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(3),
            ..EdgeConfig::default()
        }
    }

    pub async fn start(control: &FakeControl) -> Edge {
        Edge::start_with(Edge::config(control)).await
    }

    pub async fn start_with(config: EdgeConfig) -> Edge {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind edge");
        let addr = listener.local_addr().expect("addr");
        let deps = Deps::with_control(&config).await.expect("deps");
        let shutdown = CancellationToken::new();
        let listeners = Listeners {
            visitor: listener,
            tunnel: None,
            relay: None,
            tls: None,
            admin: None,
        };
        let handle = tokio::spawn(warren_edge::run(config, deps, listeners, shutdown.clone()));
        Edge {
            addr,
            shutdown,
            handle,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(DEADLINE, self.handle).await;
        assert!(matches!(result, Ok(Ok(Ok(())))), "edge stopped badly");
    }
}

/// An agent session serving an HTTP service in-process: `GET` answers `hello from <path>`,
/// `POST` echoes the body.
pub struct Agent {
    pub session: Session,
    pub welcome: Welcome,
    pub events: tokio::sync::mpsc::Receiver<MuxEvent>,
}

pub fn hello(credential: Credential, subdomains: &[Option<&str>]) -> Hello {
    Hello {
        agent_version: "warren-test 0".into(),
        credential,
        tunnels: subdomains
            .iter()
            .enumerate()
            .map(|(i, s)| TunnelRequest {
                id: TunnelId(i as u32),
                protocol: TunnelProtocol::Http,
                subdomain: s.map(str::to_string),
                local_addr: "127.0.0.1:3000".into(),
                host_header: None,
            })
            .collect(),
        settings: Settings::default(),
        request_log: false,
        request_log_batches: false,
        request_log_compact: false,
        join: None,
        dynamic_tunnels: false,
    }
}

impl Agent {
    /// Connects with a grant for the first label of its hostname.
    pub async fn connect_grant(
        edge: &Edge,
        grant: &str,
        subdomain: Option<&str>,
    ) -> Result<Agent, Reject> {
        Agent::connect(edge, hello(Credential::Grant(grant.into()), &[subdomain])).await
    }

    pub async fn connect(edge: &Edge, hello: Hello) -> Result<Agent, Reject> {
        let url = format!("ws://{}/_warren/tunnel", edge.addr);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(
            url,
            Some(warren_session::ws_config()),
            true,
        )
        .await
        .expect("websocket connect");
        let mut ws = warren_session::WebSocket::from_client_handshake(ws);
        let welcome = match handshake::agent_hello(&mut ws, &hello, DEADLINE).await {
            Ok(welcome) => welcome,
            Err(HandshakeError::Rejected(reject)) => return Err(reject),
            Err(e) => panic!("handshake failed: {e}"),
        };
        let heartbeat = Heartbeat {
            interval: Duration::from_millis(welcome.heartbeat_interval_ms),
            timeout: Duration::from_millis(welcome.heartbeat_timeout_ms),
        };
        let mux = Mux::new(
            Role::Agent,
            hello.settings,
            welcome.settings,
            heartbeat,
            tokio::time::Instant::now().into_std(),
        );
        let (session, mut incoming, events) =
            warren_session::spawn(ws, mux, tracing::info_span!("test-agent"));
        tokio::spawn(async move {
            while let Some(stream) = incoming.accept().await {
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(origin))
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(Agent {
            session,
            welcome,
            events,
        })
    }
}

async fn origin(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if req.method() == http::Method::POST {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Ok(Response::new(Full::new(body)));
    }
    Ok(Response::new(Full::new(Bytes::from(format!(
        "hello from {path}"
    )))))
}

/// One HTTP/1.1 request to the edge with `Host: host`; the status and body.
pub async fn visit(edge: &Edge, host: &str, method: &str, body: &[u8]) -> (StatusCode, Bytes) {
    visit_addr(edge.addr, host, method, body).await
}

/// [`visit`] an edge by address (from a spawned task).
pub async fn visit_addr(
    addr: SocketAddr,
    host: &str,
    method: &str,
    body: &[u8],
) -> (StatusCode, Bytes) {
    let tcp = TcpStream::connect(addr).await.expect("connect to edge");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("http handshake");
    tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri("/path")
        .header(http::header::HOST, host)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

/// Polls `check` until it returns something, failing the test after [`DEADLINE`].
pub async fn poll<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let started = tokio::time::Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "condition not met within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
