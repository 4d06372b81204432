//! The per-replica cache of stored credentials: `GetAccessToken` reads one row per call, and most
//! calls read the same rows again and again. The cache keeps the row as stored — the ciphertext
//! and non-secret metadata, never plaintext — so every call still decrypts (AES-GCM of ~100
//! bytes, about a microsecond) and still decides about a refresh from the decrypted expiry.
//!
//! Freshness:
//! - every write of this replica (put, refresh, `reauthorization_required`, delete) evicts the
//!   row here and publishes its key on `<redis.key_prefix>:credential-invalidations` (on the
//!   event bus: Redis pub/sub, or in-process in the embedded mode); every replica follows that
//!   channel and evicts the row at once;
//! - an entry lives at most [`TTL`], so a lost message (a failed publish, a subscription gap not
//!   yet noticed) serves an old row for at most that long;
//! - while the subscription is down nothing is cached or served from the cache, and the cache is
//!   emptied whenever it (re)connects;
//! - a read that raced with an eviction is not cached: every eviction moves an epoch, and a row
//!   read from Postgres is only stored when the epoch has not moved since before the read.
//!
//! Keys are the SHA-256 of `user_id ‖ 0 ‖ provider` (user ids have no control characters), so
//! the channel carries no user id.

use mcpauth_runtime::bus::{ChannelEvent, EventBus};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ring::digest;
use tokio_util::sync::CancellationToken;

use crate::crypto::{hex, unhex};
use crate::store::CredentialRow;

/// How long an entry may be served without a message from its writer.
pub const TTL: Duration = Duration::from_secs(2);
/// At most this many rows per replica (~1 KiB each).
pub const MAX_ENTRIES: usize = 100_000;

/// The cache key of `(user_id, provider)`.
pub type Key = [u8; 32];

pub fn key(user_id: &str, provider: &str) -> Key {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(user_id.as_bytes());
    ctx.update(&[0]);
    ctx.update(provider.as_bytes());
    ctx.finish().as_ref().try_into().expect("32 bytes")
}

struct Entry {
    row: Arc<CredentialRow>,
    until: Instant,
}

/// Stored credential rows (ciphertext), shared by every request of a replica. Cheap to clone.
#[derive(Clone)]
pub struct CredentialCache {
    inner: Arc<Inner>,
}

struct Inner {
    entries: RwLock<HashMap<Key, Entry>>,
    /// Moves on every eviction (under the write lock).
    epoch: AtomicU64,
    /// Whether the invalidation subscription is up.
    live: AtomicBool,
    ttl: Duration,
    max: usize,
}

impl CredentialCache {
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                entries: RwLock::default(),
                epoch: AtomicU64::new(0),
                live: AtomicBool::new(false),
                ttl,
                max: max.max(1),
            }),
        }
    }

    /// The current epoch: take it before reading Postgres, hand it to [`Self::put`].
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    pub fn get(&self, key: &Key) -> Option<Arc<CredentialRow>> {
        if !self.inner.live.load(Ordering::Acquire) {
            return None;
        }
        let map = self.inner.entries.read().expect("cache lock");
        let e = map.get(key)?;
        (e.until > Instant::now()).then(|| e.row.clone())
    }

    /// Caches `row`, read after [`Self::epoch`] returned `epoch`, unless something was evicted
    /// since (the row may predate that write) or the subscription is down.
    pub fn put(&self, key: Key, row: Arc<CredentialRow>, epoch: u64) {
        if self.inner.ttl.is_zero() || !self.inner.live.load(Ordering::Acquire) {
            return;
        }
        let mut map = self.inner.entries.write().expect("cache lock");
        if self.inner.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        let now = Instant::now();
        if map.len() >= self.inner.max {
            map.retain(|_, e| e.until > now);
            if map.len() >= self.inner.max {
                // Still full of live entries: drop an arbitrary tenth rather than grow.
                let drop: Vec<Key> = map.keys().take(self.inner.max / 10 + 1).copied().collect();
                for k in drop {
                    map.remove(&k);
                }
            }
        }
        map.insert(
            key,
            Entry {
                row,
                until: now + self.inner.ttl,
            },
        );
    }

    pub fn evict(&self, key: &Key) {
        let mut map = self.inner.entries.write().expect("cache lock");
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        map.remove(key);
    }

    pub fn clear(&self) {
        let mut map = self.inner.entries.write().expect("cache lock");
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }

    /// Marks the invalidation subscription up or down; either way the cache starts empty.
    pub fn set_live(&self, live: bool) {
        self.inner.live.store(live, Ordering::Release);
        self.clear();
    }

    pub fn len(&self) -> usize {
        self.inner.entries.read().expect("cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Publishes evictions to every replica.
#[derive(Clone)]
pub struct Invalidations {
    bus: Arc<dyn EventBus>,
    channel: String,
}

impl Invalidations {
    pub fn new(bus: Arc<dyn EventBus>, key_prefix: &str) -> Self {
        Self {
            bus,
            channel: channel(key_prefix),
        }
    }

    /// Best effort: a lost message is bounded by [`TTL`].
    pub async fn publish(&self, key: &Key) {
        if let Err(e) = self.bus.publish(&self.channel, &hex(key)).await {
            tracing::warn!(error = %e, "credential invalidation not published; other replicas catch up within the cache TTL");
        }
    }
}

/// The invalidation channel of `key_prefix`.
pub fn channel(key_prefix: &str) -> String {
    format!("{key_prefix}:credential-invalidations")
}

/// Follows the invalidation channel until `cancel`, keeping `cache` live only while subscribed.
pub async fn follow(
    bus: Arc<dyn EventBus>,
    channel: String,
    cache: CredentialCache,
    cancel: CancellationToken,
) {
    mcpauth_runtime::bus::follow(
        &*bus,
        &channel,
        "credential invalidations",
        cancel.cancelled(),
        |event| {
            match event {
                // Whatever was published while we were away is unknown: start empty.
                ChannelEvent::Subscribed => cache.set_live(true),
                ChannelEvent::Message(payload) => {
                    match unhex(&payload).and_then(|k| Key::try_from(k).ok()) {
                        Some(k) => cache.evict(&k),
                        None => cache.clear(),
                    }
                }
                ChannelEvent::Lost => cache.set_live(false),
            }
            std::future::ready(())
        },
    )
    .await;
    cache.set_live(false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Sealed;
    use crate::store::ConnectionStatus;

    fn row(version: i64) -> Arc<CredentialRow> {
        Arc::new(CredentialRow {
            user_id: "u".into(),
            provider: "p".into(),
            version,
            sealed: Sealed {
                key_id: "k".into(),
                blob: vec![1, 2, 3],
            },
            status: ConnectionStatus::Connected,
            scopes: vec![],
            expires_at: None,
            upstream_issuer: String::new(),
            upstream_subject: String::new(),
            connected_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            deleted_through: 0,
        })
    }

    #[test]
    fn keys_separate_user_and_provider() {
        assert_ne!(key("ab", "c"), key("a", "bc"));
        assert_eq!(key("a", "b"), key("a", "b"));
    }

    #[test]
    fn nothing_cached_or_served_while_not_subscribed() {
        let c = CredentialCache::new(Duration::from_secs(60), 10);
        let k = key("u", "p");
        c.put(k, row(1), c.epoch());
        assert!(c.get(&k).is_none());
        c.set_live(true);
        c.put(k, row(1), c.epoch());
        assert_eq!(c.get(&k).unwrap().version, 1);
        c.set_live(false);
        assert!(c.get(&k).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn a_read_that_raced_an_eviction_is_not_cached() {
        let c = CredentialCache::new(Duration::from_secs(60), 10);
        c.set_live(true);
        let k = key("u", "p");
        let before = c.epoch();
        // Another key's write lands while this read is in flight.
        c.evict(&key("u", "other"));
        c.put(k, row(1), before);
        assert!(c.get(&k).is_none());
        c.put(k, row(1), c.epoch());
        assert!(c.get(&k).is_some());
        c.evict(&k);
        assert!(c.get(&k).is_none());
    }

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let c = CredentialCache::new(Duration::from_millis(50), 5);
        c.set_live(true);
        let k = key("u", "p");
        c.put(k, row(1), c.epoch());
        std::thread::sleep(Duration::from_millis(60));
        assert!(c.get(&k).is_none());
        for i in 0..50 {
            c.put(key(&i.to_string(), "p"), row(1), c.epoch());
        }
        assert!(c.len() <= 5);
    }
}
