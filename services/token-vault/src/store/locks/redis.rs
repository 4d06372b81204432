//! The refresh lock shared by every replica: `SET key owner NX PX ttl` with a random owner
//! value, renewed while held (compare-and-`PEXPIRE`), released by compare-and-delete. A replica
//! that dies while holding it blocks others for at most one TTL.

use std::time::Duration;

use deadpool_redis::Pool;
use ring::rand::{SecureRandom, SystemRandom};

use super::{HeldLock, LockError, RefreshLocks};
use crate::crypto::{hex, sha256};

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0";

/// Refresh locks in Redis, under `<prefix>:refresh-lock:`.
#[derive(Clone)]
pub struct RedisLocks {
    pool: Pool,
    prefix: String,
}

/// A held Redis lock. Renewed in the background until released (or dropped, after which it
/// expires within one TTL).
pub struct RedisHeldLock {
    pool: Pool,
    key: String,
    owner: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl RedisLocks {
    pub fn new(pool: Pool, prefix: &str) -> Self {
        Self {
            pool,
            prefix: prefix.to_owned(),
        }
    }

    /// The lock key of a record; the user id is hashed so that it never appears in Redis.
    pub fn key(&self, user_id: &str, provider: &str) -> String {
        let id = sha256(&format!("{}:{user_id}:{provider}", user_id.len()));
        format!("{}:refresh-lock:{}", self.prefix, hex(&id[..16]))
    }
}

#[async_trait::async_trait]
impl RefreshLocks for RedisLocks {
    async fn try_acquire(
        &self,
        user_id: &str,
        provider: &str,
        ttl: Duration,
    ) -> Result<Option<Box<dyn HeldLock>>, LockError> {
        let key = self.key(user_id, provider);
        let mut owner = [0u8; 16];
        SystemRandom::new()
            .fill(&mut owner)
            .expect("system randomness");
        let owner = hex(&owner);
        let ttl_ms = ttl.as_millis() as u64;
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| LockError(e.to_string()))?;
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut conn)
            .await
            .map_err(|e| LockError(e.to_string()))?;
        if set.is_none() {
            return Ok(None);
        }
        let renewer = {
            let (pool, key, owner) = (self.pool.clone(), key.clone(), owner.clone());
            let every = ttl / 3;
            tokio::spawn(async move {
                let script = redis::Script::new(RENEW);
                loop {
                    tokio::time::sleep(every).await;
                    let Ok(mut c) = pool.get().await else {
                        continue;
                    };
                    let renewed: redis::RedisResult<i64> = script
                        .key(&key)
                        .arg(&owner)
                        .arg(ttl_ms)
                        .invoke_async(&mut c)
                        .await;
                    if matches!(renewed, Ok(0)) {
                        tracing::warn!("refresh lock lost before the refresh finished");
                        return;
                    }
                }
            })
        };
        Ok(Some(Box::new(RedisHeldLock {
            pool: self.pool.clone(),
            key,
            owner,
            renewer,
        })))
    }

    async fn ping(&self) -> Result<(), LockError> {
        let mut c = self
            .pool
            .get()
            .await
            .map_err(|e| LockError(e.to_string()))?;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(|_| ())
            .map_err(|e| LockError(e.to_string()))
    }
}

#[async_trait::async_trait]
impl HeldLock for RedisHeldLock {
    async fn release(self: Box<Self>) {
        self.renewer.abort();
        let Ok(mut c) = self.pool.get().await else {
            return;
        };
        let released: redis::RedisResult<i64> = redis::Script::new(RELEASE)
            .key(&self.key)
            .arg(&self.owner)
            .invoke_async(&mut c)
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "refresh lock release failed; it expires by itself");
        }
    }
}

impl Drop for RedisHeldLock {
    fn drop(&mut self) {
        // A holder that is dropped without `release` (a cancelled request) stops renewing; the
        // lock then expires within one TTL.
        self.renewer.abort();
    }
}
