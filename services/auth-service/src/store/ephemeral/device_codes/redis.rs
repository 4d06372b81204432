//! Device authorizations in Redis: a hash `<prefix>:device:<sha256 hex of the device code>`
//! (fields `auth` JSON, `client`, `status`, `expires_at`, `interval`, `last_poll`, and once
//! approved `user_id` and `auth_at`) and `<prefix>:device_user:<sha256 hex of the user code>`
//! holding the device code's hash. Polls and decisions are Lua scripts, so each is atomic on
//! one key whichever replica runs it.

use std::sync::LazyLock;

use redis::AsyncCommands;
use uuid::Uuid;

use super::{
    DeviceAuthorization, DeviceCodes, DeviceDecision, DevicePoll, POLL_TOLERANCE_MS,
    SLOW_DOWN_STEP_SECS, retention_secs,
};
use crate::domain::token::{hex, unhex};
use crate::error::StoreError;
use crate::store::ephemeral::redis_kv::RedisKv;

pub struct RedisDeviceCodes {
    kv: RedisKv,
}

impl RedisDeviceCodes {
    pub(crate) fn new(kv: RedisKv) -> Self {
        Self { kv }
    }

    fn device_key(&self, device_sha256: &[u8]) -> String {
        self.kv.key("device", &hex(device_sha256))
    }
}

/// KEYS[1] the record; ARGV: decision ("approved"/"denied"), user id, auth time, now (s).
static DECIDE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"local f = redis.call('HMGET', KEYS[1], 'status', 'expires_at')
          if f[1] ~= 'pending' then return 0 end
          if tonumber(ARGV[4]) >= tonumber(f[2]) then return 0 end
          redis.call('HSET', KEYS[1], 'status', ARGV[1], 'user_id', ARGV[2], 'auth_at', ARGV[3])
          return 1",
    )
});

/// KEYS[1] the record; ARGV: client id, now (ms), tolerance (ms), slow-down step (s).
static POLL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"local f = redis.call('HMGET', KEYS[1], 'client', 'status', 'expires_at', 'interval', 'last_poll')
          if not f[1] then return {'unknown'} end
          if f[1] ~= ARGV[1] then return {'wrong_client'} end
          if f[2] == 'redeemed' then return {'redeemed'} end
          local now = tonumber(ARGV[2])
          if now >= tonumber(f[3]) * 1000 then return {'expired'} end
          if f[2] == 'denied' then return {'denied'} end
          if f[2] == 'approved' then
            redis.call('HSET', KEYS[1], 'status', 'redeemed')
            local g = redis.call('HMGET', KEYS[1], 'auth', 'user_id', 'auth_at')
            return {'approved', g[1], g[2], g[3]}
          end
          local interval = tonumber(f[4])
          local last = tonumber(f[5])
          redis.call('HSET', KEYS[1], 'last_poll', ARGV[2])
          if last > 0 and now - last < interval * 1000 - tonumber(ARGV[3]) then
            interval = interval + tonumber(ARGV[4])
            redis.call('HSET', KEYS[1], 'interval', interval)
            return {'slow_down', tostring(interval)}
          end
          return {'pending', tostring(interval)}",
    )
});

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("device authorization: {what}"))
}

#[async_trait::async_trait]
impl DeviceCodes for RedisDeviceCodes {
    async fn put(
        &self,
        device_sha256: &[u8],
        user_sha256: &[u8],
        auth: &DeviceAuthorization,
        interval: u64,
    ) -> Result<bool, StoreError> {
        let now = chrono::Utc::now().timestamp();
        let body = serde_json::to_string(auth).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let user_key = self.kv.key("device_user", &hex(user_sha256));
        let key = self.device_key(device_sha256);
        let mut c = self.kv.conn().await?;
        // The user-code index first: a collision stores nothing.
        let taken: Option<String> = redis::cmd("SET")
            .arg(&user_key)
            .arg(hex(device_sha256))
            .arg("NX")
            .arg("EX")
            .arg((auth.expires_at - now).max(1))
            .query_async(&mut c)
            .await?;
        if taken.is_none() {
            return Ok(false);
        }
        let _: () = redis::pipe()
            .atomic()
            .hset_multiple(
                &key,
                &[
                    ("auth", body),
                    ("client", auth.client_id.clone()),
                    ("status", "pending".to_owned()),
                    ("expires_at", auth.expires_at.to_string()),
                    ("interval", interval.to_string()),
                    ("last_poll", "0".to_owned()),
                ],
            )
            .ignore()
            .expire(&key, retention_secs(auth, now) as i64)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(true)
    }

    async fn pending_by_user_code(
        &self,
        user_sha256: &[u8],
        now: i64,
    ) -> Result<Option<(Vec<u8>, DeviceAuthorization)>, StoreError> {
        let mut c = self.kv.conn().await?;
        let device: Option<String> = c.get(self.kv.key("device_user", &hex(user_sha256))).await?;
        let Some(device) = device.and_then(|d| unhex(&d)) else {
            return Ok(None);
        };
        let (status, auth): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.device_key(&device))
            .arg("status")
            .arg("auth")
            .query_async(&mut c)
            .await?;
        if status.as_deref() != Some("pending") {
            return Ok(None);
        }
        let auth: DeviceAuthorization = serde_json::from_str(&auth.ok_or_else(|| corrupt("auth"))?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok((now < auth.expires_at).then_some((device, auth)))
    }

    async fn decide(
        &self,
        device_sha256: &[u8],
        decision: DeviceDecision,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (status, user, at) = match decision {
            DeviceDecision::Approved {
                user_id,
                authenticated_at,
            } => ("approved", user_id.to_string(), authenticated_at),
            DeviceDecision::Denied => ("denied", String::new(), 0),
        };
        let mut c = self.kv.conn().await?;
        let n: i64 = DECIDE
            .key(self.device_key(device_sha256))
            .arg(status)
            .arg(user)
            .arg(at)
            .arg(now)
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    async fn poll(
        &self,
        device_sha256: &[u8],
        client_id: &str,
        now_ms: i64,
    ) -> Result<DevicePoll, StoreError> {
        let mut c = self.kv.conn().await?;
        let r: Vec<String> = POLL
            .key(self.device_key(device_sha256))
            .arg(client_id)
            .arg(now_ms)
            .arg(POLL_TOLERANCE_MS)
            .arg(SLOW_DOWN_STEP_SECS)
            .invoke_async(&mut c)
            .await?;
        let interval = |i: usize| -> Result<u64, StoreError> {
            r.get(i)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| corrupt("interval"))
        };
        Ok(match r.first().map(String::as_str) {
            Some("unknown") => DevicePoll::Unknown,
            Some("wrong_client") => DevicePoll::WrongClient,
            Some("redeemed") => DevicePoll::Redeemed,
            Some("expired") => DevicePoll::Expired,
            Some("denied") => DevicePoll::Denied,
            Some("pending") => DevicePoll::Pending {
                interval: interval(1)?,
            },
            Some("slow_down") => DevicePoll::SlowDown {
                interval: interval(1)?,
            },
            Some("approved") => {
                let auth = r.get(1).ok_or_else(|| corrupt("auth"))?;
                let auth =
                    serde_json::from_str(auth).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let user_id = r
                    .get(2)
                    .and_then(|u| Uuid::parse_str(u).ok())
                    .ok_or_else(|| corrupt("user_id"))?;
                let authenticated_at = r
                    .get(3)
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| corrupt("auth_at"))?;
                DevicePoll::Approved {
                    auth,
                    user_id,
                    authenticated_at,
                }
            }
            _ => return Err(corrupt("unexpected poll answer")),
        })
    }
}
