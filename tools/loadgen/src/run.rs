//! The bounded run: every worker owns one [`Probe`] (its own connection) and they share one
//! request budget and one deadline, whichever is exhausted first ends the run.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::stats::WorkerStats;

/// How long and how much a run may load the target.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// No request is started after this much time.
    pub duration: Duration,
    /// No more than this many requests are started in total.
    pub requests: u64,
    /// A request without an answer after this long counts as an error.
    pub timeout: Duration,
}

/// One worker's way of issuing a request. The worker calls it in a loop, timing each call; the
/// probe owns whatever connection state it needs and re-establishes it itself if it is lost
/// (including when a call is abandoned on timeout and its future dropped).
pub trait Probe: Send + 'static {
    /// Sends one request and checks the answer; `Err` describes why it counts as an error.
    fn call(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// The shared request budget: a deadline and a number of requests, whichever runs out first.
#[derive(Debug)]
pub struct Budget {
    deadline: Instant,
    started: AtomicU64,
    max: u64,
}

impl Budget {
    /// A budget of `limits.requests` requests until `start + limits.duration`.
    pub fn new(start: Instant, limits: &Limits) -> Self {
        Self {
            deadline: start + limits.duration,
            started: AtomicU64::new(0),
            max: limits.requests,
        }
    }

    /// Takes the right to start one more request at `now`, if time and count allow.
    pub fn take(&self, now: Instant) -> bool {
        now < self.deadline && self.started.fetch_add(1, Ordering::Relaxed) < self.max
    }
}

/// Runs one worker until the budget is exhausted.
async fn worker<P: Probe>(mut probe: P, budget: Arc<Budget>, timeout: Duration) -> WorkerStats {
    let mut stats = WorkerStats::new();
    let mut start = Instant::now();
    while budget.take(start) {
        let outcome = tokio::time::timeout(timeout, probe.call()).await;
        // One clock read per request: the end of one is the start of the next.
        let end = Instant::now();
        match outcome {
            Ok(Ok(())) => stats.success(end - start),
            Ok(Err(what)) => stats.failure(|| what),
            Err(_) => stats.failure(|| format!("no answer within {timeout:?}")),
        }
        start = end;
    }
    stats
}

/// Runs one worker per probe (their connections already established, so that setup is not
/// measured) and returns the merged measurements and the wall-clock time from the start to the
/// last completion. In-flight requests at the deadline are allowed to finish (or time out), so
/// a run lasts at most `duration + timeout`.
pub async fn run<P: Probe>(probes: Vec<P>, limits: Limits) -> Result<(WorkerStats, Duration)> {
    let start = Instant::now();
    let budget = Arc::new(Budget::new(start, &limits));
    let workers: Vec<_> = probes
        .into_iter()
        .map(|probe| tokio::spawn(worker(probe, Arc::clone(&budget), limits.timeout)))
        .collect();
    let mut total = WorkerStats::new();
    for w in workers {
        total.merge(&w.await.context("a load worker panicked")?);
    }
    Ok((total, start.elapsed()))
}

/// Runs one task per driver (for the engines where one task drives a whole connection with
/// many requests in flight): `drive(i, budget)` is the future of driver `i`, its connection
/// already established. Returns the merged measurements and the time from the start to the
/// last completion.
pub async fn run_drivers<F, Fut>(
    count: usize,
    limits: Limits,
    mut drive: F,
) -> Result<(WorkerStats, Duration)>
where
    F: FnMut(usize, Arc<Budget>) -> Fut,
    Fut: Future<Output = WorkerStats> + Send + 'static,
{
    let start = Instant::now();
    let budget = Arc::new(Budget::new(start, &limits));
    let drivers: Vec<_> = (0..count)
        .map(|i| tokio::spawn(drive(i, Arc::clone(&budget))))
        .collect();
    let mut total = WorkerStats::new();
    for d in drivers {
        total.merge(&d.await.context("a load driver panicked")?);
    }
    Ok((total, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers after `delay`; every `fail_every`-th call fails.
    struct Fake {
        delay: Duration,
        calls: u64,
        fail_every: u64,
    }

    impl Probe for Fake {
        async fn call(&mut self) -> Result<(), String> {
            self.calls += 1;
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            if self.fail_every != 0 && self.calls.is_multiple_of(self.fail_every) {
                return Err(format!("call {} failed", self.calls));
            }
            Ok(())
        }
    }

    fn fakes(n: usize, delay: Duration, fail_every: u64) -> Vec<Fake> {
        (0..n)
            .map(|_| Fake {
                delay,
                calls: 0,
                fail_every,
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn request_budget_is_exact_across_workers() {
        let limits = Limits {
            duration: Duration::from_secs(30),
            requests: 1000,
            timeout: Duration::from_secs(5),
        };
        let (stats, elapsed) = run(fakes(7, Duration::ZERO, 10), limits).await.unwrap();
        assert_eq!(stats.successes() + stats.errors(), 1000);
        assert!(stats.errors() > 0);
        assert!(elapsed < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn duration_bounds_the_run() {
        let limits = Limits {
            duration: Duration::from_millis(200),
            requests: u64::MAX,
            timeout: Duration::from_secs(5),
        };
        let (stats, elapsed) = run(fakes(4, Duration::from_millis(10), 0), limits)
            .await
            .unwrap();
        assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
        assert!(stats.successes() >= 4 * 10, "{}", stats.successes());
        assert_eq!(stats.errors(), 0);
    }

    #[tokio::test]
    async fn a_hung_request_times_out_as_an_error() {
        let limits = Limits {
            duration: Duration::from_millis(50),
            requests: 1,
            timeout: Duration::from_millis(100),
        };
        let (stats, elapsed) = run(fakes(1, Duration::from_secs(3600), 0), limits)
            .await
            .unwrap();
        assert_eq!((stats.successes(), stats.errors()), (0, 1));
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
        let s = stats.summarize("t", elapsed, 1);
        assert!(s.first_error.unwrap().starts_with("no answer within"));
    }
}
