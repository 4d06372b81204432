//! Upstream states in Redis: `<prefix>:upstate:<sha256 hex>`, JSON, taken with `GETDEL`.

use super::{UpstreamAuthState, UpstreamStates};
use crate::domain::token::hex;
use crate::error::StoreError;
use crate::store::ephemeral::redis_kv::RedisKv;

pub struct RedisUpstreamStates {
    kv: RedisKv,
}

impl RedisUpstreamStates {
    pub(crate) fn new(kv: RedisKv) -> Self {
        Self { kv }
    }
}

#[async_trait::async_trait]
impl UpstreamStates for RedisUpstreamStates {
    async fn put(
        &self,
        state_sha256: &[u8],
        s: &UpstreamAuthState,
        ttl: u64,
    ) -> Result<(), StoreError> {
        self.kv
            .put_json(&self.kv.key("upstate", &hex(state_sha256)), s, ttl)
            .await
    }

    async fn take(&self, state_sha256: &[u8]) -> Result<Option<UpstreamAuthState>, StoreError> {
        self.kv
            .take_json(&self.kv.key("upstate", &hex(state_sha256)))
            .await
    }
}
