//! Rate-limit counters in this process's memory (the embedded mode has one replica, so these are
//! its only counts).

use std::sync::Mutex;

use super::RateLimitCounters;
use crate::error::StoreError;
use crate::store::ephemeral::ttl_table::{TtlTable, deadline, lock};

type Key = (String, String, u64);

#[derive(Default)]
pub struct MemoryRateLimitCounters {
    /// Signed as Redis counters are: a give-back may precede its count.
    table: Mutex<TtlTable<Key, i64>>,
}

impl MemoryRateLimitCounters {
    /// Adds `n` to a window's counter and restarts its expiry (Redis `INCRBY` + `EXPIRE`).
    fn add_one(table: &mut TtlTable<Key, i64>, key: Key, n: i64, window_secs: u64) -> i64 {
        let total = table.get(&key).copied().unwrap_or(0).saturating_add(n);
        table.insert(key, total, deadline(window_secs + 1));
        total
    }
}

fn key(bucket: &str, subject: &str, window: u64) -> Key {
    (bucket.to_owned(), subject.to_owned(), window)
}

#[async_trait::async_trait]
impl RateLimitCounters for MemoryRateLimitCounters {
    async fn count(
        &self,
        bucket: &str,
        subject: &str,
        window: u64,
        window_secs: u64,
    ) -> Result<u64, StoreError> {
        let mut t = lock(&self.table);
        let n = Self::add_one(&mut t, key(bucket, subject, window), 1, window_secs);
        Ok(n.max(0) as u64)
    }

    async fn uncount(
        &self,
        bucket: &str,
        subject: &str,
        window: u64,
        window_secs: u64,
    ) -> Result<(), StoreError> {
        let mut t = lock(&self.table);
        Self::add_one(&mut t, key(bucket, subject, window), -1, window_secs);
        Ok(())
    }

    async fn requests_counted(
        &self,
        bucket: &str,
        subject: &str,
        window: u64,
    ) -> Result<u64, StoreError> {
        let t = lock(&self.table);
        let n = t.get(&key(bucket, subject, window)).copied().unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    async fn add(
        &self,
        items: &[(&str, &str, u64, u64)],
        window_secs: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let mut t = lock(&self.table);
        Ok(items
            .iter()
            .map(|(bucket, subject, window, n)| {
                let n = i64::try_from(*n).unwrap_or(i64::MAX);
                let total = Self::add_one(&mut t, key(bucket, subject, *window), n, window_secs);
                total.max(0) as u64
            })
            .collect())
    }
}
