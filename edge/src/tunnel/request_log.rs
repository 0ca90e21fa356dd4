//! Request logs on their way to the agent (the lines `warren http` prints), one queue per
//! session.
//!
//! A request log is the only per-request message on the control channel. Sending each one on
//! its own costs a JSON encode, a frame, a WebSocket message and often a write system call on
//! the edge, and as much again on the agent; under load that was a large share of the tunnel's
//! CPU per request. So logs wait here for at most [`FLUSH_AFTER`] and leave in batches: when
//! the first log of a batch arrives, a short-lived task is spawned that sleeps, takes
//! everything queued and sends it (one [`Event::RequestLogs`] per
//! [`MAX_REQUEST_LOGS_PER_EVENT`] entries). Idle, a log still reaches the agent within
//! [`FLUSH_AFTER`]; busy, one message carries many requests.
//!
//! Agents that announced `request_log_compact` get each batch in the compact binary form
//! ([`warren_proto::request_logs`]: no field names, no escaping; a fraction of JSON's cost on
//! both sides). Agents that did not announce `request_log_batches` get one
//! [`Event::RequestLog`] per entry, still written together.

use std::mem;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warren_proto::control::{Event, Hello, MAX_REQUEST_LOGS_PER_EVENT, RequestLog};
use warren_proto::request_logs;
use warren_session::Session;

/// Longest a request log waits for others to share its message.
pub const FLUSH_AFTER: Duration = Duration::from_millis(5);
/// Most logs kept while the session cannot take them (they are dropped beyond: a log line is
/// not worth unbounded memory).
const MAX_QUEUED: usize = 16 * MAX_REQUEST_LOGS_PER_EVENT;

/// How an agent reads request logs (from its HELLO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON [`Event::RequestLog`] per request (agents from before batches).
    JsonEach,
    /// JSON [`Event::RequestLogs`] batches.
    JsonBatches,
    /// Binary batches ([`warren_proto::request_logs`]).
    Compact,
}

impl LogFormat {
    pub fn from_hello(hello: &Hello) -> LogFormat {
        if hello.request_log_compact {
            LogFormat::Compact
        } else if hello.request_log_batches {
            LogFormat::JsonBatches
        } else {
            LogFormat::JsonEach
        }
    }
}

/// The request logs of one session, waiting to be sent.
pub struct RequestLogQueue {
    session: Session,
    format: LogFormat,
    pending: Mutex<Vec<RequestLog>>,
}

impl RequestLogQueue {
    pub fn new(session: Session, format: LogFormat) -> Arc<RequestLogQueue> {
        Arc::new(RequestLogQueue {
            session,
            format,
            pending: Mutex::new(Vec::new()),
        })
    }

    /// Queues `log`; the first log of a batch schedules the flush.
    pub fn push(self: &Arc<Self>, log: RequestLog) {
        let first = {
            let mut pending = self.pending();
            if pending.len() >= MAX_QUEUED {
                return;
            }
            pending.push(log);
            pending.len() == 1
        };
        if first {
            let queue = self.clone();
            // Called from a visitor connection's task, so a runtime is always there; without
            // one (a log at shutdown), sending at once is the best left to do.
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move {
                        tokio::time::sleep(FLUSH_AFTER).await;
                        queue.flush();
                    });
                }
                Err(_) => queue.flush(),
            }
        }
    }

    /// Sends everything queued now.
    pub fn flush(&self) {
        let entries = mem::take(&mut *self.pending());
        if entries.is_empty() || self.session.is_ended() {
            return;
        }
        match self.format {
            LogFormat::JsonEach => {
                for log in entries {
                    self.session.send_message(&Event::RequestLog(log));
                }
                return;
            }
            LogFormat::Compact => {
                let mut rest = &entries[..];
                while !rest.is_empty() {
                    let (body, sent) = request_logs::encode(rest);
                    self.session.send_event_body(body);
                    rest = &rest[sent..];
                }
                return;
            }
            LogFormat::JsonBatches => {}
        }
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let batch: Vec<RequestLog> =
                entries.by_ref().take(MAX_REQUEST_LOGS_PER_EVENT).collect();
            self.session
                .send_message(&Event::RequestLogs { entries: batch });
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<RequestLog>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}
