//! A bounded, time-limited cache of token verification results, keyed by the token's SHA-256
//! (the token itself is never kept), that a revocation empties of what it covers in O(1) per
//! token: a secondary index maps each token id, grant, client and subject to the cache keys it
//! names, so nothing is ever scanned.
//!
//! Two rules keep a revoked token from being served past the revocation:
//! - a fill started before a revocation that covers its result is discarded: every eviction
//!   moves a generation and is remembered (the last [`RECENT_REVOCATIONS`]), and a fill stores
//!   its result only if nothing since its ticket covers it;
//! - while the revocation feed is down (see [`super::feed`]) nothing is cached or served, and
//!   the cache is emptied when it goes down and again when it is back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::time::{Duration, Instant};

use super::{Revocation, RevocationIds, Scope};

/// The cache key of a token: its SHA-256.
pub type TokenKey = [u8; 32];

/// The SHA-256 of `token`, the only form in which a token is kept.
pub fn token_key(token: &str) -> TokenKey {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    k
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A verified token as far as revocation is concerned: the ids a revocation may name it by,
/// and when it expires.
pub trait Revocable: Clone {
    fn revocation_ids(&self) -> RevocationIds<'_>;
    /// Unix seconds.
    fn expires_at(&self) -> i64;
}

/// Why a token was refused, as far as caching is concerned.
pub trait Refusal: Clone {
    /// The answer for a cached token whose expiry has passed.
    fn expired() -> Self;
    /// A refusal that says nothing about the token (the issuer was unreachable): never cached.
    fn is_transient(&self) -> bool;
}

/// How long a refused token is remembered (bounds the cost of garbage tokens on the issuer).
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// Revocations remembered for fills in flight; a fill older than all of them is discarded.
pub const RECENT_REVOCATIONS: usize = 1024;

/// The result of [`VerificationCache::lookup`].
pub enum Lookup<'a, V, E> {
    /// A cached answer.
    Hit(Result<V, E>),
    /// Not cached: verify, then hand the result to [`Fill::store`].
    Miss(Fill<'a, V, E>),
}

/// A verification in flight, started at a generation of the cache.
pub struct Fill<'a, V, E> {
    cache: &'a VerificationCache<V, E>,
    key: TokenKey,
    generation: u64,
}

impl<V: Revocable, E: Refusal> Fill<'_, V, E> {
    /// Caches `result` unless a revocation since the fill began covers it (or the cache was
    /// emptied meanwhile, or the feed is down). Returns whether it was cached.
    pub fn store(self, result: &Result<V, E>) -> bool {
        self.cache.store(self.key, self.generation, result)
    }
}

struct Entry<V, E> {
    result: Result<V, E>,
    until: Instant,
    /// Which insertion this is (to recognise its place in `order`).
    stamp: u64,
}

struct Inner<V, E> {
    entries: HashMap<TokenKey, Entry<V, E>>,
    /// Revocation target → keys of the cached tokens it covers.
    index: HashMap<(Scope, String), HashSet<TokenKey>>,
    /// Keys in insertion order, with the stamp of the insertion (stale pairs are skipped).
    order: VecDeque<(TokenKey, u64)>,
    next_stamp: u64,
    /// The last evictions: their generation and what they covered (`None`: everything).
    recent: VecDeque<(u64, Option<Revocation>)>,
    /// Whether revocations are being received (see [`VerificationCache::set_live`]).
    live: bool,
}

/// Verification results shared by every request of a replica. Cheap to clone.
pub struct VerificationCache<V, E> {
    inner: Arc<RwLock<Inner<V, E>>>,
    /// Bumped (under the write lock) by every eviction; read without it by a new fill.
    generation: Arc<AtomicU64>,
    ttl: Duration,
    negative_ttl: Duration,
    max: usize,
}

impl<V, E> Clone for VerificationCache<V, E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            generation: self.generation.clone(),
            ttl: self.ttl,
            negative_ttl: self.negative_ttl,
            max: self.max,
        }
    }
}

impl<V: Revocable, E: Refusal> VerificationCache<V, E> {
    /// A cache of at most `max` tokens, each for at most `ttl` (0 disables it). It starts live:
    /// a cache fed by revocations is marked down by [`super::feed::follow`] until it subscribes.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Inner {
                entries: HashMap::new(),
                index: HashMap::new(),
                order: VecDeque::new(),
                next_stamp: 0,
                recent: VecDeque::new(),
                live: true,
            })),
            generation: Arc::default(),
            ttl,
            negative_ttl: NEGATIVE_TTL.min(ttl),
            max: max.max(1),
        }
    }

    /// The cached answer for `key`, or a [`Fill`] to verify it with.
    pub fn lookup(&self, key: &TokenKey) -> Lookup<'_, V, E> {
        // The generation is read before the cache: a revocation applied after this point
        // discards the fill, one applied before it is already reflected in the issuer's answer.
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(hit) = self.get(key) {
            return Lookup::Hit(hit);
        }
        Lookup::Miss(Fill {
            cache: self,
            key: *key,
            generation,
        })
    }

    fn get(&self, key: &TokenKey) -> Option<Result<V, E>> {
        let inner = self.inner.read().expect("verification cache lock");
        if !inner.live {
            return None;
        }
        let e = inner.entries.get(key)?;
        if e.until <= Instant::now() {
            return None;
        }
        if let Ok(v) = &e.result
            && v.expires_at() <= now_secs()
        {
            return Some(Err(E::expired()));
        }
        Some(e.result.clone())
    }

    fn store(&self, key: TokenKey, since: u64, result: &Result<V, E>) -> bool {
        if self.ttl.is_zero() || matches!(result, Err(e) if e.is_transient()) {
            return false;
        }
        let mut inner = self.inner.write().expect("verification cache lock");
        if !inner.live {
            return false;
        }
        let now_generation = self.generation.load(Ordering::Relaxed);
        // A refusal stays true whatever was revoked since; an answer that a token is valid is
        // kept only if every eviction since the fill began is remembered and none covers it.
        if now_generation != since
            && let Ok(v) = result
        {
            let ids = v.revocation_ids();
            let remembered = inner.recent.front().is_some_and(|(g, _)| *g <= since + 1);
            let covered = inner
                .recent
                .iter()
                .filter(|(g, _)| *g > since)
                .any(|(_, r)| r.as_ref().is_none_or(|r| r.covers(&ids)));
            if !remembered || covered {
                return false;
            }
        }
        let ttl = if result.is_ok() {
            self.ttl
        } else {
            self.negative_ttl
        };
        let now = Instant::now();
        Self::remove(&mut inner, &key);
        while inner.entries.len() >= self.max {
            Self::drop_oldest(&mut inner);
        }
        let stamp = inner.next_stamp;
        inner.next_stamp += 1;
        if let Ok(v) = result {
            for (scope, id) in v.revocation_ids().iter() {
                inner
                    .index
                    .entry((scope, id.to_owned()))
                    .or_default()
                    .insert(key);
            }
        }
        inner.entries.insert(
            key,
            Entry {
                result: result.clone(),
                until: now + ttl,
                stamp,
            },
        );
        inner.order.push_back((key, stamp));
        // Replaced and evicted entries leave stale pairs behind; drop them now and then.
        if inner.order.len() > 2 * self.max + 16 {
            let Inner { order, entries, .. } = &mut *inner;
            order.retain(|(k, s)| entries.get(k).is_some_and(|e| e.stamp == *s));
        }
        true
    }

    /// Removes the oldest entry (one pass over stale pairs at most).
    fn drop_oldest(inner: &mut Inner<V, E>) {
        while let Some((k, stamp)) = inner.order.pop_front() {
            if inner.entries.get(&k).is_some_and(|e| e.stamp == stamp) {
                Self::remove(inner, &k);
                return;
            }
        }
        // `order` holds every live entry, so this is unreachable; stay bounded regardless.
        inner.entries.clear();
        inner.index.clear();
    }

    fn remove(inner: &mut Inner<V, E>, key: &TokenKey) {
        let Some(e) = inner.entries.remove(key) else {
            return;
        };
        if let Ok(v) = &e.result {
            for (scope, id) in v.revocation_ids().iter() {
                let target = (scope, id.to_owned());
                if let Some(keys) = inner.index.get_mut(&target) {
                    keys.remove(key);
                    if keys.is_empty() {
                        inner.index.remove(&target);
                    }
                }
            }
        }
    }

    fn bump(&self, inner: &mut RwLockWriteGuard<'_, Inner<V, E>>, what: Option<Revocation>) {
        let g = self.generation.load(Ordering::Relaxed) + 1;
        self.generation.store(g, Ordering::Release);
        if inner.recent.len() >= RECENT_REVOCATIONS {
            inner.recent.pop_front();
        }
        inner.recent.push_back((g, what));
    }

    /// Evicts every cached token that `revocation` covers: O(number of such tokens).
    pub fn evict(&self, revocation: &Revocation) {
        let mut inner = self.inner.write().expect("verification cache lock");
        let target = (revocation.scope, revocation.id.clone());
        if let Some(keys) = inner.index.remove(&target) {
            for k in keys {
                Self::remove(&mut inner, &k);
            }
        }
        self.bump(&mut inner, Some(revocation.clone()));
    }

    /// Forgets everything, and discards every fill in flight (after a gap in the revocation
    /// feed, or a revocation this replica cannot place).
    pub fn clear(&self) {
        let mut inner = self.inner.write().expect("verification cache lock");
        Self::clear_locked(&mut inner);
        self.bump(&mut inner, None);
    }

    fn clear_locked(inner: &mut Inner<V, E>) {
        inner.entries.clear();
        inner.index.clear();
        inner.order.clear();
    }

    /// Marks the revocation feed up or down; either way the cache starts empty. While down
    /// nothing is cached or served: revocations would be missed.
    pub fn set_live(&self, live: bool) {
        let mut inner = self.inner.write().expect("verification cache lock");
        Self::clear_locked(&mut inner);
        inner.live = live;
        self.bump(&mut inner, None);
    }

    /// Cached tokens.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .expect("verification cache lock")
            .entries
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Revocation targets indexed (for tests and gauges).
    pub fn indexed_targets(&self) -> usize {
        self.inner
            .read()
            .expect("verification cache lock")
            .index
            .len()
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
