//! Session records in Redis, shared by every replica (prefix = `redis.key_prefix`):
//! `{prefix}:session:{id}` is a hash with `state` (rmcp `SessionState` JSON: the `initialize`
//! parameters) and `owner` (the subject), expiring after the idle timeout without use.

use std::time::Duration;

use super::{SessionRecords, StoreError, idle_secs};

pub struct RedisSessions {
    redis: deadpool_redis::Pool,
    prefix: String,
}

impl RedisSessions {
    pub fn new(redis: deadpool_redis::Pool, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, session: &str) -> String {
        format!("{}:session:{session}", self.prefix)
    }
}

#[async_trait::async_trait]
impl SessionRecords for RedisSessions {
    async fn create(
        &self,
        id: &str,
        owner: &str,
        state: &str,
        idle: Duration,
    ) -> Result<(), StoreError> {
        let key = self.key(id);
        let mut c = self.redis.get().await?;
        let () = redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(&key)
            .arg("state")
            .arg(state)
            .arg("owner")
            .arg(owner)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(idle_secs(idle))
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    async fn load(
        &self,
        id: &str,
        subject: &str,
        idle: Duration,
    ) -> Result<Option<String>, StoreError> {
        let key = self.key(id);
        let mut c = self.redis.get().await?;
        let ((state, owner), _): ((Option<String>, Option<String>), i64) = redis::pipe()
            .cmd("HMGET")
            .arg(&key)
            .arg("state")
            .arg("owner")
            .cmd("EXPIRE")
            .arg(&key)
            .arg(idle_secs(idle))
            .query_async(&mut c)
            .await?;
        Ok(match (state, owner) {
            (Some(state), Some(owner)) if owner == subject => Some(state),
            _ => None,
        })
    }

    async fn owner(&self, id: &str, idle: Duration) -> Result<Option<String>, StoreError> {
        let key = self.key(id);
        let mut c = self.redis.get().await?;
        let (owner, _): (Option<String>, i64) = redis::pipe()
            .cmd("HGET")
            .arg(&key)
            .arg("owner")
            .cmd("EXPIRE")
            .arg(&key)
            .arg(idle_secs(idle))
            .query_async(&mut c)
            .await?;
        Ok(owner)
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let mut c = self.redis.get().await?;
        let _: i64 = redis::cmd("DEL")
            .arg(self.key(id))
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    async fn alive(&self, ids: &[(&str, bool)], idle: Duration) -> Result<Vec<bool>, StoreError> {
        let mut c = self.redis.get().await?;
        let mut pipe = redis::pipe();
        for (id, keep) in ids {
            if *keep {
                pipe.cmd("EXPIRE").arg(self.key(id)).arg(idle_secs(idle));
            } else {
                pipe.cmd("EXISTS").arg(self.key(id));
            }
        }
        let alive: Vec<i64> = pipe.query_async(&mut c).await?;
        Ok(alive.into_iter().map(|a| a != 0).collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.redis.get().await?;
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }
}
