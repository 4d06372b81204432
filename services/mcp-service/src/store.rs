//! What mcp-service keeps outside its own memory, behind narrow interfaces so that the same
//! service runs on the production backends (Redis, shared by every replica) or on the embedded
//! ones (in-process memory; the single-process mode of issue 14):
//! - [`sessions::SessionRecords`]: the MCP session records (state, owner, idle expiry);
//! - the event bus ([`mcpauth_runtime::bus::EventBus`]): the cluster session channel, and the
//!   revocation and connection events this service follows.
//!
//! Everything else mcp-service holds is a per-replica cache fed by that bus.

pub mod sessions;

use std::sync::Arc;

use mcpauth_runtime::bus::{EventBus, RedisBus};

use self::sessions::SessionRecords;
use crate::config::Config;

/// Every store of a running mcp-service. Cheap to clone.
#[derive(Clone)]
pub struct Stores {
    pub sessions: Arc<dyn SessionRecords>,
    pub bus: Arc<dyn EventBus>,
    /// The production Redis pool (for the pool gauges); `None` on the embedded backends.
    pub redis: Option<deadpool_redis::Pool>,
    /// What `/readyz` calls the backend it checks: `"redis"` or `"memory"`.
    pub backend: &'static str,
}

impl Stores {
    /// The production backends: the configured Redis for session records and events (what
    /// `app::start` has always connected to).
    pub async fn production(config: &Config) -> anyhow::Result<Self> {
        let (client, pool) = mcpauth_runtime::start_redis(
            "redis",
            config.redis.url.expose(),
            config.redis.tls.as_ref(),
            config.redis.pool_size,
        )
        .await?;
        Ok(Self {
            sessions: Arc::new(sessions::redis::RedisSessions::new(
                pool.clone(),
                &config.redis.key_prefix,
            )),
            bus: Arc::new(RedisBus::new(client, pool.clone())),
            redis: Some(pool),
            backend: "redis",
        })
    }

    /// The embedded backends: session records in this process's memory, events on `bus` (one
    /// `MemoryBus` shared with the other services of the process).
    ///
    /// No data directory: a session could be restored after a restart from a durable record
    /// (as a replica restores one from Redis), but MCP sessions are short-lived (idle expiry),
    /// and clients answer a 404 for their session id by initializing a new session, as the
    /// transport prescribes and as they do when a production Redis loses its keys. A restart of
    /// the single process costs each client one `initialize`.
    pub fn embedded(bus: Arc<dyn EventBus>) -> Self {
        Self {
            sessions: Arc::new(sessions::memory::MemorySessions::default()),
            bus,
            redis: None,
            backend: "memory",
        }
    }
}
