//! The embedded mode's refresh lock: a table of leases in this process. Single-flight within the
//! process, with the Redis lock's semantics: a lease per holder (a random owner), renewed every
//! third of the lease while held, released only by its owner, and a holder that is dropped
//! without releasing blocks others until its lease runs out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{HeldLock, LockError, RefreshLocks};

/// Leases by record (the key is a hash: no user id is kept).
type Leases = Arc<Mutex<HashMap<crate::cache::Key, Lease>>>;

/// Above this many entries an acquire first forgets the expired ones.
const PRUNE_ABOVE: usize = 1024;

struct Lease {
    owner: u64,
    until: Instant,
}

/// In-process refresh locks. Clones share the same table.
#[derive(Clone, Default)]
pub struct MemoryLocks {
    leases: Leases,
    owners: Arc<AtomicU64>,
}

impl MemoryLocks {
    pub fn new() -> Self {
        Self::default()
    }
}

fn table(leases: &Leases) -> std::sync::MutexGuard<'_, HashMap<crate::cache::Key, Lease>> {
    leases.lock().unwrap_or_else(|p| p.into_inner())
}

/// A held in-process lease.
pub struct MemoryHeldLock {
    leases: Leases,
    key: crate::cache::Key,
    owner: u64,
    renewer: tokio::task::JoinHandle<()>,
}

#[async_trait::async_trait]
impl RefreshLocks for MemoryLocks {
    async fn try_acquire(
        &self,
        user_id: &str,
        provider: &str,
        lease: Duration,
    ) -> Result<Option<Box<dyn HeldLock>>, LockError> {
        let key = crate::cache::key(user_id, provider);
        let owner = self.owners.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut leases = table(&self.leases);
            let now = Instant::now();
            if leases.len() > PRUNE_ABOVE {
                leases.retain(|_, l| l.until > now);
            }
            if leases.get(&key).is_some_and(|l| l.until > now) {
                return Ok(None);
            }
            leases.insert(
                key,
                Lease {
                    owner,
                    until: now + lease,
                },
            );
        }
        let renewer = {
            let leases = self.leases.clone();
            let every = lease / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let mut held = table(&leases);
                    match held.get_mut(&key) {
                        Some(l) if l.owner == owner => l.until = Instant::now() + lease,
                        _ => {
                            tracing::warn!("refresh lock lost before the refresh finished");
                            return;
                        }
                    }
                }
            })
        };
        Ok(Some(Box::new(MemoryHeldLock {
            leases: self.leases.clone(),
            key,
            owner,
            renewer,
        })))
    }

    async fn ping(&self) -> Result<(), LockError> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl HeldLock for MemoryHeldLock {
    async fn release(self: Box<Self>) {
        self.renewer.abort();
        let mut leases = table(&self.leases);
        if leases.get(&self.key).is_some_and(|l| l.owner == self.owner) {
            leases.remove(&self.key);
        }
    }
}

impl Drop for MemoryHeldLock {
    fn drop(&mut self) {
        // As with Redis: no more renewals; the lease runs out by itself.
        self.renewer.abort();
    }
}
