//! Short-lived state: pending authorization requests, upstream login states, connect links,
//! authorization codes, device authorizations, browser sessions, rate-limit windows, and the events replicas use to tell
//! each other about revocations and client changes.
//!
//! Each kind of state is its own small interface (one module each), because each has its own
//! lifetime and its own atomicity rule (a code is redeemed once, a connect link is bound to the
//! first browser, a user's sessions end together). Production keeps them in Redis, shared by
//! every replica; the embedded single-process mode keeps them in memory, with the same TTLs and
//! the same single-use guarantees. [`Ephemeral`] holds one of each.
//!
//! Keys in Redis are namespaced with the configured prefix; codes, sessions, tickets and upstream
//! states are keyed by the SHA-256 of their value, never the value itself.

pub mod codes;
pub mod connect_tickets;
pub mod device_codes;
pub mod events;
pub mod pending;
pub mod rate_limits;
mod redis_kv;
pub mod sessions;
mod ttl_table;
pub mod upstream_states;

use std::sync::Arc;

use deadpool_redis::Pool;
use mcpauth_runtime::bus::EventBus;

use crate::error::StoreError;

pub use codes::{AuthorizationCodes, CodeRecord, CodeRedemption};
pub use connect_tickets::{ConnectTicket, ConnectTickets};
pub use device_codes::{DeviceAuthorization, DeviceCodes, DeviceDecision, DevicePoll};
pub use events::{ReplicaEvent, ReplicaEvents};
pub use pending::{PendingAuthorization, PendingAuthorizations};
pub use rate_limits::RateLimitCounters;
pub use sessions::BrowserSessions;
pub use upstream_states::{UpstreamAuthState, UpstreamPurpose, UpstreamStates};

/// The short-lived state of auth-service, one interface per kind. Cheap to clone.
#[derive(Clone)]
pub struct Ephemeral {
    /// `/authorize` requests waiting for login and consent.
    pub pending: Arc<dyn PendingAuthorizations>,
    /// Redirects to an upstream provider waiting for its callback.
    pub upstream_states: Arc<dyn UpstreamStates>,
    /// Connect links issued by `UpstreamConnect.StartConnect`.
    pub connect_tickets: Arc<dyn ConnectTickets>,
    /// Authorization codes, redeemed once, and the grant each produced.
    pub codes: Arc<dyn AuthorizationCodes>,
    /// RFC 8628 device authorizations: pending, decided, polled.
    pub device_codes: Arc<dyn DeviceCodes>,
    /// Browser sessions (the login cookie).
    pub sessions: Arc<dyn BrowserSessions>,
    /// Fixed-window rate-limit counts shared by every replica.
    pub rate_limits: Arc<dyn RateLimitCounters>,
    /// Revocations and client changes fanned out to every replica and verification cache.
    pub events: ReplicaEvents,
    /// The Redis pool behind all of the above, when they are in Redis (readiness and gauges).
    redis: Option<Pool>,
}

impl Ephemeral {
    /// Everything in the Redis of `pool`, under `prefix`; events on `bus` (a
    /// [`mcpauth_runtime::bus::RedisBus`] over the same Redis in production).
    pub fn redis(pool: Pool, prefix: &str, bus: Arc<dyn EventBus>) -> Self {
        let kv = redis_kv::RedisKv::new(pool.clone(), prefix);
        Self {
            pending: Arc::new(pending::redis::RedisPendingAuthorizations::new(kv.clone())),
            upstream_states: Arc::new(upstream_states::redis::RedisUpstreamStates::new(kv.clone())),
            connect_tickets: Arc::new(connect_tickets::redis::RedisConnectTickets::new(kv.clone())),
            codes: Arc::new(codes::redis::RedisAuthorizationCodes::new(kv.clone())),
            device_codes: Arc::new(device_codes::redis::RedisDeviceCodes::new(kv.clone())),
            sessions: Arc::new(sessions::redis::RedisBrowserSessions::new(kv.clone())),
            rate_limits: Arc::new(rate_limits::redis::RedisRateLimitCounters::new(kv)),
            events: ReplicaEvents::new(bus, prefix),
            redis: Some(pool),
        }
    }

    /// Everything in this process's memory (the embedded single-process mode: one replica by
    /// construction). Events go on `bus` (the process's [`mcpauth_runtime::bus::MemoryBus`])
    /// on the channel `<prefix>:events`, which the other services of the process follow.
    pub fn memory(bus: Arc<dyn EventBus>, prefix: &str) -> Self {
        Self {
            pending: Arc::new(pending::memory::MemoryPendingAuthorizations::default()),
            upstream_states: Arc::new(upstream_states::memory::MemoryUpstreamStates::default()),
            connect_tickets: Arc::new(connect_tickets::memory::MemoryConnectTickets::default()),
            codes: Arc::new(codes::memory::MemoryAuthorizationCodes::default()),
            device_codes: Arc::new(device_codes::memory::MemoryDeviceCodes::default()),
            sessions: Arc::new(sessions::memory::MemoryBrowserSessions::default()),
            rate_limits: Arc::new(rate_limits::memory::MemoryRateLimitCounters::default()),
            events: ReplicaEvents::new(bus, prefix),
            redis: None,
        }
    }

    /// The Redis connection pool (for its gauges), when the state is in Redis.
    pub fn pool(&self) -> Option<&Pool> {
        self.redis.as_ref()
    }

    /// Whether the store answers (readiness): a Redis `PING`; memory always answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let Some(pool) = &self.redis else {
            return Ok(());
        };
        let mut c = pool.get().await?;
        let _: String = ::redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }
}
