//! Fixed-window rate limits shared by every replica through Redis.
//!
//! Small limits (registration, login, anything under [`EXACT_BELOW`] per window) are counted
//! exactly: one Redis `INCR` per request. Large limits (the token endpoint of a busy
//! deployment) would spend more time on that round trip than on issuing the token, so they are
//! counted locally and pushed to Redis with `INCRBY` every [`FLUSH_EVERY`]; each push returns
//! the window's total across all replicas. A replica therefore admits at most what it receives
//! in one flush interval beyond the shared limit — a few requests against a limit of thousands.
//! A replica's first request in a window reads the shared count first, so a fresh replica does
//! not start from zero.
//!
//! The counts live behind [`RateLimitCounters`]: Redis in production, this process's memory in
//! the embedded single-process mode (one replica, same windows).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::ephemeral::RateLimitCounters;

/// Limits below this many requests per window are counted exactly in Redis.
pub const EXACT_BELOW: u64 = 1_000;
/// How often locally counted requests are pushed to Redis.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The verdict for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Denied; retry after this many seconds.
    Deny(u64),
}

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    /// Requests counted here and not yet pushed.
    pending: u64,
    /// Requests being pushed right now (not yet in `shared`).
    in_flight: u64,
    /// The shared total as of the last push.
    shared: u64,
}

type Key = (&'static str, String, u64);

/// The limiter of one replica.
#[derive(Clone)]
pub struct RateLimiter {
    counters: Arc<dyn RateLimitCounters>,
    window_secs: u64,
    local: Arc<Mutex<HashMap<Key, Window>>>,
}

impl RateLimiter {
    pub fn new(counters: Arc<dyn RateLimitCounters>, window_secs: u64) -> Self {
        Self {
            counters,
            window_secs: window_secs.max(1),
            local: Arc::default(),
        }
    }

    /// Counts a request of `subject` (a client IP) against `bucket`'s `limit`. Redis being
    /// unreachable lets the request through (availability over limiting) and is logged.
    pub async fn check(
        &self,
        bucket: &'static str,
        subject: &str,
        limit: u64,
        now_secs: u64,
    ) -> Verdict {
        let window = now_secs / self.window_secs;
        let retry = ((window + 1) * self.window_secs - now_secs).max(1);
        if limit < EXACT_BELOW {
            return match self
                .counters
                .count(bucket, subject, window, self.window_secs)
                .await
            {
                Ok(n) if n > limit => Verdict::Deny(retry),
                Ok(_) => Verdict::Allow,
                Err(e) => {
                    tracing::warn!(error = %e, bucket, "rate limiter unavailable, allowing request");
                    Verdict::Allow
                }
            };
        }
        let key = (bucket, subject.to_owned(), window);
        let known = self
            .local
            .lock()
            .expect("rate limiter lock")
            .contains_key(&key);
        if !known {
            // First request of this window on this replica: learn what the other replicas have
            // counted already, so that a fresh replica does not start from zero.
            let seen = match self
                .counters
                .requests_counted(bucket, subject, window)
                .await
            {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, bucket, "rate limit counts could not be read");
                    0
                }
            };
            let mut local = self.local.lock().expect("rate limiter lock");
            let w = local.entry(key.clone()).or_default();
            w.shared = w.shared.max(seen);
        }
        let mut local = self.local.lock().expect("rate limiter lock");
        let w = local.entry(key).or_default();
        if w.shared + w.in_flight + w.pending >= limit {
            return Verdict::Deny(retry);
        }
        w.pending += 1;
        Verdict::Allow
    }

    /// Takes back one request counted by [`RateLimiter::check`] in the current window (a request
    /// that a later, narrower limit refused). Best effort: a count already pushed to Redis by the
    /// batched path stays.
    pub async fn refund(&self, bucket: &'static str, subject: &str, limit: u64, now_secs: u64) {
        let window = now_secs / self.window_secs;
        if limit < EXACT_BELOW {
            if let Err(e) = self
                .counters
                .uncount(bucket, subject, window, self.window_secs)
                .await
            {
                tracing::warn!(error = %e, bucket, "rate limit refund failed");
            }
            return;
        }
        let mut local = self.local.lock().expect("rate limiter lock");
        if let Some(w) = local.get_mut(&(bucket, subject.to_owned(), window)) {
            w.pending = w.pending.saturating_sub(1);
        }
    }

    /// Pushes local counts to Redis and learns the shared totals; forgets past windows.
    pub async fn flush(&self, now_secs: u64) {
        let current = now_secs / self.window_secs;
        let batch: Vec<(Key, u64)> = {
            let mut local = self.local.lock().expect("rate limiter lock");
            local.retain(|(_, _, w), _| *w + 1 >= current);
            local
                .iter_mut()
                .filter(|(_, w)| w.pending > 0)
                .map(|(k, w)| {
                    let n = w.pending;
                    w.pending = 0;
                    w.in_flight += n;
                    (k.clone(), n)
                })
                .collect()
        };
        if batch.is_empty() {
            return;
        }
        let items: Vec<(&str, &str, u64, u64)> = batch
            .iter()
            .map(|((b, s, w), n)| (*b, s.as_str(), *w, *n))
            .collect();
        match self.counters.add(&items, self.window_secs).await {
            Ok(totals) => {
                let mut local = self.local.lock().expect("rate limiter lock");
                for ((key, n), total) in batch.into_iter().zip(totals) {
                    if let Some(w) = local.get_mut(&key) {
                        w.in_flight -= n;
                        w.shared = total;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "rate limit counts could not be shared; keeping them locally");
                let mut local = self.local.lock().expect("rate limiter lock");
                for (key, n) in batch {
                    let w = local.entry(key).or_default();
                    w.in_flight = w.in_flight.saturating_sub(n);
                    w.shared += n;
                }
            }
        }
    }
}
