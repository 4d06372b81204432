//! Session records in this process's memory (the embedded single-process mode): the Redis
//! records' semantics — expiry after `idle` without use, every read a use — on a map. Expired
//! records are dropped when read, and swept from the whole map as it grows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{SessionRecords, StoreError};

/// Records beyond which expired ones are swept on insert.
const SWEEP_AT: usize = 10_000;

struct Record {
    state: String,
    owner: String,
    expires: Instant,
}

#[derive(Default)]
pub struct MemorySessions {
    records: Mutex<HashMap<String, Record>>,
}

impl MemorySessions {
    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live record of `id` with its expiry moved to `idle` from now (an expired one is
    /// dropped), read by `f`.
    fn touch<T>(&self, id: &str, idle: Duration, f: impl FnOnce(&Record) -> T) -> Option<T> {
        let mut records = self.records();
        let now = Instant::now();
        match records.get_mut(id) {
            Some(r) if r.expires > now => {
                r.expires = now + idle;
                Some(f(r))
            }
            Some(_) => {
                records.remove(id);
                None
            }
            None => None,
        }
    }
}

#[async_trait::async_trait]
impl SessionRecords for MemorySessions {
    async fn create(
        &self,
        id: &str,
        owner: &str,
        state: &str,
        idle: Duration,
    ) -> Result<(), StoreError> {
        let mut records = self.records();
        let now = Instant::now();
        if records.len() >= SWEEP_AT {
            records.retain(|_, r| r.expires > now);
        }
        records.insert(
            id.to_owned(),
            Record {
                state: state.to_owned(),
                owner: owner.to_owned(),
                expires: now + idle,
            },
        );
        Ok(())
    }

    async fn load(
        &self,
        id: &str,
        subject: &str,
        idle: Duration,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .touch(id, idle, |r| (r.owner == subject).then(|| r.state.clone()))
            .flatten())
    }

    async fn owner(&self, id: &str, idle: Duration) -> Result<Option<String>, StoreError> {
        Ok(self.touch(id, idle, |r| r.owner.clone()))
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.records().remove(id);
        Ok(())
    }

    async fn alive(&self, ids: &[(&str, bool)], idle: Duration) -> Result<Vec<bool>, StoreError> {
        let now = Instant::now();
        Ok(ids
            .iter()
            .map(|(id, keep)| {
                if *keep {
                    self.touch(id, idle, |_| ()).is_some()
                } else {
                    self.records().get(*id).is_some_and(|r| r.expires > now)
                }
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
