//! A tunnel set on one session that grows and shrinks (`warren mcp`): the session is opened on
//! first use with no tunnel (HELLO `dynamic_tunnels`), each tunnel is opened with
//! `open_tunnel` and is known to be live when the edge answers `tunnel_opened`, and closing the
//! last one leaves the session open for the next.
//!
//! One task per session reads it: streams go to their tunnel's local service, answers go to
//! whoever waits for them. When the session is lost its tunnels are reported gone (the next
//! `open` connects again); nothing here retries behind the caller's back, so what
//! [`TunnelSet::list`] says is what the edge serves.

use crate::agent::connect::{self, AgentError};
use crate::agent::forward;
use crate::agent::grant::{self, Grant};
use crate::agent::options::{AgentOptions, LocalTarget};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use warren_proto::TunnelId;
use warren_proto::control::{Event, GrantToken, RejectCode, TunnelProtocol, TunnelRequest};
use warren_proto::error::GoAwayCode;
use warren_session::{Session, SessionEvent};

/// Longest the edge may take to answer `open_tunnel` or `close_tunnel`.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get when the set is shut down.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// What to open.
#[derive(Debug, Clone)]
pub struct Open {
    pub local: LocalTarget,
    pub subdomain: Option<String>,
    pub host_header: Option<String>,
    /// The tunnel's own grant from control (none with a static token).
    pub grant: Option<Grant>,
}

/// A tunnel the edge confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub id: TunnelId,
    pub hostname: String,
    pub public_url: String,
    pub local: LocalTarget,
}

/// Why a tunnel was not opened or closed.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("{0}")]
    Connect(#[from] AgentError),
    #[error("{message}")]
    Refused { code: RejectCode, message: String },
    #[error("the edge did not answer within {} s", ANSWER_TIMEOUT.as_secs())]
    Timeout,
    #[error("the session to the edge ended: {0}")]
    Lost(String),
}

type Answer = Result<Event, SetError>;

#[derive(Default)]
struct Shared {
    /// Tunnels the edge serves now, by id, with where they forward.
    tunnels: HashMap<TunnelId, (Opened, Vec<SocketAddr>)>,
    /// Callers waiting for the edge's answer about a tunnel.
    waiting: HashMap<TunnelId, oneshot::Sender<Answer>>,
    /// Why tunnels ended without being closed by us (by control, taken over, session lost).
    ended: Vec<(Opened, String)>,
}

/// One edge's session and the tunnels on it.
pub struct TunnelSet {
    options: AgentOptions,
    session: tokio::sync::Mutex<Option<Session>>,
    shared: Arc<Mutex<Shared>>,
    next_id: AtomicU32,
}

impl TunnelSet {
    /// `options` from [`AgentOptions::dynamic`]; nothing connects until the first `open`.
    pub fn new(options: AgentOptions) -> TunnelSet {
        TunnelSet {
            options,
            session: tokio::sync::Mutex::new(None),
            shared: Arc::default(),
            next_id: AtomicU32::new(1),
        }
    }

    /// Opens a tunnel and returns once the edge routes it.
    pub async fn open(&self, open: Open) -> Result<Opened, SetError> {
        let addrs = open.local.resolve().unwrap_or_default();
        let session = self.session(open.grant.as_ref()).await?;
        let id = TunnelId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let answer = self.wait_for(id);
        session.send_message(&Event::OpenTunnel {
            spec: TunnelRequest {
                id,
                protocol: TunnelProtocol::Http,
                subdomain: open.subdomain.clone(),
                local_addr: open.local.to_string(),
                host_header: open.host_header.clone(),
            },
            grant: open.grant.map(|g| GrantToken(g.jwt)),
        });
        match self.answer(id, answer).await? {
            Event::TunnelOpened {
                hostname,
                public_url,
                ..
            } => {
                let opened = Opened {
                    id,
                    hostname,
                    public_url,
                    local: open.local,
                };
                lock(&self.shared)
                    .tunnels
                    .insert(id, (opened.clone(), addrs));
                Ok(opened)
            }
            Event::TunnelRefused { code, message, .. } => Err(SetError::Refused { code, message }),
            other => Err(SetError::Lost(format!("unexpected answer {other:?}"))),
        }
    }

    /// Closes tunnel `id`; returns once the edge no longer routes it.
    pub async fn close(&self, id: TunnelId) -> Result<(), SetError> {
        let Some(session) = self.current().await else {
            return Err(SetError::Refused {
                code: RejectCode::UnknownTunnel,
                message: format!("no tunnel {id} is open"),
            });
        };
        let answer = self.wait_for(id);
        session.send_message(&Event::CloseTunnel { id });
        let result = self.answer(id, answer).await;
        lock(&self.shared).tunnels.remove(&id);
        match result? {
            Event::TunnelRefused { code, message, .. } => Err(SetError::Refused { code, message }),
            _ => Ok(()),
        }
    }

    /// The tunnels the edge serves now.
    pub fn list(&self) -> Vec<Opened> {
        let mut list: Vec<Opened> = lock(&self.shared)
            .tunnels
            .values()
            .map(|(o, _)| o.clone())
            .collect();
        list.sort_by_key(|o| o.id);
        list
    }

    /// Tunnels that ended without `close` since the last call, with the reason.
    pub fn take_ended(&self) -> Vec<(Opened, String)> {
        std::mem::take(&mut lock(&self.shared).ended)
    }

    /// Closes the session and with it every tunnel (GOAWAY, in-flight requests finish).
    pub async fn shutdown(&self) {
        if let Some(session) = self.session.lock().await.take() {
            session
                .drain(GoAwayCode::Normal, "warren mcp stopping", SHUTDOWN_GRACE)
                .await;
        }
    }

    async fn current(&self) -> Option<Session> {
        let guard = self.session.lock().await;
        guard.as_ref().filter(|s| !s.is_ended()).cloned()
    }

    /// The live session, connected now if there is none; a grant (if any) says who we are.
    async fn session(&self, grant: Option<&Grant>) -> Result<Session, SetError> {
        let mut guard = self.session.lock().await;
        if let Some(session) = guard
            .as_ref()
            .filter(|s| !s.is_ended() && !s.is_going_away())
        {
            return Ok(session.clone());
        }
        let mut options = self.options.clone();
        if let Some(grant) = grant {
            options.grant = Some(grant::channel(grant.clone()).1);
        }
        let established = connect::establish(&options).await?;
        if !established.welcome.dynamic_tunnels {
            established.session.close();
            return Err(SetError::Connect(AgentError::Rejected(
                "this edge cannot open tunnels on a live session: upgrade the edge".into(),
            )));
        }
        let session = established.session.clone();
        tokio::spawn(serve(
            established,
            self.shared.clone(),
            self.options.local_connect_timeout,
        ));
        *guard = Some(session.clone());
        Ok(session)
    }

    fn wait_for(&self, id: TunnelId) -> oneshot::Receiver<Answer> {
        let (send, receive) = oneshot::channel();
        lock(&self.shared).waiting.insert(id, send);
        receive
    }

    async fn answer(&self, id: TunnelId, answer: oneshot::Receiver<Answer>) -> Answer {
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(SetError::Lost("the session ended".into())),
            Err(_) => {
                lock(&self.shared).waiting.remove(&id);
                Err(SetError::Timeout)
            }
        }
    }
}

/// Reads one session until it ends.
async fn serve(established: connect::Established, shared: Arc<Mutex<Shared>>, timeout: Duration) {
    let connect::Established {
        session,
        mut incoming,
        mut events,
        ..
    } = established;
    loop {
        tokio::select! {
            stream = incoming.accept() => {
                let Some(stream) = stream else { break };
                let target = lock(&shared).tunnels.get(&stream.tunnel()).cloned();
                tokio::spawn(async move {
                    let Some((opened, addrs)) = target else {
                        stream.reset(warren_proto::ResetCode::Refused);
                        return;
                    };
                    if let Err(e) = forward::forward(stream, &opened.local, &addrs, timeout).await {
                        tracing::warn!(local = %opened.local, failure = ?e, "cannot reach the local service");
                    }
                });
            }
            event = events.recv() => match event {
                Some(SessionEvent::Message(message)) => settle(&shared, message),
                Some(SessionEvent::GoAway { code, message }) => {
                    tracing::info!(?code, %message, "the edge is closing the session");
                }
                None => break,
            },
        }
    }
    let reason = session
        .end_reason()
        .map_or_else(|| "the session ended".to_string(), |e| e.to_string());
    let mut shared = lock(&shared);
    for (_, waiter) in shared.waiting.drain() {
        let _ = waiter.send(Err(SetError::Lost(reason.clone())));
    }
    let lost: Vec<_> = shared.tunnels.drain().map(|(_, (o, _))| o).collect();
    for opened in lost {
        shared
            .ended
            .push((opened, format!("the session to the edge ended: {reason}")));
    }
}

/// Hands an answer to whoever waits for it; notes tunnels the edge closed by itself.
fn settle(shared: &Mutex<Shared>, message: Event) {
    let id = match &message {
        Event::TunnelOpened { id, .. } | Event::TunnelRefused { id, .. } => *id,
        Event::TunnelClosed { id, .. } => *id,
        _ => return,
    };
    let mut shared = lock(shared);
    if let Some(waiter) = shared.waiting.remove(&id) {
        let _ = waiter.send(Ok(message));
        return;
    }
    if let Event::TunnelClosed { id, reason } = message
        && let Some((opened, _)) = shared.tunnels.remove(&id)
    {
        shared.ended.push((opened, reason));
    }
}

// Updated by single inserts and removes, so a panic elsewhere cannot leave it half-changed.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
