//! One connection type for a single Redis and a Redis Cluster; both reconnect by themselves.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::time::Duration;

/// Longest wait for one Redis operation before the caller treats Redis as unavailable.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(2);

/// Redis could not be reached or answered with an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("{0}")]
    Unavailable(String),
}

impl BusError {
    pub(crate) fn redis(what: &str, e: redis::RedisError) -> BusError {
        BusError::Unavailable(format!("Redis {what}: {e}"))
    }
}

/// A connection to a single Redis or to a Redis Cluster. Cheap to clone: clones share one
/// multiplexed connection, so never run a blocking command (`BLOCK`) on a shared one; open a
/// dedicated connection for that.
#[derive(Clone)]
pub enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConnection::Single(_) => "RedisConnection::Single",
            RedisConnection::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl RedisConnection {
    /// Connects to `url`: `redis://HOST:PORT[/DB]` (or `rediss://`) for one server,
    /// `redis+cluster://HOST:PORT,HOST:PORT,...` for a Redis Cluster (any subset of its nodes).
    pub async fn connect(url: &str) -> Result<RedisConnection, BusError> {
        RedisConnection::connect_with_timeout(url, OPERATION_TIMEOUT).await
    }

    /// Like [`RedisConnection::connect`], with a longer response timeout for blocking reads.
    pub async fn connect_with_timeout(
        url: &str,
        response_timeout: Duration,
    ) -> Result<RedisConnection, BusError> {
        let unavailable = |e: redis::RedisError| {
            BusError::Unavailable(format!("cannot connect to Redis at {}: {e}", redact(url)))
        };
        if let Some(nodes) = cluster_nodes(url) {
            let client = ClusterClientBuilder::new(nodes)
                .connection_timeout(OPERATION_TIMEOUT)
                .response_timeout(response_timeout)
                .build()
                .map_err(unavailable)?;
            let connection = client.get_async_connection().await.map_err(unavailable)?;
            return Ok(RedisConnection::Cluster(connection));
        }
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OPERATION_TIMEOUT))
            .set_response_timeout(Some(response_timeout));
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        Ok(RedisConnection::Single(manager))
    }
}

/// The node URLs of a `redis+cluster://a,b,c` URL; `None` for a single-server URL.
pub fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let nodes = url.strip_prefix("redis+cluster://")?;
    Some(
        nodes
            .split(',')
            .filter(|n| !n.is_empty())
            .map(|n| format!("redis://{n}"))
            .collect(),
    )
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConnection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
        }
    }
}

/// Runs `cmd` on `connection` within `timeout`.
pub(crate) async fn query<T: redis::FromRedisValue>(
    connection: &RedisConnection,
    cmd: &Cmd,
    what: &str,
    timeout: Duration,
) -> Result<T, BusError> {
    let mut connection = connection.clone();
    match tokio::time::timeout(timeout, cmd.query_async(&mut connection)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(BusError::redis(what, e)),
        Err(_) => Err(BusError::Unavailable(format!(
            "Redis {what}: no answer within {timeout:?}"
        ))),
    }
}

/// A Redis URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://<redacted>@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("redis://user:secret@10.0.0.1:6379"),
            "redis://<redacted>@10.0.0.1:6379"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn cluster_urls_list_their_nodes() {
        assert_eq!(
            cluster_nodes("redis+cluster://10.0.0.1:7000,10.0.0.2:7000,"),
            Some(vec![
                "redis://10.0.0.1:7000".to_string(),
                "redis://10.0.0.2:7000".to_string()
            ])
        );
        assert_eq!(cluster_nodes("redis://10.0.0.1:6379"), None);
    }
}
