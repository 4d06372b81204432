//! What every mcpauth service starts with: layered configuration, structured logs, traces,
//! Prometheus metrics and shutdown signals. Services call these from `main.rs`; nothing here knows about OAuth.
#![forbid(unsafe_code)]

use std::fmt;

use serde::{Deserialize, Deserializer};

pub mod batch;
pub mod bootstrap;
pub mod bus;
pub mod external;
pub mod grpc_client;
pub mod grpc_metrics;
pub mod healthcheck;
pub mod http_body;
pub mod introspection;
pub mod jwks;
pub mod ops;
pub mod per_thread;
pub mod pool_metrics;
pub mod pubsub;
pub mod redis_conn;
pub mod revocation;
pub mod service_env;
pub mod telemetry;
pub use bootstrap::{Bootstrap, CommonCommand};
pub use grpc_client::{
    CallerCredential, GrpcClientTls, grpc_channel, grpc_client_endpoint, grpc_endpoint,
    grpc_plaintext_check,
};
pub use grpc_metrics::GrpcServerMetricsLayer;
pub use ops::{AdminConfig, Drain, ShutdownConfig};
pub use per_thread::PerThread;
pub use redis_conn::{RedisTls, redis_client, redis_pool, start_redis};
pub use service_env::{EnvReport, ServiceEnv};
pub use telemetry::{Telemetry, TelemetryConfig};

/// A configuration that could not be loaded, rendered as one line naming the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// A semantic error found after parsing, e.g. `tokens.keys: at least one key is required`.
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// A secret value from configuration. `Debug` and `Display` never show it; it can be given
/// inline or as `file:/path/to/secret` (a Kubernetes secret mount), read at load time.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (tests and generated secrets).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself. Call sites that use it are the ones to review.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        resolve_file(raw, "secret file").map(Secret)
    }
}

/// `file:/path` → the file's content without its trailing newline; anything else as given.
fn resolve_file<E: serde::de::Error>(raw: String, what: &str) -> Result<String, E> {
    match raw.strip_prefix("file:") {
        Some(path) => std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
            .map_err(|e| E::custom(format!("cannot read {what} {path}: {e}"))),
        None => Ok(raw),
    }
}

/// For `#[serde(deserialize_with)]` on a string that is not secret but may be generated into a
/// file next to the secrets, such as a caller's `credential_sha256`: inline, or `file:/path`
/// read at load time like a [`Secret`].
pub fn string_or_file<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    resolve_file(String::deserialize(d)?, "file")
}

/// Log output format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (production).
    #[default]
    Json,
    /// Human-readable lines (a developer's terminal).
    Pretty,
}

/// Logging settings shared by every service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter directive, e.g. `info,auth_service=debug`. `RUST_LOG` wins when set.
    pub filter: String,
    /// `json` or `pretty`.
    pub format: LogFormat,
}

/// Installs the global tracing subscriber (logs only; [`telemetry::init`] adds traces). Call
/// once, early in `main`.
pub fn init_logging(service: &'static str, cfg: &LogConfig) {
    telemetry::init_logs_only(service, cfg);
}

/// The process-wide Prometheus recorder; `render()` is served at `/metrics`.
pub type MetricsHandle = metrics_exporter_prometheus::PrometheusHandle;

/// Installs the Prometheus recorder (once per process; later calls return the same handle).
pub fn init_metrics() -> MetricsHandle {
    use std::sync::OnceLock;
    static HANDLE: OnceLock<MetricsHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5,
                ])
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (several services in one test process):
            // the handle still renders this recorder's metrics for the first caller.
            let _ = metrics::set_global_recorder(recorder);
            spawn_metrics_upkeep(handle.clone(), METRICS_UPKEEP);
            handle
        })
        .clone()
}

/// How often histogram samples are folded into their buckets when nothing scrapes `/metrics`.
pub const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The exporter buffers every histogram sample until a scrape or an upkeep folds it into the
/// buckets; built with `build_recorder` it runs no upkeep of its own, so a service that nobody
/// scrapes grew by ~17 bytes per request, without bound. A thread runs it every `every`.
fn spawn_metrics_upkeep(handle: MetricsHandle, every: std::time::Duration) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms grow until scraped");
    }
}

/// Resolves when the process receives SIGINT (Ctrl-C) or SIGTERM (Kubernetes pod stop).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received, draining");
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;

    /// The loader of a service whose own prefix is `MCPAUTH_TEST`.
    fn load_config<T: serde::de::DeserializeOwned>(
        defaults: &str,
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<T, ConfigError> {
        const TEST: ServiceEnv = ServiceEnv {
            prefix: "MCPAUTH_TEST",
        };
        TEST.load(defaults, file, env).map(|(t, _)| t)
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        http: Http,
        secret: Secret,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Http {
        addr: String,
        workers: u16,
    }

    const DEFAULTS: &str = "secret = \"s3cr3t\"\n[http]\naddr = \"127.0.0.1:1\"\nworkers = 2\n";

    #[test]
    fn environment_overrides_defaults() {
        let env = HashMap::from([("MCPAUTH_TEST__HTTP__WORKERS".to_owned(), "8".to_owned())]);
        let s: Sample = load_config(DEFAULTS, None, &env).unwrap();
        assert_eq!(s.http.workers, 8);
        assert_eq!(s.http.addr, "127.0.0.1:1");
    }

    #[test]
    fn bad_value_names_the_key_in_one_line() {
        let env = HashMap::from([("MCPAUTH_TEST__HTTP__WORKERS".to_owned(), "many".to_owned())]);
        let err = load_config::<Sample>(DEFAULTS, None, &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.workers"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn unknown_key_is_refused() {
        let env = HashMap::from([("MCPAUTH_TEST__HTTP__WORKRES".to_owned(), "8".to_owned())]);
        let err = load_config::<Sample>(DEFAULTS, None, &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("workres"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let s: Sample = load_config(DEFAULTS, None, &HashMap::new()).unwrap();
        assert_eq!(format!("{:?}", s.secret), "[redacted]");
        assert_eq!(s.secret.expose(), "s3cr3t");
    }

    #[test]
    fn string_or_file_reads_a_file_or_takes_the_value() {
        #[derive(Debug, Deserialize)]
        struct Hashed {
            #[serde(deserialize_with = "string_or_file")]
            sha: String,
        }
        let path = std::env::temp_dir().join(format!("mcpauth-sha-{}", std::process::id()));
        std::fs::write(&path, "abc123\n").unwrap();
        let env = |v: String| HashMap::from([("MCPAUTH__SHA".to_owned(), v)]);
        let h: Hashed = load_config("", None, &env(format!("file:{}", path.display()))).unwrap();
        assert_eq!(h.sha, "abc123");
        let h: Hashed = load_config("", None, &env("def456".into())).unwrap();
        assert_eq!(h.sha, "def456");
        let _ = std::fs::remove_file(&path);
        let e = load_config::<Hashed>("", None, &env(format!("file:{}", path.display())))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read file"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn secret_from_file() {
        let dir = std::env::temp_dir().join(format!("mcpauth-secret-{}", std::process::id()));
        std::fs::write(&dir, "from-file\n").unwrap();
        let env = HashMap::from([(
            "MCPAUTH_TEST__SECRET".to_owned(),
            format!("file:{}", dir.display()),
        )]);
        let s: Sample = load_config(DEFAULTS, None, &env).unwrap();
        assert_eq!(s.secret.expose(), "from-file");
        let _ = std::fs::remove_file(dir);
    }

    /// Resident memory of this process (nextest runs each test in a process of its own).
    fn rss_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    /// 3 million histogram samples with nothing scraping: buffered they would take 24 MB (8 bytes
    /// each, the exporter's sample blocks); with the upkeep folding them into buckets memory
    /// stays flat.
    #[test]
    fn histograms_do_not_grow_without_a_scrape() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&[0.001, 0.01, 0.1])
            .unwrap()
            .build_recorder();
        spawn_metrics_upkeep(recorder.handle(), std::time::Duration::from_millis(50));
        metrics::with_local_recorder(&recorder, || {
            let h = metrics::histogram!("upkeep_test_seconds", "route" => "/token");
            h.record(0.002); // the first block is allocated before the baseline
            std::thread::sleep(std::time::Duration::from_millis(50));
            let before = rss_bytes();
            for _ in 0..30 {
                for i in 0..100_000 {
                    h.record(f64::from(i % 100) / 1000.0);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let grown = rss_bytes().saturating_sub(before);
            assert!(grown < 8 << 20, "RSS grew {} KiB", grown >> 10);
        });
        // Folded, not dropped. (metrics-util's bucket drain racing concurrent records loses a
        // few samples — 21 to 12,000 of 3,000,001 in runs here with a 5 ms upkeep, as it does on
        // every scrape; at the 5 s upkeep of the services that is far rarer. The bound allows
        // 1%.)
        let text = recorder.handle().render();
        let count: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("upkeep_test_seconds_count{route=\"/token\"} "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {text}"));
        assert!((2_970_000..=3_000_001).contains(&count), "{count}");
    }
}
