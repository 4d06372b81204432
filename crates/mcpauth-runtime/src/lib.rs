//! What every mcpauth service starts with: layered configuration, structured logs, traces,
//! Prometheus metrics and shutdown signals. Services call these from `main.rs`; nothing here knows about OAuth.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

pub mod batch;
pub mod grpc_client;
pub mod grpc_metrics;
pub mod per_thread;
pub mod pool_metrics;
pub mod pubsub;
pub mod redis_conn;
pub mod telemetry;
pub use grpc_client::{GrpcClientTls, grpc_channel, grpc_endpoint};
pub use grpc_metrics::GrpcServerMetricsLayer;
pub use per_thread::PerThread;
pub use redis_conn::{RedisTls, redis_client, redis_pool, start_redis};
pub use telemetry::{Telemetry, TelemetryConfig};

/// Prefix of environment variables that override configuration (`MCPAUTH__HTTP__ADDR`).
pub const ENV_PREFIX: &str = "MCPAUTH";

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

/// Loads a typed configuration: built-in `defaults` (TOML text) → optional `file` (TOML) →
/// environment variables `MCPAUTH__SECTION__KEY`. The environment is passed in so that tests
/// never mutate the process environment.
pub fn load_config<T: DeserializeOwned>(
    defaults: &str,
    file: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<T, ConfigError> {
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(defaults, config::FileFormat::Toml));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    let env_source = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .source(Some(
            env.iter()
                .filter(|(k, _)| k.starts_with("MCPAUTH__"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ));
    builder = builder.add_source(env_source);
    let cfg = builder
        .build()
        .map_err(|e| ConfigError(one_line(&e.to_string())))?;
    cfg.try_deserialize::<T>()
        .map_err(|e| ConfigError(one_line(&e.to_string())))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
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
        match raw.strip_prefix("file:") {
            Some(path) => std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|e| {
                    serde::de::Error::custom(format!("cannot read secret file {path}: {e}"))
                }),
            None => Ok(Secret(raw)),
        }
    }
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
            handle
        })
        .clone()
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
    use super::*;

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
        let env = HashMap::from([("MCPAUTH__HTTP__WORKERS".to_owned(), "8".to_owned())]);
        let s: Sample = load_config(DEFAULTS, None, &env).unwrap();
        assert_eq!(s.http.workers, 8);
        assert_eq!(s.http.addr, "127.0.0.1:1");
    }

    #[test]
    fn bad_value_names_the_key_in_one_line() {
        let env = HashMap::from([("MCPAUTH__HTTP__WORKERS".to_owned(), "many".to_owned())]);
        let err = load_config::<Sample>(DEFAULTS, None, &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.workers"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn unknown_key_is_refused() {
        let env = HashMap::from([("MCPAUTH__HTTP__WORKRES".to_owned(), "8".to_owned())]);
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
    fn secret_from_file() {
        let dir = std::env::temp_dir().join(format!("mcpauth-secret-{}", std::process::id()));
        std::fs::write(&dir, "from-file\n").unwrap();
        let env = HashMap::from([(
            "MCPAUTH__SECRET".to_owned(),
            format!("file:{}", dir.display()),
        )]);
        let s: Sample = load_config(DEFAULTS, None, &env).unwrap();
        assert_eq!(s.secret.expose(), "from-file");
        let _ = std::fs::remove_file(dir);
    }
}
