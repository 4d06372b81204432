//! What the Redis implementations share: the pool, the key prefix, and JSON values with a TTL.

use deadpool_redis::Pool;
use redis::AsyncCommands;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;

/// One Redis, one key prefix.
#[derive(Clone)]
pub(crate) struct RedisKv {
    pool: Pool,
    prefix: String,
}

impl RedisKv {
    pub(crate) fn new(pool: Pool, prefix: &str) -> Self {
        Self {
            pool,
            prefix: prefix.to_owned(),
        }
    }

    /// `<prefix>:<kind>:<id>`.
    pub(crate) fn key(&self, kind: &str, id: &str) -> String {
        format!("{}:{kind}:{id}", self.prefix)
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) async fn conn(&self) -> Result<deadpool_redis::Connection, StoreError> {
        Ok(self.pool.get().await?)
    }

    pub(crate) async fn put_json<T: Serialize + Sync>(
        &self,
        key: &str,
        value: &T,
        ttl: u64,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut c = self.conn().await?;
        let _: () = c.set_ex(key, body, ttl).await?;
        Ok(())
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let mut c = self.conn().await?;
        let raw: Option<String> = c.get(key).await?;
        decode(raw)
    }

    /// GETDEL: the value is returned to one caller only.
    pub(crate) async fn take_json<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let mut c = self.conn().await?;
        let raw: Option<String> = c.get_del(key).await?;
        decode(raw)
    }
}

pub(crate) fn decode<T: DeserializeOwned>(raw: Option<String>) -> Result<Option<T>, StoreError> {
    raw.map(|r| serde_json::from_str(&r).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}
