//! Pending authorizations in Redis: `<prefix>:authz:<id>`, JSON, `SET EX`.

use super::{PendingAuthorization, PendingAuthorizations};
use crate::error::StoreError;
use crate::store::ephemeral::redis_kv::RedisKv;

pub struct RedisPendingAuthorizations {
    kv: RedisKv,
}

impl RedisPendingAuthorizations {
    pub(crate) fn new(kv: RedisKv) -> Self {
        Self { kv }
    }
}

#[async_trait::async_trait]
impl PendingAuthorizations for RedisPendingAuthorizations {
    async fn put(&self, id: &str, p: &PendingAuthorization, ttl: u64) -> Result<(), StoreError> {
        self.kv.put_json(&self.kv.key("authz", id), p, ttl).await
    }

    async fn get(&self, id: &str) -> Result<Option<PendingAuthorization>, StoreError> {
        self.kv.get_json(&self.kv.key("authz", id)).await
    }

    async fn take(&self, id: &str) -> Result<Option<PendingAuthorization>, StoreError> {
        self.kv.take_json(&self.kv.key("authz", id)).await
    }
}
