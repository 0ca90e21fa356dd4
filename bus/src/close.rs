//! Closes from control to edges: the pub/sub channel `warren:close`.
//!
//! Control publishes a [`CloseTunnel`] when a tunnel is closed through the API or the token
//! that opened it is revoked; every edge is subscribed and closes the tunnel if it holds a
//! session for it, and refuses its grant until the grant expires. Pub/sub delivers only to
//! those subscribed at that moment, so edges also ask control for the closed tunnels every few
//! seconds and right after they (re)subscribe.
//!
//! In a Redis Cluster, classic pub/sub messages reach every node, so an edge subscribes on any
//! one node.

use crate::connection::{BusError, OPERATION_TIMEOUT, RedisConnection, cluster_nodes, query};
use futures_util::StreamExt;
use redis::aio::PubSubStream;
use redis::cmd;
use warren_proto::report::CloseTunnel;

/// The channel.
pub const CLOSE_CHANNEL: &str = "warren:close";
/// Largest message an edge accepts.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Publishes `order`; returns how many subscribers (edges) received it.
pub async fn publish(connection: &RedisConnection, order: &CloseTunnel) -> Result<u64, BusError> {
    let json = serde_json::to_string(order)
        .map_err(|e| BusError::Unavailable(format!("cannot encode a close: {e}")))?;
    let mut publish = cmd("PUBLISH");
    publish.arg(CLOSE_CHANNEL).arg(json);
    query(connection, &publish, "PUBLISH", OPERATION_TIMEOUT).await
}

/// An edge's subscription to the channel.
pub struct CloseSubscription {
    messages: PubSubStream,
}

impl CloseSubscription {
    /// Subscribes at `url` (a single Redis, or the first reachable node of a cluster URL).
    pub async fn subscribe(url: &str) -> Result<CloseSubscription, BusError> {
        let nodes = cluster_nodes(url).unwrap_or_else(|| vec![url.to_string()]);
        let mut last = BusError::Unavailable(format!("no Redis node in {}", crate::redact(url)));
        for node in nodes {
            match subscribe_one(&node).await {
                Ok(messages) => return Ok(CloseSubscription { messages }),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The next order; `None` once the connection is lost (subscribe again). An invalid
    /// message is an `Err` with what was wrong.
    pub async fn next(&mut self) -> Option<Result<CloseTunnel, crate::Malformed>> {
        let message = self.messages.next().await?;
        let payload = message.get_payload_bytes();
        if payload.len() > MAX_MESSAGE_BYTES {
            return Some(Err(crate::Malformed(format!(
                "a close message of {} bytes is larger than the {MAX_MESSAGE_BYTES} allowed",
                payload.len()
            ))));
        }
        Some(
            serde_json::from_slice(payload)
                .map_err(|e| crate::Malformed(format!("not a close message: {e}"))),
        )
    }
}

async fn subscribe_one(url: &str) -> Result<PubSubStream, BusError> {
    let unavailable = |e: redis::RedisError| {
        BusError::Unavailable(format!(
            "cannot subscribe at Redis {}: {e}",
            crate::redact(url)
        ))
    };
    let client = redis::Client::open(url).map_err(unavailable)?;
    let subscribe = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(CLOSE_CHANNEL).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(OPERATION_TIMEOUT, subscribe).await {
        Ok(Ok(pubsub)) => Ok(pubsub.into_on_message()),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => Err(BusError::Unavailable(format!(
            "cannot subscribe at Redis {}: no answer within {OPERATION_TIMEOUT:?}",
            crate::redact(url)
        ))),
    }
}
