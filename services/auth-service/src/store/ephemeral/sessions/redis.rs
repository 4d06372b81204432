//! Browser sessions in Redis: `<prefix>:session:<sha256 hex>` holds the user id, and the set
//! `<prefix>:user_sessions:<user id>` the user's session hashes.

use redis::AsyncCommands;
use uuid::Uuid;

use super::BrowserSessions;
use crate::domain::token::hex;
use crate::error::StoreError;
use crate::store::ephemeral::redis_kv::RedisKv;

pub struct RedisBrowserSessions {
    kv: RedisKv,
}

impl RedisBrowserSessions {
    pub(crate) fn new(kv: RedisKv) -> Self {
        Self { kv }
    }
}

#[async_trait::async_trait]
impl BrowserSessions for RedisBrowserSessions {
    async fn put(&self, session_sha256: &[u8], user_id: Uuid, ttl: u64) -> Result<(), StoreError> {
        let mut c = self.kv.conn().await?;
        let id = hex(session_sha256);
        // The user's set of sessions lets `admin revoke-user` end them all; it lives as long as
        // the newest session.
        let index = self.kv.key("user_sessions", &user_id.to_string());
        let _: () = redis::pipe()
            .atomic()
            .set_ex(self.kv.key("session", &id), user_id.to_string(), ttl)
            .sadd(&index, &id)
            .expire(&index, ttl as i64)
            .query_async(&mut *c)
            .await?;
        Ok(())
    }

    async fn get(&self, session_sha256: &[u8]) -> Result<Option<Uuid>, StoreError> {
        let mut c = self.kv.conn().await?;
        let raw: Option<String> = c.get(self.kv.key("session", &hex(session_sha256))).await?;
        Ok(raw.and_then(|r| Uuid::parse_str(&r).ok()))
    }

    async fn delete(&self, session_sha256: &[u8]) -> Result<bool, StoreError> {
        let mut c = self.kv.conn().await?;
        let n: u64 = c.del(self.kv.key("session", &hex(session_sha256))).await?;
        Ok(n > 0)
    }

    async fn delete_user(&self, user_id: Uuid) -> Result<u64, StoreError> {
        let mut c = self.kv.conn().await?;
        let index = self.kv.key("user_sessions", &user_id.to_string());
        // One script: a session stored meanwhile is either in the set read here or in a new set.
        let n: u64 = redis::Script::new(
            "local ids = redis.call('SMEMBERS', KEYS[1]) \
             redis.call('DEL', KEYS[1]) \
             local n = 0 \
             for _, id in ipairs(ids) do n = n + redis.call('DEL', ARGV[1] .. id) end \
             return n",
        )
        .key(&index)
        .arg(self.kv.key("session", ""))
        .invoke_async(&mut *c)
        .await?;
        Ok(n)
    }
}
