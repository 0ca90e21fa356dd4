//! Lanes: more sessions to the same edge, joined to the first one (`warren http --sessions N`).
//!
//! A session is read and written by one task at each end, so a busy tunnel's requests queue
//! behind it. Each lane is a whole session of its own (WebSocket, reader, writer) on a thread
//! of its own with a one-thread runtime, and the edge opens new streams on the session and its
//! lanes in turn. Lanes live and die with the session they joined: when it ends (lost, moved,
//! closed) they take no new streams, finish what they carry, and the next session opens new
//! ones. A lane that is refused (an older edge, or a load balancer that sent it to another
//! edge) is not retried: the tunnel carries on with fewer sessions.

use crate::agent::backoff::Backoff;
use crate::agent::connect::{self, Established};
use crate::agent::events::AgentEvent;
use crate::agent::options::AgentOptions;
use crate::agent::run::{EXIT_GRACE, Forwarder, OLD_SESSION_GRACE};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use warren_proto::control::{Join, Welcome};
use warren_proto::error::GoAwayCode;
use warren_session::SessionEvent;

/// Attempts to connect a lane that keeps failing before it is given up (until the next session).
const MAX_ATTEMPTS: u32 = 5;

/// The lanes of one session. Dropping this stops them (they finish their streams first).
pub struct Lanes {
    stop: CancellationToken,
    done: Vec<oneshot::Receiver<()>>,
}

impl Lanes {
    /// Starts `options.sessions - 1` lanes, if the edge gave the session a lane key.
    pub(crate) fn start(
        options: &AgentOptions,
        welcome: &Welcome,
        forwarder: &Forwarder,
        shutdown: &CancellationToken,
    ) -> Lanes {
        let stop = shutdown.child_token();
        let mut done = Vec::new();
        let Some(key) = welcome.lane_key.clone().filter(|_| options.sessions > 1) else {
            return Lanes { stop, done };
        };
        let join = Join {
            session_id: welcome.session_id.clone(),
            key,
        };
        for n in 1..options.sessions {
            let (finished, receiver) = oneshot::channel();
            let lane = Lane {
                n,
                options: options.clone(),
                join: join.clone(),
                forwarder: forwarder.clone(),
                stop: stop.clone(),
                shutdown: shutdown.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("warren-lane-{n}"))
                .spawn(move || {
                    lane.run_on_own_runtime();
                    drop(finished);
                });
            match spawned {
                Ok(_) => done.push(receiver),
                Err(e) => {
                    let _ = forwarder.events().send(AgentEvent::Notice {
                        message: format!("cannot start a thread for session {}: {e}", n + 1),
                    });
                    break;
                }
            }
        }
        Lanes { stop, done }
    }

    /// Stops the lanes and waits up to `grace` (plus a second) for them to close.
    pub async fn drained(&mut self, grace: Duration) {
        self.stop.cancel();
        let all = async {
            for done in &mut self.done {
                // Err means the thread ended: that is what is awaited.
                let _ = done.await;
            }
        };
        let _ = tokio::time::timeout(grace + Duration::from_secs(1), all).await;
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Lane {
    /// 1 for the first lane (the session itself is 0).
    n: usize,
    options: AgentOptions,
    join: Join,
    forwarder: Forwarder,
    /// Cancelled when the session this lane joined is over for the agent.
    stop: CancellationToken,
    shutdown: CancellationToken,
}

impl Lane {
    fn run_on_own_runtime(self) {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(self.run()),
            Err(e) => {
                let _ = self.forwarder.events().send(AgentEvent::Notice {
                    message: format!("cannot start session {}: {e}", self.n + 1),
                });
            }
        }
    }

    /// Connects, serves, and connects again after a loss, until stopped or refused.
    async fn run(self) {
        let backoff = Backoff::default();
        let mut failures: u32 = 0;
        let mut served_once = false;
        loop {
            let established = tokio::select! {
                () = self.stop.cancelled() => return,
                result = connect::establish_lane(&self.options, &self.join) => result,
            };
            match established {
                Ok(established) => {
                    failures = 0;
                    served_once = true;
                    let _ = self.forwarder.events().send(AgentEvent::LaneReady {
                        session_id: established.welcome.session_id.clone(),
                        joined: self.join.session_id.clone(),
                    });
                    self.serve(established).await;
                }
                Err(e) if e.is_fatal() => {
                    // Refused: the session is gone (the next one opens new lanes) or lives on
                    // an edge this connection did not reach.
                    tracing::info!(lane = self.n, error = %e, "lane refused");
                    if !served_once && !self.stop.is_cancelled() {
                        let _ = self.forwarder.events().send(AgentEvent::Notice {
                            message: format!(
                                "session {} of {} could not join the first one ({e}); the tunnel carries on without it",
                                self.n + 1,
                                self.options.sessions
                            ),
                        });
                    }
                    return;
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!(lane = self.n, error = %e, "lane connect failed");
                    if failures >= MAX_ATTEMPTS {
                        return;
                    }
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(backoff.delay(failures.max(1))) => {}
            }
        }
    }

    /// Serves the streams the edge opens on this lane until it ends, then lets its streams
    /// finish: the runtime (and every forwarding task on it) ends when `run` returns.
    async fn serve(&self, established: Established) {
        let Established {
            session,
            mut incoming,
            mut events,
            ..
        } = established;
        loop {
            tokio::select! {
                stream = incoming.accept() => match stream {
                    Some(stream) => self.forwarder.spawn(stream),
                    None => return,
                },
                event = events.recv() => match event {
                    // The edge is draining the lane (its session ended, or the edge is
                    // stopping): nothing new comes; finish what is open.
                    Some(SessionEvent::GoAway { .. }) => break,
                    Some(SessionEvent::Message(_)) => {}
                    None => return,
                },
                () = self.stop.cancelled() => {
                    if self.shutdown.is_cancelled() {
                        session.drain(GoAwayCode::Normal, "agent shutting down", EXIT_GRACE).await;
                        return;
                    }
                    session.go_away(GoAwayCode::Normal, "the session this lane joined ended");
                    break;
                }
            }
        }
        // Streams still open keep being served: their forwarding tasks run on this runtime.
        let _ = tokio::time::timeout(OLD_SESSION_GRACE, session.idle()).await;
        session.close();
    }
}
