//! Control's side of the cluster's Redis link (`warren_bus`): it applies the session events
//! edges append to the `warren:events` stream, and publishes closes on `warren:close`.
//!
//! Events are acknowledged only once applied, so a control stopped, restarted or crashed in
//! the middle loses nothing: what it had read but not applied is read again when it returns
//! (same consumer name, `--instance-id`), and entries another replica left behind are claimed
//! after [`ABANDONED_AFTER`]. Applying is idempotent, so an entry applied twice changes nothing.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warren_bus::events::{Entry, EventConsumer};
use warren_proto::report::CloseTunnel;

use crate::api::reports;
use crate::state::AppState;

/// Entries read per round.
const BATCH: usize = 200;
/// Entries another consumer has held this long without acknowledging are taken over.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(30);
/// How often to look for abandoned entries.
const CLAIM_EVERY: Duration = Duration::from_secs(10);
/// How often to delete acknowledged entries.
const TRIM_EVERY: Duration = Duration::from_secs(60);
/// Pause after Redis or the database failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Publishes `closes` so the edges holding them close them now. A failure is logged, not
/// returned: edges also learn of closes from their HTTP reports within a few seconds.
pub async fn publish_closes(state: &AppState, closes: &[CloseTunnel]) {
    let Some(redis) = state.redis() else {
        return;
    };
    for close in closes {
        match warren_bus::close::publish(redis, close).await {
            Ok(edges) => {
                tracing::debug!(tunnel = %close.tunnel_id, edges, "published a close");
            }
            Err(e) => {
                tracing::warn!(tunnel = %close.tunnel_id, error = %e, "cannot publish a close; edges will see it in their next report (within 5 s)");
            }
        }
    }
}

/// Reads and applies session events from the stream at `url` until `shutdown`.
pub async fn consume_events(state: AppState, url: String, shutdown: CancellationToken) {
    let name = state.config().instance_id.clone();
    let mut consumer: Option<EventConsumer> = None;
    let mut failing = false;
    let mut last_claim: Option<Instant> = None;
    let mut last_trim = Instant::now();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let reader = match consumer.as_mut() {
            Some(reader) => reader,
            None => {
                let connected = tokio::select! {
                    connected = EventConsumer::connect(&url, &name) => connected,
                    () = shutdown.cancelled() => return,
                };
                match connected {
                    Ok(reader) => {
                        tracing::info!(consumer = %name, redis = %warren_bus::redact(&url), "reading session events from the Redis stream");
                        failing = false;
                        consumer.insert(reader)
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "cannot read session events from Redis; retrying every second");
                        }
                        failing = true;
                        pause(&shutdown).await;
                        continue;
                    }
                }
            }
        };
        if last_claim.is_none_or(|t| t.elapsed() >= CLAIM_EVERY) {
            last_claim = Some(Instant::now());
            match reader.claim_abandoned(ABANDONED_AFTER).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    entries = n,
                    "took over session events another control left unapplied"
                ),
                Err(e) => tracing::debug!(error = %e, "XAUTOCLAIM failed"),
            }
        }
        if last_trim.elapsed() >= TRIM_EVERY {
            last_trim = Instant::now();
            if let Err(e) = reader.trim().await {
                tracing::debug!(error = %e, "trimming the events stream failed");
            }
        }
        // Cancelling a read loses nothing: what Redis delivered stays pending for this name.
        let read = tokio::select! {
            read = reader.next(BATCH) => read,
            () = shutdown.cancelled() => return,
        };
        let entries = match read {
            Ok(entries) => {
                if failing {
                    tracing::info!("reading session events from Redis again");
                    failing = false;
                }
                entries
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read session events from Redis; retrying every second");
                }
                failing = true;
                pause(&shutdown).await;
                continue;
            }
        };
        let mut applied = Vec::with_capacity(entries.len());
        let mut stuck = false;
        for entry in &entries {
            match apply(&state, entry).await {
                Ok(()) => applied.push(entry.id.clone()),
                Err(e) => {
                    tracing::warn!(entry = %entry.id, error = %e, "cannot apply session events to the database; will retry");
                    reader.retry_pending();
                    stuck = true;
                    break;
                }
            }
        }
        if let Err(e) = reader.ack(&applied).await {
            // They stay pending and are applied again: harmless.
            tracing::debug!(error = %e, "XACK failed");
            reader.retry_pending();
        }
        if stuck {
            pause(&shutdown).await;
        }
    }
}

/// Applies one entry. A malformed entry is logged and counts as applied (acknowledged), or
/// it would come back forever.
async fn apply(state: &AppState, entry: &Entry) -> Result<(), sqlx::Error> {
    let report = match &entry.report {
        Ok(report) => report,
        Err(e) => {
            tracing::error!(entry = %entry.id, error = %e, "dropping a malformed entry of the events stream");
            return Ok(());
        }
    };
    if let Err(e) = reports::check(report) {
        tracing::error!(entry = %entry.id, edge = %report.edge_id, error = %e, "dropping an invalid report from the events stream");
        return Ok(());
    }
    reports::apply(state, report).await
}

async fn pause(shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(RETRY_AFTER) => {}
        () = shutdown.cancelled() => {}
    }
}
