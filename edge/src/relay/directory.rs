//! The live edge directory: each edge announces itself in Redis as `edge:{ID}` → its region
//! and relay address, with a TTL it keeps refreshing. An edge that dies drops out by itself;
//! no edge ever deletes another's entry.

use crate::routes::RouteError;
use crate::routes::redis::RedisConnection;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an announcement lives without refresh.
pub const ENTRY_TTL: Duration = Duration::from_secs(15);
/// How often each edge refreshes its entry (and re-creates it after Redis lost it).
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(2);
/// How long this edge trusts a looked-up entry before asking Redis again.
const CACHE_FOR: Duration = Duration::from_secs(5);

/// One edge as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeEntry {
    pub edge_id: String,
    pub region: String,
    /// `host:port` of its relay listener.
    pub relay_addr: String,
}

pub struct Directory {
    connection: RedisConnection,
    cache: Mutex<HashMap<String, (EdgeEntry, Instant)>>,
}

impl Directory {
    pub fn new(connection: RedisConnection) -> Directory {
        Directory {
            connection,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Announces (or refreshes) `entry`.
    pub async fn announce(&self, entry: &EdgeEntry) -> Result<(), RouteError> {
        let json = serde_json::to_string(entry)
            .map_err(|e| RouteError::Unavailable(format!("cannot encode edge entry: {e}")))?;
        let mut connection = self.connection.clone();
        let set = redis::cmd("SET")
            .arg(key(&entry.edge_id))
            .arg(json)
            .arg("PX")
            .arg(ENTRY_TTL.as_millis().to_string())
            .to_owned();
        let _: () = timed(set.query_async(&mut connection)).await?;
        Ok(())
    }

    /// Removes this edge's own entry when it stops (only ever its own).
    pub async fn withdraw(&self, edge_id: &str) -> Result<(), RouteError> {
        let mut connection = self.connection.clone();
        let del = redis::cmd("DEL").arg(key(edge_id)).to_owned();
        let _: i64 = timed(del.query_async(&mut connection)).await?;
        Ok(())
    }

    /// The entry of `edge_id`, from the short cache or Redis.
    pub async fn lookup(&self, edge_id: &str) -> Result<Option<EdgeEntry>, RouteError> {
        if let Some((entry, at)) = self.cache().get(edge_id)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(Some(entry.clone()));
        }
        let mut connection = self.connection.clone();
        let get = redis::cmd("GET").arg(key(edge_id)).to_owned();
        let json: Option<String> = timed(get.query_async(&mut connection)).await?;
        let Some(json) = json else {
            self.cache().remove(edge_id);
            return Ok(None);
        };
        let entry: EdgeEntry = serde_json::from_str(&json)
            .map_err(|e| RouteError::Unavailable(format!("unreadable edge entry: {e}")))?;
        self.cache()
            .insert(edge_id.to_string(), (entry.clone(), Instant::now()));
        Ok(Some(entry))
    }

    /// Forgets a cached entry (its relay address stopped answering).
    pub fn invalidate(&self, edge_id: &str) {
        self.cache().remove(edge_id);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (EdgeEntry, Instant)>> {
        // Each use is one map call; a poisoned lock still holds a consistent map.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `edge:{ID}`.
pub fn key(edge_id: &str) -> String {
    format!("edge:{{{edge_id}}}")
}

async fn timed<T>(
    future: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, RouteError> {
    match tokio::time::timeout(Duration::from_secs(2), future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(RouteError::Unavailable(format!("Redis: {e}"))),
        Err(_) => Err(RouteError::Unavailable(
            "Redis did not answer within 2 s".into(),
        )),
    }
}
