//! What the in-memory implementations share: a table whose entries expire as Redis keys do.
//!
//! An expired entry is invisible at once and removed by a sweep that runs after as many writes
//! as the table holds entries (at least [`SWEEP_AFTER_MIN`]), so a table never holds much more
//! than twice its live entries and a sweep costs O(1) per write amortized. The table does no
//! locking: each implementation keeps its tables under one mutex, so that an operation over
//! several of them (redeeming a code, ending a user's sessions) is atomic.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Writes before the first sweep of a small table.
const SWEEP_AFTER_MIN: usize = 64;

pub(crate) struct TtlTable<K, V> {
    entries: HashMap<K, (V, Instant)>,
    writes_since_sweep: usize,
    /// Writes before the next sweep: the entries held after the last one (at least the minimum).
    sweep_after: usize,
}

impl<K, V> Default for TtlTable<K, V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            writes_since_sweep: 0,
            sweep_after: SWEEP_AFTER_MIN,
        }
    }
}

/// The deadline of an entry written now with a TTL of `ttl_secs` (Redis `SET EX`/`EXPIRE`).
pub(crate) fn deadline(ttl_secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(ttl_secs)
}

/// Locks a table (or tables) of an implementation. A panic while it was held cannot leave a
/// table half-written (every change is one `HashMap` call), so poisoning is ignored.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K: Eq + Hash, V> TtlTable<K, V> {
    /// Sets `key` (replacing any value) until `expires`.
    pub(crate) fn insert(&mut self, key: K, value: V, expires: Instant) {
        self.insert_at(key, value, expires, Instant::now());
    }

    /// The live value of `key`.
    pub(crate) fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.get_at(key, Instant::now())
    }

    /// The live value of `key` and its deadline, to change in place (Redis `KEEPTTL`, or
    /// `EXPIRE` when the deadline is changed).
    pub(crate) fn get_mut<Q: Hash + Eq + ?Sized>(
        &mut self,
        key: &Q,
    ) -> Option<(&mut V, &mut Instant)>
    where
        K: Borrow<Q>,
    {
        let now = Instant::now();
        self.entries
            .get_mut(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, exp)| (v, exp))
    }

    /// Removes `key`; its value if it was live (Redis `GETDEL`, or `DEL` returning 1).
    pub(crate) fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.remove_at(key, Instant::now())
    }

    fn insert_at(&mut self, key: K, value: V, expires: Instant, now: Instant) {
        self.wrote(now);
        self.entries.insert(key, (value, expires));
    }

    fn get_at<Q: Hash + Eq + ?Sized>(&self, key: &Q, now: Instant) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.entries
            .get(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| v)
    }

    fn remove_at<Q: Hash + Eq + ?Sized>(&mut self, key: &Q, now: Instant) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.wrote(now);
        self.entries
            .remove(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| v)
    }

    /// Drops every entry expired at `now`.
    fn sweep(&mut self, now: Instant) {
        self.entries.retain(|_, (_, exp)| *exp > now);
        self.writes_since_sweep = 0;
        self.sweep_after = self.entries.len().max(SWEEP_AFTER_MIN);
    }

    fn wrote(&mut self, now: Instant) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= self.sweep_after {
            self.sweep(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn an_expired_entry_is_invisible_then_swept() {
        let t0 = Instant::now();
        let mut t = TtlTable::default();
        t.insert_at("a", 1, t0 + SEC, t0);
        t.insert_at("b", 2, t0 + 60 * SEC, t0);
        assert_eq!(t.get_at("a", t0), Some(&1));
        let later = t0 + 2 * SEC;
        assert_eq!(t.get_at("a", later), None);
        assert_eq!(t.remove_at("a", later), None);
        assert_eq!(t.get_at("b", later), Some(&2));
        t.insert_at("c", 3, t0 + SEC, t0);
        t.sweep(later);
        assert_eq!(t.entries.len(), 1);
    }

    #[test]
    fn writes_alone_keep_the_table_bounded() {
        // Every key is new and lives one second; one write per 10 ms. Without sweeps the table
        // would hold all 20,000.
        let t0 = Instant::now();
        let mut t = TtlTable::default();
        for i in 0..20_000u32 {
            let now = t0 + Duration::from_millis(10) * i;
            t.insert_at(i, (), now + SEC, now);
            // At most 100 live, plus what was written since the last sweep.
            assert!(
                t.entries.len() <= 2 * 101 + SWEEP_AFTER_MIN,
                "{} held",
                t.entries.len()
            );
        }
    }
}
