//! Session events from edges to control: the Redis Stream `warren:events`.
//!
//! Each entry is one [`EdgeReport`] (JSON in the field `report`), appended by the edge that
//! observed the events. Control reads the stream through the consumer group `control` and
//! acknowledges an entry only after applying it to the database, so an entry read by a control
//! that then stopped or crashed stays pending and is read again: first by the same consumer
//! when it comes back ([`EventConsumer::next`] starts with its own pending entries), or by
//! another control replica once it has been idle for a while ([`EventConsumer::claim_abandoned`]).
//! Applying is idempotent (counters are cumulative), so an entry applied twice changes nothing.
//!
//! The stream lives under one key, so it sits in one hash slot of a Redis Cluster. Control trims
//! what every consumer has acknowledged ([`EventConsumer::trim`]); edges cap the length at
//! [`MAX_STREAM_LEN`] (approximately) in case no control reads it for a very long time.

use crate::connection::{BusError, OPERATION_TIMEOUT, RedisConnection, query};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingReply, StreamReadReply};
use redis::{Value, cmd};
use std::time::Duration;
use warren_proto::report::EdgeReport;

/// The stream's key.
pub const EVENTS_STREAM: &str = "warren:events";
/// Control's consumer group.
pub const CONSUMER_GROUP: &str = "control";
/// The field holding the report's JSON.
pub const REPORT_FIELD: &str = "report";
/// Approximate cap on the stream's length (about a day of reports from 10 busy edges).
pub const MAX_STREAM_LEN: usize = 1_000_000;
/// Largest entry control accepts; a larger one is acknowledged and dropped with an error log.
pub const MAX_ENTRY_BYTES: usize = 4 << 20;

/// Appends `report` to the stream; returns the entry id.
pub async fn append(connection: &RedisConnection, report: &EdgeReport) -> Result<String, BusError> {
    let json = serde_json::to_string(report)
        .map_err(|e| BusError::Unavailable(format!("cannot encode a report: {e}")))?;
    let mut xadd = cmd("XADD");
    xadd.arg(EVENTS_STREAM)
        .arg("MAXLEN")
        .arg("~")
        .arg(MAX_STREAM_LEN)
        .arg("*")
        .arg(REPORT_FIELD)
        .arg(json);
    query(connection, &xadd, "XADD", OPERATION_TIMEOUT).await
}

/// One entry read from the stream. `report` is an error for an entry that is not a valid
/// report (it should be acknowledged, or it would be read again forever).
#[derive(Debug)]
pub struct Entry {
    pub id: String,
    pub report: Result<EdgeReport, crate::Malformed>,
}

/// Control's reader of the stream: one consumer of the group, on its own connection (reads
/// block for up to a second, which would hold up every other command on a shared connection).
pub struct EventConsumer {
    connection: RedisConnection,
    consumer: String,
    /// Read this consumer's pending entries (delivered, never acknowledged) before new ones.
    backlog: bool,
}

/// The longest a read waits for new entries.
pub const READ_BLOCK: Duration = Duration::from_secs(1);

impl EventConsumer {
    /// Connects to `url` as `consumer` (a stable name per control instance, so a restarted
    /// control finds what it left pending) and creates the group if needed. A new group reads
    /// the stream from its beginning: events edges appended before control ever ran count too.
    pub async fn connect(url: &str, consumer: &str) -> Result<EventConsumer, BusError> {
        if consumer.is_empty() || consumer.len() > 200 {
            return Err(BusError::Unavailable(
                "the consumer name must be 1 to 200 characters".into(),
            ));
        }
        let connection =
            RedisConnection::connect_with_timeout(url, READ_BLOCK + OPERATION_TIMEOUT).await?;
        let consumer = EventConsumer {
            connection,
            consumer: consumer.to_string(),
            backlog: true,
        };
        consumer.ensure_group().await?;
        Ok(consumer)
    }

    pub fn name(&self) -> &str {
        &self.consumer
    }

    /// Creates the group (and the stream) unless they exist. Also needed after Redis lost them.
    pub async fn ensure_group(&self) -> Result<(), BusError> {
        let mut create = cmd("XGROUP");
        create
            .arg("CREATE")
            .arg(EVENTS_STREAM)
            .arg(CONSUMER_GROUP)
            .arg("0")
            .arg("MKSTREAM");
        match query::<Value>(
            &self.connection,
            &create,
            "XGROUP CREATE",
            OPERATION_TIMEOUT,
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(BusError::Unavailable(e)) if e.contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The next entries, at most `count`: this consumer's pending ones first, then new ones
    /// (waiting up to [`READ_BLOCK`] for some). An empty answer means nothing to do right now.
    pub async fn next(&mut self, count: usize) -> Result<Vec<Entry>, BusError> {
        let entries = self.read(count).await?;
        if entries.is_empty() && self.backlog {
            // No pending entries (left): go on with new ones.
            self.backlog = false;
            return self.read(count).await;
        }
        Ok(entries)
    }

    async fn read(&mut self, count: usize) -> Result<Vec<Entry>, BusError> {
        let mut read = cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(CONSUMER_GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count.max(1));
        if !self.backlog {
            read.arg("BLOCK").arg(READ_BLOCK.as_millis() as u64);
        }
        read.arg("STREAMS")
            .arg(EVENTS_STREAM)
            .arg(if self.backlog { "0" } else { ">" });
        let reply: Option<StreamReadReply> = match query(
            &self.connection,
            &read,
            "XREADGROUP",
            READ_BLOCK + OPERATION_TIMEOUT,
        )
        .await
        {
            Ok(reply) => reply,
            Err(BusError::Unavailable(e)) if e.contains("NOGROUP") => {
                // Redis restarted empty: the group is gone with the stream.
                self.ensure_group().await?;
                self.backlog = true;
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        Ok(reply
            .map(|r| r.keys)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|key| key.ids)
            .map(entry)
            .collect())
    }

    /// Reads this consumer's pending entries again on the next [`EventConsumer::next`] (after
    /// an entry could not be applied).
    pub fn retry_pending(&mut self) {
        self.backlog = true;
    }

    /// Acknowledges applied entries.
    pub async fn ack(&self, ids: &[String]) -> Result<(), BusError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut ack = cmd("XACK");
        ack.arg(EVENTS_STREAM).arg(CONSUMER_GROUP).arg(ids);
        query::<u64>(&self.connection, &ack, "XACK", OPERATION_TIMEOUT).await?;
        Ok(())
    }

    /// Takes over entries another consumer (a control replica that died) left unacknowledged
    /// for `min_idle`; they come back from [`EventConsumer::next`]. Returns how many.
    pub async fn claim_abandoned(&mut self, min_idle: Duration) -> Result<usize, BusError> {
        let mut claimed = 0;
        let mut start = "0-0".to_string();
        loop {
            let mut autoclaim = cmd("XAUTOCLAIM");
            autoclaim
                .arg(EVENTS_STREAM)
                .arg(CONSUMER_GROUP)
                .arg(&self.consumer)
                .arg(min_idle.as_millis() as u64)
                .arg(&start)
                .arg("COUNT")
                .arg(100)
                .arg("JUSTID");
            let reply: StreamAutoClaimReply = query(
                &self.connection,
                &autoclaim,
                "XAUTOCLAIM",
                OPERATION_TIMEOUT,
            )
            .await?;
            claimed += reply.claimed.len();
            if reply.next_stream_id == "0-0" || claimed >= 10_000 {
                break;
            }
            start = reply.next_stream_id;
        }
        if claimed > 0 {
            self.backlog = true;
        }
        Ok(claimed)
    }

    /// Deletes the entries every consumer of the group has acknowledged.
    pub async fn trim(&self) -> Result<(), BusError> {
        let mut pending = cmd("XPENDING");
        pending.arg(EVENTS_STREAM).arg(CONSUMER_GROUP);
        let pending: StreamPendingReply =
            query(&self.connection, &pending, "XPENDING", OPERATION_TIMEOUT).await?;
        let keep_from = match pending {
            StreamPendingReply::Data(data) => data.start_id,
            _ => {
                let mut info = cmd("XINFO");
                info.arg("GROUPS").arg(EVENTS_STREAM);
                let groups: redis::streams::StreamInfoGroupsReply =
                    query(&self.connection, &info, "XINFO GROUPS", OPERATION_TIMEOUT).await?;
                match groups.groups.into_iter().find(|g| g.name == CONSUMER_GROUP) {
                    Some(group) => group.last_delivered_id,
                    None => return Ok(()),
                }
            }
        };
        if keep_from == "0-0" {
            return Ok(());
        }
        let mut trim = cmd("XTRIM");
        // Exact (not `~`): cheap at this rate, and an approximate trim never trims a short stream.
        trim.arg(EVENTS_STREAM).arg("MINID").arg(&keep_from);
        query::<u64>(&self.connection, &trim, "XTRIM", OPERATION_TIMEOUT).await?;
        Ok(())
    }
}

fn entry(id: StreamId) -> Entry {
    Entry {
        report: report(&id).map_err(crate::Malformed),
        id: id.id,
    }
}

fn report(id: &StreamId) -> Result<EdgeReport, String> {
    match id.map.get(REPORT_FIELD) {
        Some(Value::BulkString(bytes)) if bytes.len() > MAX_ENTRY_BYTES => Err(format!(
            "entry of {} bytes is larger than the {MAX_ENTRY_BYTES} bytes allowed",
            bytes.len()
        )),
        Some(Value::BulkString(bytes)) => {
            serde_json::from_slice(bytes).map_err(|e| format!("not a report: {e}"))
        }
        Some(_) => Err(format!("field {REPORT_FIELD:?} is not a string")),
        None => Err(format!("no field {REPORT_FIELD:?}")),
    }
}
