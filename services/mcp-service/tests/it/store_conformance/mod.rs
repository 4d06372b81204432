//! Conformance of mcp-service's stores: one suite per interface, written once against a
//! [`Backend`] and run on each (Redis: the shared Redis under a prefix of the test's own, or a
//! private redis-server where the test must break the connection; memory: the embedded stores).
//! The same assertions hold for both, so the embedded mode behaves as production does.
//!
//! "Replicas" are the stores one mcp-service replica would get: on Redis each has its own pool
//! and subscriptions to the same Redis; in memory they share the process's stores, as the
//! services of the single process do.

mod events;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use mcp_service::store::Stores;
use mcp_service::store::sessions::redis::RedisSessions;
use mcpauth_runtime::bus::{EventBus, MemoryBus, RedisBus};

use crate::faults::private_backends::PrivateRedis;

/// Bound on waiting for something that must happen (a hang guard, not a latency threshold).
pub const PATIENCE: Duration = Duration::from_secs(30);

#[async_trait::async_trait]
pub trait Backend: Send + Sync + Sized + 'static {
    /// Backend on which the test does not break anything (shared Redis).
    async fn start() -> Self;
    /// Backend that [`Backend::disrupt`] may break (a private redis-server).
    async fn start_disruptable() -> Self;
    /// The stores of one more replica.
    fn replica(&self) -> Stores;
    /// This test's key prefix (channel names start with it).
    fn prefix(&self) -> &str;
    /// Makes every follower of `channel` miss messages and be told: Redis crashes and comes
    /// back; the memory bus is flooded with `filler` past its capacity while no follower runs
    /// (the test runtime has one thread, and publishing to memory never yields).
    async fn disrupt(&mut self, channel: &str, filler: &str);
}

fn unique_prefix(kind: &str) -> String {
    format!("mcp-conformance-{kind}-{}", uuid::Uuid::new_v4().simple())
}

pub struct RedisBackend {
    url: String,
    prefix: String,
    private: Option<PrivateRedis>,
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    async fn start() -> Self {
        Self {
            url: std::env::var("TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            prefix: unique_prefix("redis"),
            private: None,
        }
    }

    async fn start_disruptable() -> Self {
        let private = PrivateRedis::start("store-conformance");
        Self {
            url: private.url(),
            prefix: unique_prefix("redis"),
            private: Some(private),
        }
    }

    fn replica(&self) -> Stores {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let pool = deadpool_redis::Config::from_url(&self.url)
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .unwrap();
        Stores {
            sessions: Arc::new(RedisSessions::new(pool.clone(), &self.prefix)),
            bus: Arc::new(RedisBus::new(client, pool.clone())),
            redis: Some(pool),
            backend: "redis",
        }
    }

    fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn disrupt(&mut self, _channel: &str, _filler: &str) {
        let private = self
            .private
            .as_mut()
            .expect("disrupt needs Backend::start_disruptable");
        private.crash();
        private.start_again();
    }
}

pub struct MemoryBackend {
    bus: MemoryBus,
    stores: Stores,
    prefix: String,
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    async fn start() -> Self {
        let bus = MemoryBus::new();
        Self {
            stores: Stores::embedded(Arc::new(bus.clone())),
            bus,
            prefix: unique_prefix("memory"),
        }
    }

    async fn start_disruptable() -> Self {
        Self::start().await
    }

    fn replica(&self) -> Stores {
        self.stores.clone()
    }

    fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn disrupt(&mut self, channel: &str, filler: &str) {
        // More than the bus holds (1024 per channel), without yielding.
        for _ in 0..2_000 {
            self.bus.publish(channel, filler).await.unwrap();
        }
    }
}

/// Waits (polling) until `done()`; panics with `what` after [`PATIENCE`].
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Instantiates each listed suite function (`async fn(B: Backend)`) for both backends:
/// `plain` ones on [`Backend::start`], `disrupted` ones on [`Backend::start_disruptable`].
macro_rules! conformance {
    (plain: [$($plain:ident),* $(,)?], disrupted: [$($disrupted:ident),* $(,)?]) => {
        mod redis {
            $(
                #[tokio::test]
                async fn $plain() {
                    super::$plain(<crate::store_conformance::RedisBackend as crate::store_conformance::Backend>::start().await).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $disrupted() {
                    super::$disrupted(<crate::store_conformance::RedisBackend as crate::store_conformance::Backend>::start_disruptable().await).await;
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test]
                async fn $plain() {
                    super::$plain(<crate::store_conformance::MemoryBackend as crate::store_conformance::Backend>::start().await).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $disrupted() {
                    super::$disrupted(<crate::store_conformance::MemoryBackend as crate::store_conformance::Backend>::start_disruptable().await).await;
                }
            )*
        }
    };
}
pub(crate) use conformance;
