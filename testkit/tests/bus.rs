//! The Redis link between control and edges (`warren-bus`) against a real redis-server: the
//! events stream's consumer group never loses an entry that was read but not acknowledged,
//! another consumer takes over abandoned entries, trimming keeps what is pending, a Redis
//! restart is survived, and closes reach subscribers (single Redis and Redis Cluster).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use warren_bus::RedisConnection;
use warren_bus::close::{CLOSE_CHANNEL, CloseSubscription, publish};
use warren_bus::events::{EVENTS_STREAM, EventConsumer, append};
use warren_proto::report::{CloseTunnel, EdgeReport, SessionEvent};
use warren_testkit::redis::{RedisCluster, RedisServer};

fn report(n: u64) -> EdgeReport {
    EdgeReport {
        edge_id: "edge-a".into(),
        region: "eu".into(),
        live: vec![format!("t{n}")],
        events: vec![SessionEvent::Counters {
            tunnel_id: format!("t{n}"),
            session_id: "s".into(),
            bytes_in: n,
            bytes_out: n,
            requests: n,
            at_ms: n,
        }],
    }
}

async fn append_n(
    connection: &RedisConnection,
    range: std::ops::Range<u64>,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for n in range {
        ids.push(append(connection, &report(n)).await?);
    }
    Ok(ids)
}

/// Reads until `want` entries arrived (or a read comes back empty).
async fn read(
    consumer: &mut EventConsumer,
    want: usize,
) -> anyhow::Result<Vec<(String, EdgeReport)>> {
    let mut got = Vec::new();
    while got.len() < want {
        let entries = consumer.next(100).await?;
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            got.push((entry.id, entry.report.map_err(anyhow::Error::msg)?));
        }
    }
    Ok(got)
}

fn ids(entries: &[(String, EdgeReport)]) -> Vec<String> {
    entries.iter().map(|(id, _)| id.clone()).collect()
}

#[tokio::test]
async fn entries_read_but_not_acknowledged_come_back_to_the_same_consumer() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let connection = RedisConnection::connect(&redis.url()).await?;
    // Appended before control ever ran: the new group still reads them.
    let appended = append_n(&connection, 0..3).await?;

    let mut first = EventConsumer::connect(&redis.url(), "control-1").await?;
    let got = read(&mut first, 3).await?;
    assert_eq!(ids(&got), appended);
    assert_eq!(got[2].1, report(2), "the report survives the trip");
    // Control "crashes" here: nothing acknowledged.
    drop(first);

    let mut again = EventConsumer::connect(&redis.url(), "control-1").await?;
    let got = read(&mut again, 3).await?;
    assert_eq!(
        ids(&got),
        appended,
        "pending entries are read again, in order"
    );
    again.ack(&ids(&got)).await?;
    drop(again);

    let mut after_ack = EventConsumer::connect(&redis.url(), "control-1").await?;
    assert!(
        after_ack.next(100).await?.is_empty(),
        "acknowledged entries are not read again"
    );
    let new = append_n(&connection, 3..5).await?;
    let got = read(&mut after_ack, 2).await?;
    assert_eq!(ids(&got), new, "then new entries");
    Ok(())
}

#[tokio::test]
async fn another_consumer_takes_over_abandoned_entries_and_trim_keeps_them() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let connection = RedisConnection::connect(&redis.url()).await?;
    let mut dead = EventConsumer::connect(&redis.url(), "control-dead").await?;
    let mut alive = EventConsumer::connect(&redis.url(), "control-alive").await?;

    let first = append_n(&connection, 0..4).await?;
    let got = read(&mut alive, 4).await?;
    alive.ack(&ids(&got)).await?;
    let abandoned = append_n(&connection, 4..6).await?;
    assert_eq!(ids(&read(&mut dead, 2).await?), abandoned);

    // Trimming drops what was acknowledged and keeps what is pending.
    alive.trim().await?;
    let left: u64 = redis.cli(&["XLEN", EVENTS_STREAM])?.trim().parse()?;
    assert_eq!(left, 2, "only the two pending entries are left");

    assert_eq!(
        alive.claim_abandoned(Duration::from_secs(60)).await?,
        0,
        "entries are not taken over before they were idle long enough"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(alive.claim_abandoned(Duration::from_millis(10)).await?, 2);
    let got = read(&mut alive, 2).await?;
    assert_eq!(ids(&got), abandoned, "the survivor applies them");
    alive.ack(&ids(&got)).await?;
    let pending = redis.cli(&["XPENDING", EVENTS_STREAM, "control"])?;
    assert_eq!(
        pending.lines().next().map(str::trim),
        Some("0"),
        "{pending}"
    );
    assert!(!first.is_empty());
    Ok(())
}

#[tokio::test]
async fn the_consumer_survives_a_redis_restart() -> anyhow::Result<()> {
    let mut redis = RedisServer::start()?;
    let mut consumer = EventConsumer::connect(&redis.url(), "control-1").await?;
    redis.restart()?;
    // Reads fail while the connection is re-established, then the group is re-created.
    let connection = RedisConnection::connect(&redis.url()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut appended = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut n = 0;
    while seen.is_empty() || seen != appended {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no entries after the restart (appended {appended:?}, seen {seen:?})"
        );
        if appended.len() < 3 {
            appended.insert(append(&connection, &report(n)).await?);
            n += 1;
        }
        match consumer.next(100).await {
            Ok(entries) => {
                let got: Vec<String> = entries.into_iter().map(|e| e.id).collect();
                consumer.ack(&got).await?;
                seen.extend(got);
            }
            Err(e) => eprintln!("read after restart: {e}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn malformed_entries_are_reported_not_fatal() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    redis.cli(&["XADD", EVENTS_STREAM, "*", "report", "{not json"])?;
    redis.cli(&["XADD", EVENTS_STREAM, "*", "other", "x"])?;
    let mut consumer = EventConsumer::connect(&redis.url(), "control-1").await?;
    let entries = consumer.next(10).await?;
    assert_eq!(entries.len(), 2);
    let first = entries[0]
        .report
        .as_ref()
        .err()
        .context("bad JSON is an error")?;
    assert!(first.0.contains("not a report"), "{first}");
    let second = entries[1]
        .report
        .as_ref()
        .err()
        .context("no field is an error")?;
    assert!(second.0.contains("no field"), "{second}");
    Ok(())
}

async fn closes_reach_subscribers(url: &str, publisher: &RedisConnection) -> anyhow::Result<()> {
    let mut subscription = CloseSubscription::subscribe(url).await?;
    let order = CloseTunnel {
        tunnel_id: "t_123".into(),
        reason: "closed through the API".into(),
        until: 1_900_000_000,
    };
    let mut delivered = 0;
    // A subscription is live once the server confirmed it, but give it a few tries.
    for _ in 0..50 {
        delivered = publish(publisher, &order).await?;
        if delivered > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(delivered > 0, "no subscriber received the close");
    let got = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .context("no message within 5 s")?
        .context("subscription ended")?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(got, order);
    Ok(())
}

#[tokio::test]
async fn closes_reach_subscribers_and_bad_messages_are_errors() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let publisher = RedisConnection::connect(&redis.url()).await?;
    closes_reach_subscribers(&redis.url(), &publisher).await?;

    let mut subscription = CloseSubscription::subscribe(&redis.url()).await?;
    redis.cli(&["PUBLISH", CLOSE_CHANNEL, "not json"])?;
    let got = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .context("no message within 5 s")?
        .context("subscription ended")?;
    let error = got.err().context("a malformed close is an error")?;
    assert!(error.0.contains("not a close message"), "{error}");
    Ok(())
}

#[tokio::test]
async fn closes_reach_subscribers_on_a_redis_cluster() -> anyhow::Result<()> {
    let cluster = RedisCluster::start(3)?;
    let publisher = RedisConnection::connect(&cluster.url()).await?;
    closes_reach_subscribers(&cluster.url(), &publisher).await?;
    // The events stream works on a cluster too (one key, one slot).
    let appended = append_n(&publisher, 0..2).await?;
    let mut consumer = EventConsumer::connect(&cluster.url(), "control-1").await?;
    let got = read(&mut consumer, 2).await?;
    assert_eq!(ids(&got), appended);
    consumer.ack(&ids(&got)).await?;
    Ok(())
}
