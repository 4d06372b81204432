//! Per-worker measurements (an HDR histogram of successful latencies plus error counts), their
//! merge, and the summary printed at the end of a run.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::Value;

use crate::cpu::CpuUse;

/// Highest latency the histograms track, in microseconds (the per-request timeout is capped
/// below it); slower samples are clamped to it.
pub const MAX_TRACKED_MICROS: u64 = 120_000_000;

/// Three significant figures: 1 µs resolution up to 2 ms, 0.1% relative error above.
const SIGNIFICANT_FIGURES: u8 = 3;

/// What one worker measured. Counts are `u32` per histogram bucket, which keeps a worker's
/// histogram at ~70 KiB; the run's request count is capped well below `u32::MAX`.
#[derive(Debug, Clone)]
pub struct WorkerStats {
    /// Latencies of successful requests, in microseconds.
    latency: Histogram<u32>,
    /// Requests that failed (transport error, timeout, unexpected status or answer).
    errors: u64,
    /// The earliest failure this worker saw and when.
    first_error: Option<(Instant, String)>,
}

impl Default for WorkerStats {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerStats {
    /// An empty record.
    pub fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, SIGNIFICANT_FIGURES)
                .expect("static histogram bounds are valid"),
            errors: 0,
            first_error: None,
        }
    }

    /// Records a successful request that took `elapsed`.
    pub fn success(&mut self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros.max(1));
    }

    /// Records a failed request; the description is kept only for the first failure.
    pub fn failure(&mut self, describe: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some((Instant::now(), describe()));
        }
    }

    /// Successful requests recorded so far.
    pub fn successes(&self) -> u64 {
        self.latency.len()
    }

    /// Failed requests recorded so far.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Folds `other` into `self`: histograms add up, and the earlier first error wins.
    pub fn merge(&mut self, other: &WorkerStats) {
        self.latency
            .add(&other.latency)
            .expect("histograms share the same bounds");
        self.errors += other.errors;
        if let Some((at, what)) = &other.first_error
            && self.first_error.as_ref().is_none_or(|(mine, _)| at < mine)
        {
            self.first_error = Some((*at, what.clone()));
        }
    }

    /// The latency (in microseconds) at `quantile` (0.0–1.0) of the successful requests.
    pub fn quantile_micros(&self, quantile: f64) -> u64 {
        self.latency.value_at_quantile(quantile)
    }

    /// Turns the merged record of a whole run into its summary.
    pub fn summarize(&self, name: &str, elapsed: Duration, concurrency: usize) -> Summary {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let requests = self.successes() + self.errors();
        let secs = elapsed.as_secs_f64();
        Summary {
            name: name.to_owned(),
            requests,
            errors: self.errors,
            duration_s: secs,
            rps: if secs > 0.0 {
                requests as f64 / secs
            } else {
                0.0
            },
            p50_ms: ms(self.quantile_micros(0.50)),
            p90_ms: ms(self.quantile_micros(0.90)),
            p99_ms: ms(self.quantile_micros(0.99)),
            max_ms: ms(self.latency.max()),
            concurrency,
            first_error: self.first_error.as_ref().map(|(_, what)| what.clone()),
            cpu: CpuUse::default(),
        }
    }
}

/// The result of a run, as printed.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Label of the run (`--name`).
    pub name: String,
    /// Completed requests, successful or not.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Wall-clock time from the first request to the last completion.
    pub duration_s: f64,
    /// Completed requests per second.
    pub rps: f64,
    /// Latency percentiles and maximum of the successful requests, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest successful request, ms.
    pub max_ms: f64,
    /// Concurrent workers.
    pub concurrency: usize,
    /// Description of the earliest failure, if any.
    pub first_error: Option<String>,
    /// CPU time the generator (and the server, when its pid was given) used during the run.
    pub cpu: CpuUse,
}

impl Summary {
    /// Fraction of the completed requests that failed (1.0 when nothing completed).
    pub fn error_ratio(&self) -> f64 {
        if self.requests == 0 {
            1.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// This summary with the CPU use of the run.
    pub fn with_cpu(mut self, cpu: CpuUse) -> Self {
        self.cpu = cpu;
        self
    }

    /// CPU microseconds per completed request, from CPU seconds.
    fn per_request_us(&self, cpu_s: Option<f64>) -> Option<f64> {
        cpu_s
            .filter(|_| self.requests > 0)
            .map(|s| s * 1e6 / self.requests as f64)
    }

    /// The generator's CPU microseconds per completed request.
    pub fn generator_us_per_request(&self) -> Option<f64> {
        self.per_request_us(self.cpu.generator_s)
    }

    /// The server's CPU microseconds per completed request (when its pid was given).
    pub fn server_us_per_request(&self) -> Option<f64> {
        self.per_request_us(self.cpu.server_s)
    }

    /// The line for humans.
    pub fn human_line(&self) -> String {
        let mut line = format!(
            "{}  requests={}  errors={}  duration={:.2}s  throughput={:.0} req/s  \
             p50={:.3}ms  p90={:.3}ms  p99={:.3}ms  max={:.3}ms  concurrency={}",
            self.name,
            self.requests,
            self.errors,
            self.duration_s,
            self.rps,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
            self.concurrency,
        );
        if let Some(us) = self.generator_us_per_request() {
            line.push_str(&format!("  generator_cpu={us:.2}us/req"));
        }
        if let Some(us) = self.server_us_per_request() {
            line.push_str(&format!("  server_cpu={us:.2}us/req"));
        }
        line
    }

    /// The machine-readable line: one JSON object, fields in a fixed order, `name` first.
    pub fn json_line(&self) -> String {
        let round = |x: f64, places: i32| {
            let f = 10f64.powi(places);
            Value::from((x * f).round() / f)
        };
        let fields = [
            ("name", Value::from(self.name.as_str())),
            ("requests", Value::from(self.requests)),
            ("errors", Value::from(self.errors)),
            ("duration_s", round(self.duration_s, 3)),
            ("rps", round(self.rps, 1)),
            ("p50_ms", round(self.p50_ms, 3)),
            ("p90_ms", round(self.p90_ms, 3)),
            ("p99_ms", round(self.p99_ms, 3)),
            ("max_ms", round(self.max_ms, 3)),
            ("concurrency", Value::from(self.concurrency)),
        ];
        let cpu = [
            ("generator_cpu_s", self.cpu.generator_s.map(|s| round(s, 3))),
            (
                "generator_cpu_us_per_req",
                self.generator_us_per_request().map(|us| round(us, 2)),
            ),
            ("server_cpu_s", self.cpu.server_s.map(|s| round(s, 3))),
            (
                "server_cpu_us_per_req",
                self.server_us_per_request().map(|us| round(us, 2)),
            ),
        ];
        let fields = fields
            .into_iter()
            .chain(cpu.into_iter().filter_map(|(k, v)| Some((k, v?))));
        let body: Vec<String> = fields
            .map(|(key, value)| format!("\"{key}\":{value}"))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn merged_percentiles_cover_all_workers() {
        // Worker A saw 1..=500 µs, worker B 501..=1000 µs: neither alone has the right p50.
        let mut a = WorkerStats::new();
        let mut b = WorkerStats::new();
        for v in 1..=500 {
            a.success(micros(v));
        }
        for v in 501..=1000 {
            b.success(micros(v));
        }
        assert_eq!(a.quantile_micros(0.5), 250);
        assert_eq!(b.quantile_micros(0.5), 750);

        let mut total = WorkerStats::new();
        total.merge(&a);
        total.merge(&b);
        assert_eq!(total.successes(), 1000);
        assert_eq!(total.quantile_micros(0.50), 500);
        assert_eq!(total.quantile_micros(0.90), 900);
        assert_eq!(total.quantile_micros(0.99), 990);
        assert_eq!(total.quantile_micros(1.0), 1000);

        let s = total.summarize("t", Duration::from_secs(2), 2);
        assert_eq!(s.requests, 1000);
        assert_eq!(s.rps, 500.0);
        assert_eq!(s.p50_ms, 0.5);
        assert_eq!(s.p99_ms, 0.99);
        assert_eq!(s.max_ms, 1.0);
    }

    #[test]
    fn merge_is_order_independent_and_keeps_precision_for_slow_tails() {
        let mut fast = WorkerStats::new();
        let mut slow = WorkerStats::new();
        for _ in 0..99 {
            fast.success(micros(100));
        }
        slow.success(Duration::from_millis(250));
        let mut x = WorkerStats::new();
        x.merge(&fast);
        x.merge(&slow);
        let mut y = WorkerStats::new();
        y.merge(&slow);
        y.merge(&fast);
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(x.quantile_micros(q), y.quantile_micros(q), "q={q}");
        }
        assert_eq!(x.quantile_micros(0.99), 100);
        // 3 significant figures: within 0.1% of 250 ms.
        let max = x.quantile_micros(1.0);
        assert!((249_750..=250_250).contains(&max), "{max}");
    }

    #[test]
    fn errors_add_up_and_the_earliest_first_error_wins() {
        let mut early = WorkerStats::new();
        early.failure(|| "early".into());
        std::thread::sleep(Duration::from_millis(2));
        let mut late = WorkerStats::new();
        late.failure(|| "late".into());
        late.failure(|| unreachable!("only the first description is built"));
        late.success(micros(10));

        let mut total = WorkerStats::new();
        total.merge(&late);
        total.merge(&early);
        let s = total.summarize("t", Duration::from_secs(1), 2);
        assert_eq!((s.requests, s.errors), (4, 3));
        assert_eq!(s.first_error.as_deref(), Some("early"));
        assert_eq!(s.error_ratio(), 0.75);
    }

    #[test]
    fn huge_latencies_are_clamped_not_lost() {
        let mut w = WorkerStats::new();
        w.success(Duration::from_secs(3600));
        assert_eq!(w.successes(), 1);
        assert!(w.quantile_micros(1.0) >= MAX_TRACKED_MICROS * 999 / 1000);
    }

    #[test]
    fn lines_have_the_documented_fields() {
        let mut w = WorkerStats::new();
        w.success(micros(1500));
        let s = w.summarize("login", Duration::from_secs(1), 4);
        let human = s.human_line();
        assert!(human.starts_with(
            "login  requests=1  errors=0  duration=1.00s  throughput=1 req/s  p50=1.500ms"
        ));
        let line = s.json_line();
        assert!(
            line.starts_with(r#"{"name":"login","requests":1,"errors":0,"#),
            "{line}"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["name"], "login");
        assert_eq!(v["rps"], 1.0);
        assert_eq!(v["p50_ms"], 1.5);
        assert_eq!(v["p99_ms"], 1.5);
        assert_eq!(v["errors"], 0);
        assert_eq!(
            WorkerStats::new()
                .summarize("x", Duration::ZERO, 1)
                .error_ratio(),
            1.0
        );
        assert!(v.get("generator_cpu_us_per_req").is_none());

        let s = s.with_cpu(CpuUse {
            generator_s: Some(0.25),
            server_s: Some(1.0),
        });
        assert!(
            s.human_line().ends_with(
                "concurrency=4  generator_cpu=250000.00us/req  server_cpu=1000000.00us/req"
            ),
            "{}",
            s.human_line()
        );
        let v: Value = serde_json::from_str(&s.json_line()).unwrap();
        assert_eq!(v["generator_cpu_s"], 0.25);
        assert_eq!(v["generator_cpu_us_per_req"], 250000.0);
        assert_eq!(v["server_cpu_us_per_req"], 1000000.0);
    }
}
