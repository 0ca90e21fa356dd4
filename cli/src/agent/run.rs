//! The agent's main loop: connect, serve streams until the session ends, reconnect.
//!
//! - The first connection failing is fatal (a wrong `--edge` or token should fail loudly).
//! - After that, a lost session is retried at once, then with backoff and jitter, and the same
//!   HELLO gets the same URL back (the new session takes the route over atomically).
//! - GOAWAY normal from a draining edge: make before break. A new session is opened at once
//!   (in production `--edge` is the region's load balancer, which no longer sends new
//!   connections to the draining edge); the old one keeps its route and serves its in-flight
//!   streams until the new one is welcomed, then finishes them in the background and closes.
//! - GOAWAY because the tunnel was closed or taken over: stop, and say why.

use crate::agent::backoff::Backoff;
use crate::agent::connect::{self, AgentError, Established};
use crate::agent::events::AgentEvent;
use crate::agent::forward::{self, LocalFailure};
use crate::agent::lane::Lanes;
use crate::agent::options::{AgentOptions, LocalTarget};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use warren_proto::control::{Event, RequestLog};
use warren_proto::error::GoAwayCode;
use warren_session::{Session, SessionEvent};

/// Longest a replaced session may take to finish its in-flight streams.
pub(crate) const OLD_SESSION_GRACE: Duration = Duration::from_secs(60);
/// How long in-flight requests get when the agent is asked to stop.
pub(crate) const EXIT_GRACE: Duration = Duration::from_secs(3);
/// At most one "local service is down" warning per this interval.
const LOCAL_WARNING_INTERVAL: Duration = Duration::from_secs(10);

enum Outcome {
    Shutdown,
    /// The edge is draining: connect again now; the old session is kept until then.
    Moved(Session),
    /// The session was lost: connect again after a backoff.
    Lost(String),
    /// The tunnel is gone for good.
    Closed(String),
}

/// Runs the agent until `shutdown` or a fatal error. Events go to `events`.
pub async fn run(
    options: AgentOptions,
    events: UnboundedSender<AgentEvent>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let backoff = Backoff::default();
    let mut attempt: u32 = 0;
    let mut connected_once = false;
    // A session whose edge is draining, kept until its successor is welcomed.
    let mut draining: Option<Session> = None;
    loop {
        let established = tokio::select! {
            () = shutdown.cancelled() => {
                if let Some(old) = draining.take() {
                    old.drain(GoAwayCode::Normal, "agent shutting down", EXIT_GRACE).await;
                }
                return Ok(());
            }
            result = connect::establish(&options) => result,
        };
        let reason = match established {
            Ok(established) => {
                attempt = 0;
                connected_once = true;
                // The new session holds the route now: the old one finishes what it carries.
                if let Some(old) = draining.take() {
                    finish_in_background(old);
                }
                match serve(established, &options, &events, &shutdown).await {
                    Outcome::Shutdown => return Ok(()),
                    Outcome::Closed(reason) => return Err(AgentError::Closed(reason)),
                    Outcome::Moved(old) => {
                        draining = Some(old);
                        continue;
                    }
                    Outcome::Lost(reason) => reason,
                }
            }
            Err(e) if waiting_for_renewal(&options, &e) && connected_once => {
                format!("{e} (the grant expired; waiting for control to renew it)")
            }
            Err(e) if e.is_fatal() || !connected_once => return Err(e),
            Err(e) => e.to_string(),
        };
        // A draining session that ended meanwhile serves nothing: forget it.
        if draining.as_ref().is_some_and(Session::is_ended) {
            draining = None;
        }
        attempt = attempt.saturating_add(1);
        // The first attempt after a drop is immediate: the edge (or the balancer in front of
        // the region) usually has somewhere to put the session right away.
        let delay = match attempt {
            1 => Duration::ZERO,
            n => backoff.delay(n - 1),
        };
        let _ = events.send(AgentEvent::Reconnecting {
            attempt,
            delay_ms: delay.as_millis() as u64,
            reason,
        });
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

async fn serve(
    established: Established,
    options: &AgentOptions,
    events: &UnboundedSender<AgentEvent>,
    shutdown: &CancellationToken,
) -> Outcome {
    let Established {
        session,
        mut incoming,
        events: mut session_events,
        welcome,
    } = established;
    for ready in &welcome.tunnels {
        let local = options
            .tunnels
            .get(ready.id.0 as usize)
            .map(|t| t.local.to_string())
            .unwrap_or_default();
        let _ = events.send(AgentEvent::TunnelReady {
            public_url: ready.public_url.clone(),
            hostname: ready.hostname.clone(),
            local,
            session_id: welcome.session_id.clone(),
        });
    }
    let mut open_tunnels: HashSet<u32> = welcome.tunnels.iter().map(|t| t.id.0).collect();
    let forwarder = Forwarder {
        targets: Arc::new(resolve_targets(options, events)),
        events: events.clone(),
        warned: Arc::new(Mutex::new(None)),
        timeout: options.local_connect_timeout,
    };
    // More sessions joined to this one, each on a thread of its own; they end with it.
    let mut lanes = Lanes::start(options, &welcome, &forwarder, shutdown);
    loop {
        tokio::select! {
            stream = incoming.accept() => {
                let Some(stream) = stream else {
                    return after_end(&session);
                };
                forwarder.spawn(stream);
            }
            event = session_events.recv() => match event {
                Some(SessionEvent::Message(Event::TunnelClosed { id, reason })) => {
                    // Closed through the API (or taken over): reconnecting would not bring
                    // it back, so once every tunnel of this session is closed, stop.
                    open_tunnels.remove(&id.0);
                    if open_tunnels.is_empty() {
                        session.close();
                        return Outcome::Closed(reason);
                    }
                    let _ = events.send(AgentEvent::Notice { message: reason });
                }
                Some(SessionEvent::Message(message)) => report(events, message),
                Some(SessionEvent::GoAway { code, message }) => {
                    if !code.should_reconnect() {
                        session.close();
                        return Outcome::Closed(message);
                    }
                    let _ = events.send(AgentEvent::Notice {
                        message: format!("the edge is closing this session ({message}); reconnecting"),
                    });
                    if code == GoAwayCode::Normal && !session.is_ended() {
                        return Outcome::Moved(session);
                    }
                    finish_in_background(session);
                    return Outcome::Lost(format!("the edge ended the session: {message}"));
                }
                None => return after_end(&session),
            },
            () = shutdown.cancelled() => {
                tokio::join!(
                    session.drain(GoAwayCode::Normal, "agent shutting down", EXIT_GRACE),
                    lanes.drained(EXIT_GRACE),
                );
                return Outcome::Shutdown;
            }
        }
    }
}

/// With a grant, an edge refusing an expired one is not the end: the renewal task keeps asking
/// control, and the next attempt presents the newest grant.
fn waiting_for_renewal(options: &AgentOptions, error: &AgentError) -> bool {
    matches!(error, AgentError::Unauthorized(_))
        && options
            .grant
            .as_ref()
            .is_some_and(|g| g.borrow().is_expired())
}

fn resolve_targets(
    options: &AgentOptions,
    events: &UnboundedSender<AgentEvent>,
) -> Vec<(LocalTarget, Vec<SocketAddr>)> {
    options
        .tunnels
        .iter()
        .map(|spec| {
            let addrs = spec.local.resolve().unwrap_or_else(|e| {
                let _ = events.send(AgentEvent::Error {
                    message: format!("cannot resolve local host {}: {e}", spec.local.host),
                    fatal: false,
                });
                Vec::new()
            });
            (spec.local.clone(), addrs)
        })
        .collect()
}

fn report(events: &UnboundedSender<AgentEvent>, message: Event) {
    let event = match message {
        Event::RequestLog(log) => request_event(log),
        Event::RequestLogs { entries } => {
            for log in entries {
                let _ = events.send(request_event(log));
            }
            return;
        }
        Event::TunnelClosed { reason, .. } => AgentEvent::Notice { message: reason },
        Event::Notice { message } => AgentEvent::Notice { message },
        // Dynamic tunnels (`agent/dynamic.rs`) are not asked for by this loop.
        Event::OpenTunnel { .. }
        | Event::TunnelOpened { .. }
        | Event::TunnelRefused { .. }
        | Event::CloseTunnel { .. }
        | Event::Unknown => return,
    };
    let _ = events.send(event);
}

fn request_event(log: RequestLog) -> AgentEvent {
    AgentEvent::Request {
        method: log.method,
        path: log.path,
        status: log.status,
        duration_ms: log.duration_us as f64 / 1000.0,
        bytes_in: log.bytes_in,
        bytes_out: log.bytes_out,
        request_id: log.request_id,
        error: log.error,
    }
}

/// Hands each stream the edge opens to a task that forwards it to the local service.
#[derive(Clone)]
pub(crate) struct Forwarder {
    targets: Arc<Vec<(LocalTarget, Vec<SocketAddr>)>>,
    events: UnboundedSender<AgentEvent>,
    /// When the user was last warned that the local service is down (shared by all sessions).
    warned: Arc<Mutex<Option<Instant>>>,
    timeout: Duration,
}

impl Forwarder {
    /// Forwards `stream` in a task of the current runtime.
    pub(crate) fn spawn(&self, stream: warren_session::Stream) {
        let this = self.clone();
        tokio::spawn(async move {
            let Some((target, addrs)) = this.targets.get(stream.tunnel().0 as usize) else {
                stream.reset(warren_proto::ResetCode::Refused);
                return;
            };
            if let Err(failure) = forward::forward(stream, target, addrs, this.timeout).await {
                warn_local(&this.events, &this.warned, target, failure);
            }
        });
    }

    pub(crate) fn events(&self) -> &UnboundedSender<AgentEvent> {
        &self.events
    }
}

fn warn_local(
    events: &UnboundedSender<AgentEvent>,
    warned: &Mutex<Option<Instant>>,
    target: &LocalTarget,
    failure: LocalFailure,
) {
    let mut last = warned.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_some_and(|at| at.elapsed() < LOCAL_WARNING_INTERVAL) {
        return;
    }
    *last = Some(Instant::now());
    let message = match failure {
        LocalFailure::Refused => format!(
            "nothing is listening on {target}: start your local service (visitors get 502 until then)"
        ),
        LocalFailure::Timeout => {
            format!("connecting to {target} timed out: is the local service stuck?")
        }
        LocalFailure::Other(e) => format!("cannot connect to {target}: {e}"),
    };
    let _ = events.send(AgentEvent::Error {
        message,
        fatal: false,
    });
}

/// A session the edge is draining keeps serving its in-flight streams, then closes. The edge
/// opens nothing new on it (it sent GOAWAY), so idle means done.
fn finish_in_background(session: Session) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(OLD_SESSION_GRACE, session.idle()).await;
        session.close();
    });
}

/// The session ended. A GOAWAY that said "do not come back" (tunnel closed or taken over)
/// still decides: the end of the session is often noticed before the GOAWAY event is read, and
/// reconnecting then would take the tunnel back from the agent that replaced this one.
fn after_end(session: &Session) -> Outcome {
    match session.peer_goaway() {
        Some((code, message)) if !code.should_reconnect() => Outcome::Closed(message),
        _ => Outcome::Lost(end_reason(session)),
    }
}

fn end_reason(session: &Session) -> String {
    session
        .end_reason()
        .map_or_else(|| "the session ended".to_string(), |end| end.to_string())
}
