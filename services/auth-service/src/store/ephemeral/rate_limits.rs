//! Fixed-window rate-limit counts shared by every replica: one counter per `(bucket, subject,
//! window)`, kept one second longer than a window lasts (see [`crate::ratelimit`] for how the
//! limiter uses them).

pub mod memory;
pub mod redis;

use crate::error::StoreError;

/// Rate-limit counters. `window` is the window's number (Unix seconds / `window_secs`); a
/// counter expires `window_secs + 1` seconds after it was last changed.
#[async_trait::async_trait]
pub trait RateLimitCounters: Send + Sync + 'static {
    /// Counts one request in the window; returns the count so far in that window.
    async fn count(
        &self,
        bucket: &str,
        subject: &str,
        window: u64,
        window_secs: u64,
    ) -> Result<u64, StoreError>;

    /// Takes one request back from a window ([`RateLimitCounters::count`]).
    async fn uncount(
        &self,
        bucket: &str,
        subject: &str,
        window: u64,
        window_secs: u64,
    ) -> Result<(), StoreError>;

    /// The count of a window (0 when nothing was counted yet).
    async fn requests_counted(
        &self,
        bucket: &str,
        subject: &str,
        window: u64,
    ) -> Result<u64, StoreError>;

    /// Adds batches of requests `(bucket, subject, window, count)` counted by one replica;
    /// returns each window's total across all replicas, in order. `items` is not empty (the
    /// limiter sends nothing when it counted nothing).
    async fn add(
        &self,
        items: &[(&str, &str, u64, u64)],
        window_secs: u64,
    ) -> Result<Vec<u64>, StoreError>;
}
