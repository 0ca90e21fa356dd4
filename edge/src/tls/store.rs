//! Where certificates, ACME account keys, HTTP-01 answers and order locks live, so that every
//! edge serves the same certificate and only one of them orders it.
//!
//! The store is a small key-value interface with leases and an owner lock; the manager seals
//! secrets before they get here ([`super::seal`]). Keys (Redis):
//! - `warren:tls:cert:{HASH}:{NAME}`: the sealed JSON [`StoredCert`] for NAME
//!   (`*.eu.example.net`) from the ACME directory whose URL hashes to HASH.
//! - `warren:tls:account:{HASH}`: the sealed ACME account credentials for that directory.
//! - `warren:tls:lock:{NAME}`: who is ordering NAME's certificate (`SET NX PX`, released by
//!   compare-and-delete), so one order per certificate across all edges.
//! - `warren:tls:http01:{TOKEN}`: an HTTP-01 key authorization, for whichever edge the CA asks.
//!
//! Every operation touches one key, so it works on Redis Cluster too.

use crate::routes::redis::RedisConnection;
use async_trait::async_trait;
use redis::Script;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// Longest wait for one store operation.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

/// A certificate as stored: PEM chain (leaf first) and PEM private key.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredCert {
    pub chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for StoredCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCert").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("certificate store unavailable: {0}")]
pub struct StoreError(pub String);

#[async_trait]
pub trait CertStore: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `value` under `key`, for `ttl` if given.
    async fn put(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Takes the lock `key` for `owner` for `ttl` unless someone holds it. True if taken.
    async fn lock(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError>;
    /// Releases `key` only if `owner` still holds it.
    async fn unlock(&self, key: &str, owner: &str) -> Result<(), StoreError>;
}

/// Certificates are kept per ACME directory, so moving from staging to production orders anew.
pub fn cert_key(directory: &str, name: &str) -> String {
    format!("warren:tls:cert:{}:{name}", directory_hash(directory))
}

pub fn lock_key(name: &str) -> String {
    format!("warren:tls:lock:{name}")
}

pub fn account_key(directory: &str) -> String {
    format!("warren:tls:account:{}", directory_hash(directory))
}

/// The first 8 bytes of the directory URL's SHA-256, in hex.
fn directory_hash(directory: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(directory.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn http01_key(token: &str) -> String {
    format!("warren:tls:http01:{token}")
}

/// A value and when it expires (never, without a TTL).
type Entry = (Vec<u8>, Option<Instant>);

/// The in-process store of a single edge.
#[derive(Default)]
pub struct MemoryCertStore {
    entries: Mutex<HashMap<String, Entry>>,
}

impl MemoryCertStore {
    pub fn new() -> MemoryCertStore {
        MemoryCertStore::default()
    }

    fn live<'a>(entries: &'a mut HashMap<String, Entry>, key: &str) -> Option<&'a Vec<u8>> {
        if entries
            .get(key)
            .is_some_and(|(_, until)| until.is_some_and(|t| t <= Instant::now()))
        {
            entries.remove(key);
        }
        entries.get(key).map(|(v, _)| v)
    }
}

#[async_trait]
impl CertStore for MemoryCertStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Ok(MemoryCertStore::live(&mut entries, key).cloned())
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(
            key.to_string(),
            (value.to_vec(), ttl.map(|t| Instant::now() + t)),
        );
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(key);
        Ok(())
    }

    async fn lock(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if MemoryCertStore::live(&mut entries, key).is_some() {
            return Ok(false);
        }
        entries.insert(
            key.to_string(),
            (owner.as_bytes().to_vec(), Some(Instant::now() + ttl)),
        );
        Ok(true)
    }

    async fn unlock(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if MemoryCertStore::live(&mut entries, key).is_some_and(|v| v == owner.as_bytes()) {
            entries.remove(key);
        }
        Ok(())
    }
}

static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});

/// The store every edge of a cluster shares, in the cluster's Redis.
pub struct RedisCertStore {
    connection: RedisConnection,
}

impl RedisCertStore {
    pub fn new(connection: RedisConnection) -> RedisCertStore {
        RedisCertStore { connection }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(OPERATION_TIMEOUT, cmd.query_async(&mut connection)).await {
            Ok(result) => result.map_err(|e| StoreError(format!("Redis: {e}"))),
            Err(_) => Err(StoreError(format!(
                "Redis did not answer within {OPERATION_TIMEOUT:?}"
            ))),
        }
    }
}

#[async_trait]
impl CertStore for RedisCertStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.query(redis::Cmd::get(key)).await
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl.as_millis().max(1).to_string());
        }
        self.query::<()>(cmd).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.query::<()>(redis::Cmd::del(key)).await
    }

    async fn lock(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1).to_string());
        let reply: Option<String> = self.query(cmd).await?;
        Ok(reply.is_some())
    }

    async fn unlock(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let mut invocation = UNLOCK.key(key);
        invocation.arg(owner);
        match tokio::time::timeout(
            OPERATION_TIMEOUT,
            invocation.invoke_async::<i64>(&mut connection),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(StoreError(format!("Redis: {e}"))),
            Err(_) => Err(StoreError("Redis did not answer in time".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_locks_are_exclusive_until_released_or_expired() {
        let store = MemoryCertStore::new();
        let ttl = Duration::from_secs(60);
        assert!(store.lock("l", "a", ttl).await.expect("lock"));
        assert!(!store.lock("l", "b", ttl).await.expect("lock"));
        store.unlock("l", "b").await.expect("unlock");
        assert!(!store.lock("l", "b", ttl).await.expect("lock"));
        store.unlock("l", "a").await.expect("unlock");
        assert!(
            store
                .lock("l", "b", Duration::from_millis(1))
                .await
                .expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            store
                .lock("l", "c", ttl)
                .await
                .expect("expired lock is free")
        );
    }
}
