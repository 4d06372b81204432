//! A background writer that drains a channel in batches: the audit trails of auth-service and
//! token-vault, which must not cost a database commit per request.

use std::fmt::Display;
use std::time::Duration;

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

/// Drains `rx` until every sender is dropped and the channel is empty, calling `write` with
/// batches of at most `batching.max` items. A failed write is retried with backoff (50 ms
/// doubling up to 5 s) until it succeeds: nothing taken off the channel is dropped. `what` names
/// the trail in the warnings.
pub async fn write_batches<T, F, E>(
    mut rx: mpsc::Receiver<T>,
    batching: Batching,
    what: &'static str,
    mut write: F,
) where
    F: for<'a> FnMut(&'a [T]) -> BoxFuture<'a, Result<(), E>>,
    E: Display,
{
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
        let mut backoff = Duration::from_millis(50);
        while let Err(e) = write(&batch).await {
            tracing::warn!(error = %e, items = batch.len(), "{what}: batch write failed, retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn items_gather_for_the_linger_then_go_in_one_write() {
        let (tx, rx) = mpsc::channel(100);
        let writes: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
        let seen = writes.clone();
        let writer = tokio::spawn(write_batches(
            rx,
            Batching {
                max: 10,
                linger: Duration::from_millis(10),
            },
            "test",
            move |b: &[u32]| {
                seen.lock().unwrap().push(b.to_vec());
                Box::pin(std::future::ready(Ok::<_, std::io::Error>(())))
            },
        ));
        tx.send(1).await.unwrap();
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        tx.send(2).await.unwrap();
        tx.send(3).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // More than `max` waiting: full batches, no linger needed.
        for i in 0..25 {
            tx.send(100 + i).await.unwrap();
        }
        drop(tx);
        writer.await.unwrap();
        let writes = writes.lock().unwrap();
        assert_eq!(writes[0], vec![1, 2, 3]);
        let rest: Vec<u32> = writes[1..].iter().flatten().copied().collect();
        assert_eq!(rest, (100..125).collect::<Vec<_>>());
        assert!(writes[1..].iter().all(|b| b.len() <= 10), "{writes:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_write_is_retried_and_nothing_is_lost() {
        let (tx, rx) = mpsc::channel(100);
        let attempts = Arc::new(Mutex::new(0));
        let written: Arc<Mutex<Vec<u32>>> = Arc::default();
        let (a, w) = (attempts.clone(), written.clone());
        let writer = tokio::spawn(write_batches(
            rx,
            Batching {
                max: 100,
                linger: Duration::ZERO,
            },
            "test",
            move |b: &[u32]| {
                let mut n = a.lock().unwrap();
                *n += 1;
                let r = if *n <= 3 {
                    Err("database down")
                } else {
                    w.lock().unwrap().extend_from_slice(b);
                    Ok(())
                };
                Box::pin(std::future::ready(r))
            },
        ));
        for i in 0..5 {
            tx.send(i).await.unwrap();
        }
        drop(tx);
        writer.await.unwrap();
        assert_eq!(*written.lock().unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(*attempts.lock().unwrap(), 4);
    }
}
