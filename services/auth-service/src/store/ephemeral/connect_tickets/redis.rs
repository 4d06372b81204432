//! Connect tickets in Redis: `<prefix>:connect:<sha256 hex>`, JSON; the browser is bound by a
//! Lua compare-and-set that keeps the key's TTL.

use super::{ConnectTicket, ConnectTickets};
use crate::domain::token::hex;
use crate::error::StoreError;
use crate::store::ephemeral::redis_kv::RedisKv;

pub struct RedisConnectTickets {
    kv: RedisKv,
}

impl RedisConnectTickets {
    pub(crate) fn new(kv: RedisKv) -> Self {
        Self { kv }
    }

    fn key(&self, ticket_sha256: &[u8]) -> String {
        self.kv.key("connect", &hex(ticket_sha256))
    }
}

#[async_trait::async_trait]
impl ConnectTickets for RedisConnectTickets {
    async fn put(
        &self,
        ticket_sha256: &[u8],
        t: &ConnectTicket,
        ttl: u64,
    ) -> Result<(), StoreError> {
        self.kv.put_json(&self.key(ticket_sha256), t, ttl).await
    }

    async fn get(&self, ticket_sha256: &[u8]) -> Result<Option<ConnectTicket>, StoreError> {
        self.kv.get_json(&self.key(ticket_sha256)).await
    }

    async fn bind_browser(
        &self,
        ticket_sha256: &[u8],
        browser_sha256: &str,
    ) -> Result<bool, StoreError> {
        let script = redis::Script::new(
            r"local raw = redis.call('GET', KEYS[1])
              if not raw then return 0 end
              local t = cjson.decode(raw)
              if t.browser_sha256 ~= nil and t.browser_sha256 ~= cjson.null then
                return (t.browser_sha256 == ARGV[1]) and 1 or 0
              end
              t.browser_sha256 = ARGV[1]
              redis.call('SET', KEYS[1], cjson.encode(t), 'KEEPTTL')
              return 1",
        );
        let mut c = self.kv.conn().await?;
        let n: i64 = script
            .key(self.key(ticket_sha256))
            .arg(browser_sha256)
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    async fn take(&self, ticket_sha256: &[u8]) -> Result<Option<ConnectTicket>, StoreError> {
        self.kv.take_json(&self.key(ticket_sha256)).await
    }
}
