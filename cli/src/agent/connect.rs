//! Connecting to the edge: WebSocket, HELLO, WELCOME. Every failure becomes an [`AgentError`]
//! whose message is one sentence that says what to do.

use crate::agent::options::AgentOptions;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, http::HeaderValue};
use warren_proto::control::{
    Credential, Hello, Join, Reject, RejectCode, TunnelProtocol, TunnelRequest, Welcome,
};
use warren_proto::mux::{Heartbeat, Role};
use warren_proto::{Mux, Settings, TunnelId};
use warren_session::handshake::{self, HandshakeError};
use warren_session::{Incoming, Session, SessionEvent, WebSocket};

pub const AGENT_VERSION: &str = concat!("warren ", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "could not reach the Warren edge at {url}: {reason}. Check --edge (or WARREN_EDGE) and that the edge is running"
    )]
    EdgeUnreachable { url: String, reason: String },
    #[error("{url} answered HTTP {status}, so it is not a Warren tunnel endpoint: check --edge")]
    NotAnEdge { url: String, status: u16 },
    #[error("the edge refused the token: {0}")]
    Unauthorized(String),
    #[error("{0}")]
    Rejected(String),
    #[error("the edge may accept this later: {0}")]
    Unavailable(String),
    #[error("the handshake with the edge failed: {0}")]
    Handshake(String),
    #[error("the tunnel was closed: {0}")]
    Closed(String),
    #[error("invalid options: {0}")]
    Options(String),
}

impl AgentError {
    /// Whether trying again cannot help: the user has to change something first.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            AgentError::Unauthorized(_)
                | AgentError::Rejected(_)
                | AgentError::Closed(_)
                | AgentError::Options(_)
                | AgentError::NotAnEdge { .. }
        )
    }

    fn from_reject(reject: Reject) -> AgentError {
        match reject.code {
            RejectCode::Unauthorized | RejectCode::Forbidden => {
                AgentError::Unauthorized(reject.message)
            }
            code if code.is_retryable() => AgentError::Unavailable(reject.message),
            _ => AgentError::Rejected(reject.message),
        }
    }
}

/// A session that completed its handshake.
pub struct Established {
    pub session: Session,
    pub incoming: Incoming,
    pub events: tokio::sync::mpsc::Receiver<SessionEvent>,
    pub welcome: Welcome,
}

/// Connects to the edge and completes the handshake within `options.connect_timeout`.
pub async fn establish(options: &AgentOptions) -> Result<Established, AgentError> {
    establish_with(options, None).await
}

/// Connects one more session and joins it to the session `join` names, as a lane.
pub async fn establish_lane(
    options: &AgentOptions,
    join: &Join,
) -> Result<Established, AgentError> {
    establish_with(options, Some(join)).await
}

async fn establish_with(
    options: &AgentOptions,
    join: Option<&Join>,
) -> Result<Established, AgentError> {
    let url = options.edge_url.clone();
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| AgentError::Options(format!("--edge {url:?}: {e}")))?;
    request
        .headers_mut()
        .insert("user-agent", HeaderValue::from_static(AGENT_VERSION));
    let timed_out = || AgentError::EdgeUnreachable {
        url: url.clone(),
        reason: format!("no answer within {} s", options.connect_timeout.as_secs()),
    };
    if url.starts_with("wss://") {
        let stream = tokio::time::timeout(options.connect_timeout, tls_connect(options, &request))
            .await
            .map_err(|_| timed_out())??;
        let connect = tokio_tungstenite::client_async_with_config(
            request,
            stream,
            Some(warren_session::ws_config()),
        );
        let (ws, _) = tokio::time::timeout(options.connect_timeout, connect)
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| connect_error(&url, e))?;
        return handshake_on(options, join, WebSocket::from_client_handshake(ws)).await;
    }
    let connect = tokio_tungstenite::connect_async_with_config(
        request,
        Some(warren_session::ws_config()),
        true,
    );
    let (ws, _) = tokio::time::timeout(options.connect_timeout, connect)
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| connect_error(&url, e))?;
    handshake_on(options, join, WebSocket::from_client_handshake(ws)).await
}

/// TCP, then TLS to the edge, verified as `options.tls` says.
async fn tls_connect(
    options: &AgentOptions,
    request: &tungstenite::handshake::client::Request,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, AgentError> {
    let url = &options.edge_url;
    let unreachable = |reason: String| AgentError::EdgeUnreachable {
        url: url.clone(),
        reason,
    };
    let host = request
        .uri()
        .host()
        .ok_or_else(|| AgentError::Options(format!("--edge {url:?} names no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = request.uri().port_u16().unwrap_or(443);
    let config = super::tls::client_config(&options.tls).map_err(AgentError::Options)?;
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| AgentError::Options(format!("--edge {url:?}: {e}")))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            unreachable(format!(
                "TLS failed: {e} (for a private CA pass --ca-file; --insecure skips verification)"
            ))
        })
}

/// HELLO/WELCOME on an open WebSocket, then the session.
async fn handshake_on<S>(
    options: &AgentOptions,
    join: Option<&Join>,
    mut ws: WebSocket<S>,
) -> Result<Established, AgentError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let hello = hello(options, join);
    let welcome = handshake::agent_hello(&mut ws, &hello, options.connect_timeout)
        .await
        .map_err(|e| match e {
            HandshakeError::Rejected(reject) => AgentError::from_reject(reject),
            other => AgentError::Handshake(other.to_string()),
        })?;
    let heartbeat = Heartbeat {
        interval: Duration::from_millis(welcome.heartbeat_interval_ms.max(100)),
        timeout: Duration::from_millis(welcome.heartbeat_timeout_ms.max(300)),
    };
    let mux = Mux::new(
        Role::Agent,
        hello.settings,
        welcome.settings,
        heartbeat,
        tokio::time::Instant::now().into_std(),
    );
    let span = tracing::info_span!("session", id = %welcome.session_id);
    let (session, incoming, events) = warren_session::spawn(ws, mux, span);
    Ok(Established {
        session,
        incoming,
        events,
        welcome,
    })
}

fn hello(options: &AgentOptions, join: Option<&Join>) -> Hello {
    Hello {
        agent_version: AGENT_VERSION.to_string(),
        credential: match &options.grant {
            Some(grant) => Credential::Grant(grant.borrow().jwt.clone()),
            None => Credential::Token(options.token.clone()),
        },
        tunnels: options
            .tunnels
            .iter()
            .enumerate()
            .map(|(i, spec)| TunnelRequest {
                id: TunnelId(i as u32),
                protocol: TunnelProtocol::Http,
                subdomain: spec.subdomain.clone(),
                local_addr: spec.local.to_string(),
                host_header: spec.host_header.clone(),
            })
            .collect(),
        settings: Settings::default(),
        // Request logs come on the first session only.
        request_log: options.request_log && join.is_none(),
        request_log_batches: true,
        request_log_compact: true,
        join: join.cloned(),
        dynamic_tunnels: options.dynamic_tunnels,
    }
}

fn connect_error(url: &str, error: tungstenite::Error) -> AgentError {
    match error {
        // A draining or overloaded edge (or its load balancer) answers 502/503/504: try again.
        tungstenite::Error::Http(response) if response.status().is_server_error() => {
            AgentError::EdgeUnreachable {
                url: url.to_string(),
                reason: format!("the edge answered HTTP {}", response.status().as_u16()),
            }
        }
        tungstenite::Error::Http(response) => AgentError::NotAnEdge {
            url: url.to_string(),
            status: response.status().as_u16(),
        },
        tungstenite::Error::Url(e) => AgentError::Options(format!("--edge {url:?}: {e}")),
        tungstenite::Error::Io(e) => AgentError::EdgeUnreachable {
            url: url.to_string(),
            reason: e.to_string(),
        },
        other => AgentError::EdgeUnreachable {
            url: url.to_string(),
            reason: other.to_string(),
        },
    }
}
