//! Rate-limit counters in Redis: `<prefix>:rl:<bucket>:<subject>:<window>`, `INCR`/`DECR` with
//! `EXPIRE` in one transaction.

use redis::AsyncCommands;

use super::RateLimitCounters;
use crate::error::StoreError;
use crate::store::ephemeral::redis_kv::RedisKv;

pub struct RedisRateLimitCounters {
    kv: RedisKv,
}

impl RedisRateLimitCounters {
    pub(crate) fn new(kv: RedisKv) -> Self {
        Self { kv }
    }

    fn key(&self, bucket: &str, subject: &str, window: u64) -> String {
        format!("{}:rl:{bucket}:{subject}:{window}", self.kv.prefix())
    }
}

#[async_trait::async_trait]
impl RateLimitCounters for RedisRateLimitCounters {
    async fn count(
        &self,
        bucket: &str,
        subject: &str,
        window: u64,
        window_secs: u64,
    ) -> Result<u64, StoreError> {
        let key = self.key(bucket, subject, window);
        let mut c = self.kv.conn().await?;
        let (n,): (u64,) = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .expire(&key, window_secs as i64 + 1)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(n)
    }

    async fn uncount(
        &self,
        bucket: &str,
        subject: &str,
        window: u64,
        window_secs: u64,
    ) -> Result<(), StoreError> {
        let key = self.key(bucket, subject, window);
        let mut c = self.kv.conn().await?;
        let _: () = redis::pipe()
            .atomic()
            .decr(&key, 1)
            .ignore()
            .expire(&key, window_secs as i64 + 1)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    async fn requests_counted(
        &self,
        bucket: &str,
        subject: &str,
        window: u64,
    ) -> Result<u64, StoreError> {
        let key = self.key(bucket, subject, window);
        let mut c = self.kv.conn().await?;
        let n: Option<u64> = c.get(&key).await?;
        Ok(n.unwrap_or(0))
    }

    async fn add(
        &self,
        items: &[(&str, &str, u64, u64)],
        window_secs: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let mut pipe = redis::pipe();
        for (bucket, subject, window, n) in items {
            let key = self.key(bucket, subject, *window);
            pipe.incr(&key, *n)
                .expire(&key, window_secs as i64 + 1)
                .ignore();
        }
        let mut c = self.kv.conn().await?;
        Ok(pipe.query_async(&mut c).await?)
    }
}
