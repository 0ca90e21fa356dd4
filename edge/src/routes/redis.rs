//! The cluster-wide route table in Redis: `route:{HOST}` holds the JSON [`Route`] of the edge
//! and session serving HOST, with a lease (`PX`) the holding edge renews.
//!
//! Every operation is one Lua script on one key, so it is atomic and, in Redis Cluster, touches
//! one hash slot (the braces make HOST the hash tag). Claims refuse another account's live
//! route and take over the same account's (a reconnecting agent); releases and renewals are
//! compare-and-act on the session id, so a stale edge can never remove or extend a newer
//! owner's route.

use super::{Claimed, Route, RouteError, RouteTable};
use async_trait::async_trait;
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;
pub use warren_bus::{BusError, OPERATION_TIMEOUT, RedisConnection, redact};

static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local current = redis.call('GET', KEYS[1])
if current then
  local held = cjson.decode(current)
  if held.account_id ~= ARGV[2] then return {'taken'} end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
  if held.session_id == ARGV[3] then return {'new'} end
  return {'took_over', current}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
return {'new'}
"#,
    )
});

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current).session_id == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});

static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current).session_id == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#,
    )
});

/// The route table of a cluster of edges.
pub struct RedisRouteTable {
    connection: RedisConnection,
    lease: Duration,
}

impl RedisRouteTable {
    pub fn new(connection: RedisConnection, lease: Duration) -> RedisRouteTable {
        RedisRouteTable { connection, lease }
    }

    /// Connects to `url` (see [`RedisConnection::connect`]) with the default lease.
    pub async fn connect(url: &str) -> Result<RedisRouteTable, RouteError> {
        Ok(RedisRouteTable::new(
            RedisConnection::connect(url).await?,
            super::DEFAULT_LEASE,
        ))
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        host: &str,
        args: &[&str],
    ) -> Result<T, RouteError> {
        let mut connection = self.connection.clone();
        let mut invocation = script.key(route_key(host));
        for arg in args {
            invocation.arg(*arg);
        }
        match tokio::time::timeout(OPERATION_TIMEOUT, invocation.invoke_async(&mut connection))
            .await
        {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(RouteError::Unavailable(format!("Redis: {e}"))),
            Err(_) => Err(RouteError::Unavailable(format!(
                "Redis did not answer within {OPERATION_TIMEOUT:?}"
            ))),
        }
    }

    fn lease_ms(&self) -> String {
        self.lease.as_millis().max(1).to_string()
    }
}

/// `route:{HOST}`: the braces make the hostname the Redis Cluster hash tag.
pub fn route_key(host: &str) -> String {
    format!("route:{{{host}}}")
}

#[async_trait]
impl RouteTable for RedisRouteTable {
    async fn claim(&self, host: &str, route: &Route) -> Result<Claimed, RouteError> {
        let json = serde_json::to_string(route)
            .map_err(|e| RouteError::Unavailable(format!("cannot encode route: {e}")))?;
        let reply: Vec<String> = self
            .run(
                &CLAIM,
                host,
                &[
                    &json,
                    &route.account_id,
                    &route.session_id,
                    &self.lease_ms(),
                ],
            )
            .await?;
        match reply.as_slice() {
            [outcome] if outcome == "new" => Ok(Claimed::New),
            [outcome] if outcome == "taken" => Err(RouteError::Taken {
                host: host.to_string(),
            }),
            [outcome, previous] if outcome == "took_over" => serde_json::from_str(previous)
                .map(Claimed::TookOver)
                .map_err(|e| RouteError::Unavailable(format!("unreadable route in Redis: {e}"))),
            other => Err(RouteError::Unavailable(format!(
                "unexpected answer from the claim script: {other:?}"
            ))),
        }
    }

    async fn lookup(&self, host: &str) -> Result<Option<Route>, RouteError> {
        let mut connection = self.connection.clone();
        let get = redis::cmd("GET").arg(route_key(host)).to_owned();
        let value: Option<String> =
            match tokio::time::timeout(OPERATION_TIMEOUT, get.query_async(&mut connection)).await {
                Ok(Ok(value)) => value,
                Ok(Err(e)) => return Err(RouteError::Unavailable(format!("Redis: {e}"))),
                Err(_) => {
                    return Err(RouteError::Unavailable(format!(
                        "Redis did not answer within {OPERATION_TIMEOUT:?}"
                    )));
                }
            };
        value
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|e| RouteError::Unavailable(format!("unreadable route in Redis: {e}")))
    }

    async fn release(&self, host: &str, session_id: &str) -> Result<bool, RouteError> {
        let removed: i64 = self.run(&RELEASE, host, &[session_id]).await?;
        Ok(removed == 1)
    }

    async fn renew(&self, host: &str, session_id: &str) -> Result<bool, RouteError> {
        let renewed: i64 = self
            .run(&RENEW, host, &[session_id, &self.lease_ms()])
            .await?;
        Ok(renewed == 1)
    }

    fn lease(&self) -> Duration {
        self.lease
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_host_share_a_hash_slot() {
        assert_eq!(
            route_key("demo.eu.example.net"),
            "route:{demo.eu.example.net}"
        );
    }
}
