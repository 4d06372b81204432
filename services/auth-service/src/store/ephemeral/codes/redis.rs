//! Authorization codes in Redis: the code at `<prefix>:code:<sha256 hex>` (taken with `GETDEL`),
//! then `<prefix>:code_used:<…>` (empty until the grant is known, then its id) and
//! `<prefix>:code_replayed:<…>` for a replay seen before the grant was known.

use redis::AsyncCommands;
use uuid::Uuid;

use super::{AuthorizationCodes, CodeRecord, CodeRedemption, USED_CODE_TTL_SECS};
use crate::domain::token::hex;
use crate::error::StoreError;
use crate::store::ephemeral::redis_kv::RedisKv;

pub struct RedisAuthorizationCodes {
    kv: RedisKv,
}

impl RedisAuthorizationCodes {
    pub(crate) fn new(kv: RedisKv) -> Self {
        Self { kv }
    }
}

#[async_trait::async_trait]
impl AuthorizationCodes for RedisAuthorizationCodes {
    async fn put(&self, code_sha256: &[u8], rec: &CodeRecord, ttl: u64) -> Result<(), StoreError> {
        self.kv
            .put_json(&self.kv.key("code", &hex(code_sha256)), rec, ttl)
            .await
    }

    async fn redeem(&self, code_sha256: &[u8]) -> Result<CodeRedemption, StoreError> {
        let h = hex(code_sha256);
        let mut c = self.kv.conn().await?;
        let raw: Option<String> = c.get_del(self.kv.key("code", &h)).await?;
        if let Some(raw) = raw {
            let rec = serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            // Mark as used before anything is issued, so a racing replay sees it.
            let _: () = c
                .set_ex(self.kv.key("code_used", &h), "", USED_CODE_TTL_SECS)
                .await?;
            return Ok(CodeRedemption::Fresh(rec));
        }
        let used_key = self.kv.key("code_used", &h);
        let used: Option<String> = c.get(&used_key).await?;
        match used.as_deref() {
            None => Ok(CodeRedemption::Unknown),
            Some("") => {
                // The first redemption has not recorded its grant yet. Flag the replay, then look
                // again: either we now see the grant, or the first redemption sees the flag.
                let _: () = c
                    .set_ex(self.kv.key("code_replayed", &h), "1", USED_CODE_TTL_SECS)
                    .await?;
                let again: Option<String> = c.get(&used_key).await?;
                Ok(CodeRedemption::Replayed(
                    again.and_then(|g| Uuid::parse_str(&g).ok()),
                ))
            }
            Some(g) => Ok(CodeRedemption::Replayed(Uuid::parse_str(g).ok())),
        }
    }

    async fn bind_grant(&self, code_sha256: &[u8], grant_id: Uuid) -> Result<bool, StoreError> {
        let h = hex(code_sha256);
        let mut c = self.kv.conn().await?;
        let _: () = c
            .set_ex(
                self.kv.key("code_used", &h),
                grant_id.to_string(),
                USED_CODE_TTL_SECS,
            )
            .await?;
        let replayed: Option<String> = c.get(self.kv.key("code_replayed", &h)).await?;
        Ok(replayed.is_some())
    }
}
