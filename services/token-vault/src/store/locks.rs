//! The per-(user, provider) refresh lock: one refresh at a time for a record, across every
//! replica that shares the store. A lease: taken for a TTL, renewed by its holder while it works,
//! released by its holder (only if it still holds it). A holder that dies stops renewing and
//! blocks others for at most one TTL.
//!
//! [`redis::RedisLocks`] is the production lock (every replica shares the Redis);
//! [`memory::MemoryLocks`] is the embedded mode's (one process: single-flight within it, with the
//! same lease semantics).

use std::time::Duration;

pub mod memory;
pub mod redis;

pub use self::memory::MemoryLocks;
pub use self::redis::RedisLocks;

/// The lock service could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("refresh lock unavailable: {0}")]
pub struct LockError(pub(crate) String);

/// Acquires refresh locks.
#[async_trait::async_trait]
pub trait RefreshLocks: Send + Sync + 'static {
    /// Takes the lock of `(user_id, provider)` for `lease` if it is free (`None` when another
    /// holder has it). The returned lock is renewed in the background until released or dropped.
    async fn try_acquire(
        &self,
        user_id: &str,
        provider: &str,
        lease: Duration,
    ) -> Result<Option<Box<dyn HeldLock>>, LockError>;

    /// Whether the lock service answers (readiness).
    async fn ping(&self) -> Result<(), LockError>;
}

/// A held lock. Dropping it without [`HeldLock::release`] (a cancelled request) stops the
/// renewal: it then expires within one lease.
#[async_trait::async_trait]
pub trait HeldLock: Send + 'static {
    /// Releases the lock if this holder still owns it.
    async fn release(self: Box<Self>);
}
