//! MCP session records: what any replica needs to re-create a session it never saw (rmcp's
//! stored `initialize` state), who it belongs to, and how long it lives unused. The live worker
//! and its event streams stay in the process that holds them ([`crate::sessions`]); closing
//! them everywhere goes through the event bus.
//!
//! Every read of a record is also a use: it pushes the idle expiry back by `idle`.

pub mod memory;
pub mod redis;

use std::time::Duration;

/// A session store that did not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("redis pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
}

#[async_trait::async_trait]
pub trait SessionRecords: Send + Sync + 'static {
    /// Records session `id` of `owner` with rmcp's state (JSON), live for `idle` unused.
    async fn create(
        &self,
        id: &str,
        owner: &str,
        state: &str,
        idle: Duration,
    ) -> Result<(), StoreError>;

    /// The state of `id` if it is live and `subject`'s (another user's session is `None`);
    /// a live session's expiry moves to `idle` from now.
    async fn load(
        &self,
        id: &str,
        subject: &str,
        idle: Duration,
    ) -> Result<Option<String>, StoreError>;

    /// The owner of `id` if it is live; its expiry moves to `idle` from now.
    async fn owner(&self, id: &str, idle: Duration) -> Result<Option<String>, StoreError>;

    /// Forgets `id` (nothing if it is already gone).
    async fn delete(&self, id: &str) -> Result<(), StoreError>;

    /// For each `(id, keep)`: whether the session is live; the expiry of those with `keep` moves
    /// to `idle` from now (sessions this replica streams to).
    async fn alive(&self, ids: &[(&str, bool)], idle: Duration) -> Result<Vec<bool>, StoreError>;

    /// Whether the store answers (`/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Whole seconds for an expiry, at least 1 (Redis `EXPIRE`).
pub(crate) fn idle_secs(idle: Duration) -> i64 {
    i64::try_from(idle.as_secs()).unwrap_or(i64::MAX).max(1)
}
