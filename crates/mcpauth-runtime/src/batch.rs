//! A background writer that drains a channel in batches: the audit trails of auth-service and
//! token-vault, which must not cost a database commit per request.
//!
//! Two kinds of failure are told apart. A *transient* one (the database is down, the pool timed
//! out) is retried with backoff until it succeeds: nothing is lost during an outage. A
//! *rejection* (the database refuses the data itself, e.g. a NUL byte in a text column) would fail
//! again forever, so the batch is split in halves until the refused item stands alone; that one
//! item is quarantined (handed to [`Sink::quarantine`] and counted) and everything else is
//! written. One bad event can no longer stop the trail.

use std::fmt::Display;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

/// How a [`write_batches`] writer gathers its batches.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Most items written at once.
    pub max: usize,
    /// How long items may gather after the first one of a batch arrives. On a busy server this
    /// turns many small writes (each a commit, and a wake-up of the writer per item) into one,
    /// while the trail stays a few milliseconds behind the requests.
    pub linger: Duration,
}

/// The request side of a trail: hands items to the writer without ever holding a request up for
/// long. While the channel has room an item goes straight in. When it is full (the writer is
/// far behind: the store is down or slow), the first request waits up to `wait` for room; if
/// none frees up the item is dropped, counted in `mcpauth_batch_dropped_total{trail}` and logged
/// at error level (at most once a second, with the running count), and from then on items that
/// find no room are dropped at once until one gets in again — an outage costs each request at
/// most one bounded wait, never a hang.
pub struct Recorder<T> {
    tx: mpsc::Sender<T>,
    what: &'static str,
    wait: Duration,
    state: Arc<Overflow>,
}

struct Overflow {
    overflowing: AtomicBool,
    dropped: AtomicU64,
    /// Milliseconds since `epoch` of the last drop logged.
    last_logged_ms: AtomicU64,
    epoch: Instant,
}

impl<T> Clone for Recorder<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            what: self.what,
            wait: self.wait,
            state: self.state.clone(),
        }
    }
}

impl<T: Send> Recorder<T> {
    /// A recorder over `tx`; `what` names the trail in metrics and logs.
    pub fn new(tx: mpsc::Sender<T>, what: &'static str, wait: Duration) -> Self {
        Self {
            tx,
            what,
            wait,
            state: Arc::new(Overflow {
                overflowing: AtomicBool::new(false),
                dropped: AtomicU64::new(0),
                last_logged_ms: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        }
    }

    /// Hands `item` to the writer; `false` when it was dropped (channel full past the wait,
    /// or the writer stopped).
    pub async fn record(&self, item: T) -> bool {
        let sent = if self.state.overflowing.load(Ordering::Relaxed) {
            match self.tx.try_send(item) {
                Ok(()) => {
                    self.state.overflowing.store(false, Ordering::Relaxed);
                    tracing::warn!(trail = self.what, "trail writer caught up; recording again");
                    Ok(())
                }
                Err(mpsc::error::TrySendError::Full(_)) => Err("full"),
                Err(mpsc::error::TrySendError::Closed(_)) => Err("stopped"),
            }
        } else {
            match self.tx.send_timeout(item, self.wait).await {
                Ok(()) => Ok(()),
                Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                    self.state.overflowing.store(true, Ordering::Relaxed);
                    Err("full")
                }
                Err(mpsc::error::SendTimeoutError::Closed(_)) => Err("stopped"),
            }
        };
        let Err(why) = sent else {
            return true;
        };
        metrics::counter!("mcpauth_batch_dropped_total", "trail" => self.what).increment(1);
        let dropped = self.state.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.state.epoch.elapsed().as_millis() as u64;
        let last = self.state.last_logged_ms.load(Ordering::Relaxed);
        if (dropped == 1 || now.saturating_sub(last) >= 1_000)
            && self
                .state
                .last_logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(
                trail = self.what,
                reason = why,
                dropped_total = dropped,
                "trail writer cannot keep up; items are being dropped"
            );
        }
        false
    }
}

/// The shape of a trail (auth-service's audit, token-vault's access trail): its name in metrics
/// and logs, how deep its channel is, how its writer batches, and how long a request may wait
/// for room in a full channel.
#[derive(Debug, Clone, Copy)]
pub struct Trail {
    pub name: &'static str,
    pub channel: usize,
    pub batching: Batching,
    pub record_wait: Duration,
}

impl Trail {
    /// Spawns the writer over `sink` and returns the recorder requests hand items to, with the
    /// writer's handle: the writer ends once every recorder is dropped and the channel drained.
    pub fn start<T, S>(self, sink: S) -> (Recorder<T>, tokio::task::JoinHandle<()>)
    where
        T: Send + Sync + 'static,
        S: Sink<T> + 'static,
        S::Error: Send,
    {
        let (tx, rx) = mpsc::channel(self.channel);
        let writer = tokio::spawn(write_batches(rx, self.batching, self.name, sink));
        (Recorder::new(tx, self.name, self.record_wait), writer)
    }
}

/// Where a batch writer puts its items.
pub trait Sink<T>: Send {
    type Error: Display;
    /// Writes `items` all at once (one statement, one commit).
    fn write<'a>(&'a mut self, items: &'a [T]) -> BoxFuture<'a, Result<(), Self::Error>>;
    /// Whether `error` is about the items themselves (retrying them can never succeed) rather
    /// than about the way to the store.
    fn rejects(&self, error: &Self::Error) -> bool;
    /// Takes an item the store refused on its own. It is not retried.
    fn quarantine(&mut self, item: &T, error: &Self::Error);
}

/// Drains `rx` until every sender is dropped and the channel is empty, writing batches of at
/// most `batching.max` items through `sink` (see the module doc for how failures are handled).
/// `what` names the trail in warnings and in `mcpauth_batch_quarantined_total{trail}`.
pub async fn write_batches<T, S: Sink<T>>(
    mut rx: mpsc::Receiver<T>,
    batching: Batching,
    what: &'static str,
    mut sink: S,
) {
    let max = batching.max.max(1);
    let mut batch = Vec::with_capacity(max);
    while rx.recv_many(&mut batch, max).await > 0 {
        if batch.len() < max && !batching.linger.is_zero() {
            tokio::time::sleep(batching.linger).await;
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
        }
        write_all(&mut sink, &batch, what).await;
        batch.clear();
    }
}

/// Writes every item of `batch`, in order, except those the store rejects one by one.
async fn write_all<T, S: Sink<T>>(sink: &mut S, batch: &[T], what: &'static str) {
    // Ranges still to write, the next one on top: halves of a rejected range go back first
    // half on top, so items keep their order.
    let mut pending: Vec<Range<usize>> = Vec::with_capacity(16);
    pending.push(0..batch.len());
    while let Some(range) = pending.pop() {
        let mut backoff = Duration::from_millis(50);
        loop {
            let Err(e) = sink.write(&batch[range.clone()]).await else {
                break;
            };
            if !sink.rejects(&e) {
                tracing::warn!(error = %e, items = range.len(), "{what}: batch write failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            if range.len() == 1 {
                metrics::counter!("mcpauth_batch_quarantined_total", "trail" => what).increment(1);
                tracing::error!(error = %e, "{what}: the store refused one item; quarantined, the rest is written");
                sink.quarantine(&batch[range.start], &e);
            } else {
                let mid = range.start + range.len() / 2;
                pending.push(mid..range.end);
                pending.push(range.start..mid);
            }
            break;
        }
    }
}

/// Whether Postgres refused the data itself (SQLSTATE class 22, data exception — e.g. `22021`
/// invalid byte sequence, `22P05` untranslatable character — or 23, integrity constraint
/// violation) or the values could not be encoded. A connection, pool or schema error is not
/// a rejection: it is retried, since it ends when the database or the migration is back.
pub fn postgres_rejects(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23")),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

/// Replaces every control character (C0, DEL, C1) of `s` with U+FFFD, so that a recorded value
/// can never be refused by the store (Postgres takes no NUL in `text` nor `\u0000` in `jsonb`)
/// nor break a log line. Borrows when there is nothing to replace.
pub fn sanitize(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}

/// [`sanitize`] applied to every string and object key of a JSON value.
pub fn sanitize_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(clean) = sanitize(s) {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sanitize_json),
        Value::Object(map) => {
            if map.keys().any(|k| k.chars().any(char::is_control)) {
                let entries = std::mem::take(map);
                for (k, v) in entries {
                    map.insert(sanitize(&k).into_owned(), v);
                }
            }
            map.values_mut().for_each(sanitize_json);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
