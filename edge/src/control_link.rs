//! The edge's reports to control, and control's answers (tunnels to close).
//!
//! Sessions serving granted tunnels push `Started` and `Ended` events into one bounded queue.
//! Every 500 ms the reporter adds `Counters` for tunnels whose counters moved and sends what is
//! queued as one [`EdgeReport`]. Counters are cumulative, so a batch that failed is simply
//! sent again; the queue keeps events while their transport is down.
//!
//! Two transports:
//! - **Cluster (with `--redis-url`)**: reports go to the Redis Stream `warren:events`, which
//!   control reads through a consumer group (`warren_bus::events`), so no event is lost while
//!   control is stopped or restarting. Closes arrive on the pub/sub channel `warren:close` the
//!   moment control publishes them (`warren_bus::close`). Because pub/sub only reaches those
//!   subscribed at that moment, the edge also posts an empty report over HTTP every 5 s and
//!   right after each (re)subscription, whose answer lists the closed tunnels.
//! - **Single edge (no Redis)**: reports are posted to `{control}/internal/v1/reports`; while
//!   the edge serves granted tunnels it posts every 500 ms even with nothing to say, because
//!   control's answer is how a closed tunnel reaches the edge within a second; with no tunnel
//!   it posts every 5 s (a heartbeat carrying the `live` list).
//!
//! Control's closes are applied the same way from both: the sessions are told why and closed,
//! and the tunnel's grants refused until they expire.
//!
//! All bookkeeping happens under one lock, so a tunnel's `Counters` can only be queued between
//! its `Started` and its `Ended`.

use crate::control_http::ControlHttp;
use crate::grant::{ClosedTunnels, unix_now};
use crate::tunnel::registry::CounterSnapshot;
use crate::tunnel::registry::Registry;
use crate::tunnel::{LiveTunnel, SessionReports};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use warren_bus::RedisConnection;
use warren_bus::close::CloseSubscription;
use warren_proto::control::Event;
use warren_proto::error::GoAwayCode;
use warren_proto::report::{
    CloseTunnel, EdgeReport, MAX_EVENTS_PER_REPORT, ReportReply, SessionEvent,
};

/// Where reports go on control.
pub const REPORTS_PATH: &str = "/internal/v1/reports";
/// How often queued events are sent.
pub const REPORT_INTERVAL: Duration = Duration::from_millis(500);
/// The longest the edge stays silent (a heartbeat report).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Most events kept while control cannot be reached.
pub const QUEUE_CAPACITY: usize = 10_000;
/// How long a session closed through the API may take to finish before it is cut.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// Pause before subscribing again after the subscription to closes was lost.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// The reporter of one edge.
pub struct ControlLink {
    http: ControlHttp,
    /// Who reports: this edge's id and region (set when the edge starts: `run`).
    reporter: OnceLock<(String, String)>,
    secret: String,
    closed: Arc<ClosedTunnels>,
    book: Mutex<Book>,
    failing: AtomicBool,
    /// In a cluster: reports go to the Redis Stream, closes come over pub/sub.
    bus: OnceLock<Bus>,
    bus_failing: AtomicBool,
    /// Ask control for closes now (set after (re)subscribing).
    poll_now: Notify,
}

struct Bus {
    connection: RedisConnection,
    url: String,
}

impl fmt::Debug for ControlLink {
    // The secret never reaches logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlLink")
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Book {
    queue: VecDeque<SessionEvent>,
    /// Granted tunnel sessions between `Started` and `Ended`, by session id + tunnel id.
    live: HashMap<(String, String), Tracked>,
    dropped: u64,
}

struct Tracked {
    tunnel: Arc<LiveTunnel>,
    /// The counters last queued.
    queued: CounterSnapshot,
}

impl ControlLink {
    pub fn new(http: ControlHttp, secret: String, closed: Arc<ClosedTunnels>) -> ControlLink {
        ControlLink {
            http,
            reporter: OnceLock::new(),
            secret,
            closed,
            book: Mutex::new(Book::default()),
            failing: AtomicBool::new(false),
            bus: OnceLock::new(),
            bus_failing: AtomicBool::new(false),
            poll_now: Notify::new(),
        }
    }

    /// Cluster mode: reports go to the Redis Stream on `connection`, closes are received by
    /// subscribing at `url` (the same Redis). Has no effect once set.
    pub fn use_redis(&self, connection: RedisConnection, url: &str) {
        let _ = self.bus.set(Bus {
            connection,
            url: url.to_string(),
        });
    }

    /// A session began serving the granted tunnel `tunnel`.
    pub fn started(
        &self,
        tunnel: &Arc<LiveTunnel>,
        token_id: &str,
        agent_version: &str,
        agent_addr: &str,
    ) {
        let Some(tunnel_id) = tunnel.tunnel_id.clone() else {
            return;
        };
        let mut book = lock(&self.book);
        book.push(SessionEvent::Started {
            tunnel_id: tunnel_id.clone(),
            session_id: tunnel.session_id.clone(),
            account_id: tunnel.account_id.clone(),
            token_id: token_id.to_string(),
            hostname: tunnel.hostname.clone(),
            agent_version: agent_version.to_string(),
            agent_addr: agent_addr.to_string(),
            at_ms: unix_ms(),
        });
        book.live.insert(
            (tunnel.session_id.clone(), tunnel_id),
            Tracked {
                tunnel: tunnel.clone(),
                queued: CounterSnapshot::default(),
            },
        );
    }

    /// The session stopped serving `tunnel`; its counters are final.
    pub fn ended(&self, tunnel: &LiveTunnel, reason: &str) {
        let Some(tunnel_id) = tunnel.tunnel_id.clone() else {
            return;
        };
        let mut book = lock(&self.book);
        if book
            .live
            .remove(&(tunnel.session_id.clone(), tunnel_id.clone()))
            .is_none()
        {
            return;
        }
        let c = tunnel.counters.snapshot();
        book.push(SessionEvent::Ended {
            tunnel_id,
            session_id: tunnel.session_id.clone(),
            reason: reason.to_string(),
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            requests: c.requests,
            at_ms: unix_ms(),
        });
    }

    /// Reports until `stop` is cancelled (and, in a cluster, listens for closes).
    pub async fn run(
        self: Arc<Self>,
        (edge_id, region): (String, String),
        registry: Arc<Registry>,
        stop: CancellationToken,
    ) {
        let _ = self.reporter.set((edge_id, region));
        if let Some(bus) = self.bus.get() {
            tokio::spawn(listen_for_closes(
                self.clone(),
                registry.clone(),
                bus.url.clone(),
                stop.clone(),
            ));
        }
        let mut ticker = tokio::time::interval(REPORT_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sent = Instant::now();
        loop {
            let mut poll_now = false;
            tokio::select! {
                _ = ticker.tick() => {}
                () = self.poll_now.notified() => poll_now = true,
                () = stop.cancelled() => return,
            }
            let (live, batch) = self.next_batch();
            if let Some(bus) = self.bus.get() {
                if !batch.is_empty() {
                    self.append(bus, live.clone(), batch).await;
                }
                // The backstop for closes published while this edge was not subscribed.
                if poll_now || last_sent.elapsed() >= HEARTBEAT_INTERVAL {
                    self.send(&registry, live, Vec::new()).await;
                    last_sent = Instant::now();
                }
                continue;
            }
            // Live tunnels: poll for closes every interval. None: a heartbeat now and then.
            if batch.is_empty() && live.is_empty() && last_sent.elapsed() < HEARTBEAT_INTERVAL {
                continue;
            }
            if self.send(&registry, live, batch).await {
                last_sent = Instant::now();
            }
        }
    }

    /// Sends everything queued, batch after batch, until the queue is empty, a send fails, or
    /// `deadline` passes (shutdown: the `Ended` events of the sessions just drained).
    pub async fn flush(&self, registry: &Registry, deadline: tokio::time::Instant) {
        let flush = async {
            loop {
                let (live, batch) = self.next_batch();
                let more = batch.len() == MAX_EVENTS_PER_REPORT;
                let sent = match self.bus.get() {
                    Some(bus) => self.append(bus, live, batch).await,
                    None => self.send(registry, live, batch).await,
                };
                if !sent || !more {
                    return;
                }
            }
        };
        if tokio::time::timeout_at(deadline, flush).await.is_err() {
            tracing::warn!(
                queued = lock(&self.book).queue.len(),
                "shutdown: could not send the last reports to control in time"
            );
        }
    }

    /// This edge's id and region, as reports name them.
    fn reporter(&self) -> (&str, &str) {
        self.reporter
            .get()
            .map_or(("", ""), |(edge, region)| (edge.as_str(), region.as_str()))
    }

    /// Queues `Counters` for tunnels that moved, then takes the next batch.
    fn next_batch(&self) -> (Vec<String>, Vec<SessionEvent>) {
        let mut book = lock(&self.book);
        book.queue_counters();
        let live: Vec<String> = {
            let mut ids: Vec<String> = book.live.keys().map(|(_, t)| t.clone()).collect();
            ids.sort();
            ids.dedup();
            ids
        };
        let n = book.queue.len().min(MAX_EVENTS_PER_REPORT);
        (live, book.queue.drain(..n).collect())
    }

    /// Appends one report to the Redis Stream; on failure puts the batch back in front.
    /// Returns whether it was appended.
    async fn append(&self, bus: &Bus, live: Vec<String>, batch: Vec<SessionEvent>) -> bool {
        let report = EdgeReport {
            edge_id: self.reporter().0.to_string(),
            region: self.reporter().1.to_string(),
            live,
            events: batch,
        };
        match warren_bus::events::append(&bus.connection, &report).await {
            Ok(_) => {
                if self.bus_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("session events reach Redis again");
                }
                true
            }
            Err(e) => {
                if !self.bus_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "cannot append session events to Redis; will retry");
                }
                let mut book = lock(&self.book);
                for event in report.events.into_iter().rev() {
                    book.queue.push_front(event);
                }
                false
            }
        }
    }

    /// Posts one report; on failure puts the batch back in front. Returns whether it arrived.
    async fn send(&self, registry: &Registry, live: Vec<String>, batch: Vec<SessionEvent>) -> bool {
        let report = EdgeReport {
            edge_id: self.reporter().0.to_string(),
            region: self.reporter().1.to_string(),
            live,
            events: batch,
        };
        match self
            .http
            .post_json::<_, ReportReply>(REPORTS_PATH, &self.secret, &report)
            .await
        {
            Ok(reply) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("reports reach control again");
                }
                self.apply(registry, &reply.close);
                true
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "cannot report to control; will retry");
                } else {
                    tracing::debug!(error = %e, "report failed again");
                }
                let mut book = lock(&self.book);
                for event in report.events.into_iter().rev() {
                    book.queue.push_front(event);
                }
                false
            }
        }
    }

    /// Closes the tunnels control asks to close and remembers them.
    fn apply(&self, registry: &Registry, close: &[CloseTunnel]) {
        let now = unix_now();
        self.closed.prune(now);
        for order in close {
            self.closed
                .insert(&order.tunnel_id, order.until, &order.reason);
            for tunnel in registry.remove_by_tunnel_id(&order.tunnel_id) {
                close_tunnel(&tunnel, &order.reason);
            }
        }
    }
}

impl SessionReports for ControlLink {
    fn started(
        &self,
        tunnel: &Arc<LiveTunnel>,
        token_id: &str,
        agent_version: &str,
        agent_addr: &str,
    ) {
        ControlLink::started(self, tunnel, token_id, agent_version, agent_addr);
    }

    fn ended(&self, tunnel: &LiveTunnel, reason: &str) {
        ControlLink::ended(self, tunnel, reason);
    }
}

/// Receives control's closes over pub/sub until `stop`, subscribing again whenever the
/// subscription is lost; after each (re)subscription asks control over HTTP for what was
/// published meanwhile.
async fn listen_for_closes(
    link: Arc<ControlLink>,
    registry: Arc<Registry>,
    url: String,
    stop: CancellationToken,
) {
    let mut failing = false;
    loop {
        let subscribed = tokio::select! {
            subscribed = CloseSubscription::subscribe(&url) => subscribed,
            () = stop.cancelled() => return,
        };
        match subscribed {
            Ok(mut subscription) => {
                if failing {
                    tracing::info!("subscribed to control's closes again");
                }
                link.poll_now.notify_one();
                loop {
                    let next = tokio::select! {
                        next = subscription.next() => next,
                        () = stop.cancelled() => return,
                    };
                    match next {
                        Some(Ok(order)) => link.apply(&registry, std::slice::from_ref(&order)),
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "ignoring a malformed message on the close channel");
                        }
                        None => {
                            tracing::warn!(
                                "lost the subscription to control's closes; subscribing again"
                            );
                            failing = true;
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot subscribe to control's closes; retrying every second (closes still arrive within 5 s over HTTP)");
                }
                failing = true;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RESUBSCRIBE_AFTER) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Tells the agent its tunnel was closed and why, then closes the session: the agent shows
/// the reason and does not reconnect (GOAWAY `Closed`).
fn close_tunnel(tunnel: &Arc<LiveTunnel>, reason: &str) {
    // Control's reason is a phrase such as "closed through the API".
    let message = format!("{reason}; run `warren http` again to open a new one");
    tracing::info!(host = %tunnel.hostname, session = %tunnel.session_id, %reason, "closing tunnel at control's request");
    let _ = tunnel.close_reason.set(reason.to_string());
    tunnel.pool.clear();
    tunnel.session.send_message(&Event::TunnelClosed {
        id: tunnel.id,
        reason: message.clone(),
    });
    if tunnel.dynamic {
        // The session stays for its other tunnels; `tunnel/dynamic.rs` releases this one.
        return;
    }
    let session = tunnel.session.clone();
    tokio::spawn(async move {
        session
            .drain(GoAwayCode::Closed, &message, CLOSE_GRACE)
            .await;
    });
}

impl Book {
    /// Queues `event`; when full, drops the oldest `Counters` (a later one supersedes it), or
    /// failing that the oldest event.
    fn push(&mut self, event: SessionEvent) {
        if self.queue.len() >= QUEUE_CAPACITY {
            let oldest_counters = self
                .queue
                .iter()
                .position(|e| matches!(e, SessionEvent::Counters { .. }));
            match oldest_counters {
                Some(i) => {
                    self.queue.remove(i);
                }
                None => {
                    self.queue.pop_front();
                    tracing::error!(
                        "report queue full: dropped a session event control will not see"
                    );
                }
            }
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped,
                    "report queue full: dropping the oldest events"
                );
            }
        }
        self.queue.push_back(event);
    }

    /// Queues `Counters` for every tracked session whose counters moved since last queued,
    /// replacing any still-queued `Counters` of the same session (they are cumulative).
    fn queue_counters(&mut self) {
        let mut moved = Vec::new();
        for ((session_id, tunnel_id), tracked) in &mut self.live {
            let now = tracked.tunnel.counters.snapshot();
            if now != tracked.queued {
                tracked.queued = now;
                moved.push((session_id.clone(), tunnel_id.clone(), now));
            }
        }
        if moved.is_empty() {
            return;
        }
        let superseded: HashSet<(&str, &str)> = moved
            .iter()
            .map(|(s, t, _)| (s.as_str(), t.as_str()))
            .collect();
        self.queue.retain(|e| match e {
            SessionEvent::Counters {
                session_id,
                tunnel_id,
                ..
            } => !superseded.contains(&(session_id.as_str(), tunnel_id.as_str())),
            _ => true,
        });
        let at_ms = unix_ms();
        for (session_id, tunnel_id, c) in moved {
            self.push(SessionEvent::Counters {
                tunnel_id,
                session_id,
                bytes_in: c.bytes_in,
                bytes_out: c.bytes_out,
                requests: c.requests,
                at_ms,
            });
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// Every change under this lock is a single push, remove or drain: recovering a poisoned lock
// is safe.
fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait::async_trait]
impl crate::tunnel::held::HeldNames for ControlLink {
    async fn held(
        &self,
        names: &[String],
    ) -> Result<Vec<String>, crate::control_http::ControlHttpError> {
        let query = warren_proto::held::NamesQuery {
            names: names.to_vec(),
        };
        let answer: warren_proto::held::NamesHeld = self
            .http
            .post_json("/internal/v1/names", &self.secret, &query)
            .await?;
        Ok(answer.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(n: usize) -> SessionEvent {
        SessionEvent::Started {
            tunnel_id: format!("t{n}"),
            session_id: format!("s{n}"),
            account_id: "a".into(),
            token_id: "k".into(),
            hostname: "h".into(),
            agent_version: "v".into(),
            agent_addr: "x".into(),
            at_ms: 0,
        }
    }

    fn counters(n: usize) -> SessionEvent {
        SessionEvent::Counters {
            tunnel_id: format!("t{n}"),
            session_id: format!("s{n}"),
            bytes_in: 0,
            bytes_out: 0,
            requests: 0,
            at_ms: 0,
        }
    }

    #[test]
    fn a_full_queue_drops_counters_before_session_events() {
        let mut book = Book::default();
        book.push(started(0));
        for n in 1..QUEUE_CAPACITY {
            book.push(counters(n));
        }
        book.push(started(QUEUE_CAPACITY));
        assert_eq!(book.queue.len(), QUEUE_CAPACITY);
        assert_eq!(book.queue.front(), Some(&started(0)), "Started kept");
        assert_eq!(
            book.queue.get(1),
            Some(&counters(2)),
            "oldest Counters dropped"
        );
        assert_eq!(book.queue.back(), Some(&started(QUEUE_CAPACITY)));
        assert_eq!(book.dropped, 1);
    }

    #[test]
    fn a_queue_of_session_events_only_drops_the_oldest() {
        let mut book = Book::default();
        for n in 0..=QUEUE_CAPACITY {
            book.push(started(n));
        }
        assert_eq!(book.queue.len(), QUEUE_CAPACITY);
        assert_eq!(book.queue.front(), Some(&started(1)));
    }
}
