//! One conformance suite per interface of auth-service's short-lived state
//! (`auth_service::store::ephemeral`), written once and run against each backend: Redis (the
//! shared test Redis, a fresh key prefix per test) and memory (the embedded single-process
//! mode). Each test file defines its tests as async functions of a [`Backend`]; the
//! [`conformance!`] macro instantiates every one of them for both.

mod codes;
mod connect_tickets;
mod device_codes;
mod events;
mod pending;
mod rate_limits;
mod sessions;
mod upstream_states;

use std::sync::Arc;

use auth_service::store::ephemeral::Ephemeral;
use mcpauth_runtime::bus::{EventBus, MemoryBus, RedisBus};

/// One backend under test.
pub struct Backend {
    /// The bus events go on.
    pub bus: Arc<dyn EventBus>,
    /// The backend with its short-lived state on `bus`; called once per test (two memory
    /// stores share nothing).
    make: Box<dyn Fn(Arc<dyn EventBus>) -> Ephemeral + Send + Sync>,
}

impl Backend {
    /// The state of this backend.
    pub fn ephemeral(&self) -> Ephemeral {
        (self.make)(self.bus.clone())
    }

    /// The state of this backend with its events on `bus` instead.
    pub fn with_bus(&self, bus: Arc<dyn EventBus>) -> Ephemeral {
        (self.make)(bus)
    }
}

fn prefix() -> String {
    format!("eph-conformance-{}", uuid::Uuid::new_v4().simple())
}

/// The shared test Redis, under a fresh key prefix.
pub fn redis() -> Backend {
    let client = redis::Client::open(crate::harness::redis_url()).unwrap();
    // More connections than a test runs commands at once would only queue them.
    let pool = mcpauth_runtime::redis_pool("redis", &client, 16).unwrap();
    let prefix = prefix();
    Backend {
        bus: Arc::new(RedisBus::new(client, pool.clone())),
        make: Box::new(move |bus| Ephemeral::redis(pool.clone(), &prefix, bus)),
    }
}

/// This process's memory, with a bus of its own.
pub fn memory() -> Backend {
    let prefix = prefix();
    Backend {
        bus: Arc::new(MemoryBus::new()),
        make: Box::new(move |bus| Ephemeral::memory(bus, &prefix)),
    }
}

/// A bus that publishes through the backend's, or, while `failing`, through a Redis nobody
/// listens on (a real failed publish, as when Redis is down).
pub struct SwitchableBus {
    inner: Arc<dyn EventBus>,
    unreachable: RedisBus,
    failing: std::sync::atomic::AtomicBool,
}

impl SwitchableBus {
    pub fn new(inner: Arc<dyn EventBus>) -> Arc<Self> {
        // Nothing listens on port 1.
        let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
        let pool = mcpauth_runtime::redis_pool("redis", &client, 1).unwrap();
        Arc::new(Self {
            inner,
            unreachable: RedisBus::new(client, pool),
            failing: Default::default(),
        })
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl EventBus for SwitchableBus {
    async fn publish(
        &self,
        channel: &str,
        payload: &str,
    ) -> Result<(), mcpauth_runtime::bus::BusError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            self.unreachable.publish(channel, payload).await
        } else {
            self.inner.publish(channel, payload).await
        }
    }

    fn subscribe(
        &self,
        channel: &str,
        what: &'static str,
    ) -> futures_util::stream::BoxStream<'static, mcpauth_runtime::bus::ChannelEvent> {
        self.inner.subscribe(channel, what)
    }
}

/// Sha-256-sized random bytes: the key of a code, ticket, state or session.
pub fn random_key() -> Vec<u8> {
    let mut k = uuid::Uuid::new_v4().as_bytes().to_vec();
    k.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    k
}

/// Waits out a TTL of `secs` seconds (Redis TTLs are whole seconds).
pub async fn outlive(secs: u64) {
    tokio::time::sleep(std::time::Duration::from_millis(secs * 1000 + 500)).await;
}

/// Instantiates the listed tests (async functions of a [`Backend`] in the calling module) once
/// for Redis and once for memory.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::ephemeral_conformance::redis()).await;
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::ephemeral_conformance::memory()).await;
                }
            )*
        }
    };
}
pub(crate) use conformance;
