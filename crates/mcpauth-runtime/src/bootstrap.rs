//! The body every service binary shares: configuration → async runtime → logs and traces →
//! the command → exported spans → exit code. Each `main.rs` keeps only its own commands and
//! what its `serve` starts; the order and the exit codes stay the same in all three:
//!
//! - `2`: the configuration does not load (one line naming the key, on stderr);
//! - `1`: the runtime, telemetry or the command itself failed (logged, and on stderr);
//! - `0`: done.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use crate::{ConfigError, EnvReport, LogConfig, ServiceEnv, TelemetryConfig};

/// The subcommands every service has; `#[command(flatten)]` them into the service's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum CommonCommand {
    /// Serve (the default).
    Serve,
    /// Check the configuration and exit.
    CheckConfig,
    /// Exit 0 iff GET /readyz answers 200 on the admin listener (else the HTTP listener):
    /// container probes.
    Healthcheck,
}

/// One service binary: its name (the prefix of every line it prints) and its environment.
#[derive(Debug, Clone, Copy)]
pub struct Bootstrap {
    pub name: &'static str,
    pub env: ServiceEnv,
}

/// A configuration that carries the logging and telemetry settings.
pub type LogsOf<C> = fn(&C) -> (&LogConfig, &TelemetryConfig);

impl Bootstrap {
    /// Loads the configuration named by `--config` (`flag`), `<PREFIX>_CONFIG` or the older
    /// `MCPAUTH_CONFIG`, with the process environment, through `load` (the service's
    /// `load_reporting`). A configuration that does not load is one line on stderr and exit 2.
    pub fn load<C>(
        &self,
        flag: Option<&Path>,
        load: impl FnOnce(
            Option<&Path>,
            &HashMap<String, String>,
        ) -> Result<(C, EnvReport), ConfigError>,
    ) -> Result<(C, EnvReport), ExitCode> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let (file, legacy_file) = self.env.config_file(flag, &env);
        match load(file.as_deref(), &env) {
            Ok((config, mut report)) => {
                report.legacy_config_file = legacy_file;
                Ok((config, report))
            }
            Err(e) => {
                eprintln!("{}: {e}", self.name);
                Err(ExitCode::from(2))
            }
        }
    }

    /// `check-config` and `healthcheck`, once the configuration loaded: `Some(exit code)`
    /// when `command` was one of them, `None` for `serve`. `health` is the address to probe.
    pub fn answer(
        &self,
        command: CommonCommand,
        health: impl FnOnce() -> Result<SocketAddr, String>,
    ) -> Option<ExitCode> {
        match command {
            CommonCommand::Serve => None,
            CommonCommand::CheckConfig => {
                println!("configuration ok");
                Some(ExitCode::SUCCESS)
            }
            CommonCommand::Healthcheck => Some(crate::healthcheck::run(self.name, health())),
        }
    }

    /// Runs `body` with `config` on a multi-threaded runtime, with rustls' ring provider
    /// installed, logs (and traces when `telemetry.otlp_endpoint` is set) from `logs(&config)`,
    /// and the environment warnings of `report` logged first. Spans still queued are exported
    /// before the runtime stops; an error is logged and printed, with its causes, as exit 1.
    pub fn run<C, E, F>(
        &self,
        config: C,
        logs: LogsOf<C>,
        report: EnvReport,
        body: impl FnOnce(C) -> F,
    ) -> ExitCode
    where
        E: Display,
        F: Future<Output = Result<(), E>>,
    {
        let name = self.name;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{name}: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        // The trace exporter lives on the runtime.
        let mut telemetry = {
            let _rt = runtime.enter();
            let (log, traces) = logs(&config);
            match crate::telemetry::init(name, log, traces) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{name}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        };
        report.warn();
        let result = runtime.block_on(body(config));
        // Export the spans still queued while the runtime (the exporter's channel) still runs.
        telemetry.shutdown();
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "{name} failed");
                eprintln!("{name}: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

/// A secret typed or piped on stdin (`hash-secret`, `hash-password`), without its line end.
pub fn read_stdin_secret() -> String {
    let mut s = String::new();
    let _ = std::io::stdin().read_to_string(&mut s);
    s.trim_end_matches(['\r', '\n']).to_owned()
}

/// Lower-case hex SHA-256 of `secret`: what `grpc.callers` (and auth-service's `clients`) list.
pub fn sha256_hex(secret: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_matches_the_dev_credential_hash() {
        assert_eq!(
            sha256_hex(crate::grpc_client::DEV_SERVICE_CREDENTIAL),
            crate::grpc_client::DEV_SERVICE_CREDENTIAL_SHA256
        );
    }

    #[test]
    fn check_config_answers_and_serve_does_not() {
        let b = Bootstrap {
            name: "test-service",
            env: crate::service_env::MCP,
        };
        assert_eq!(
            b.answer(CommonCommand::CheckConfig, || unreachable!()),
            Some(ExitCode::SUCCESS)
        );
        assert_eq!(b.answer(CommonCommand::Serve, || unreachable!()), None);
    }

    #[test]
    fn a_failed_body_is_exit_1() {
        let b = Bootstrap {
            name: "test-service",
            env: crate::service_env::MCP,
        };
        let logs: LogsOf<(LogConfig, TelemetryConfig)> = |c| (&c.0, &c.1);
        let config = || {
            (
                LogConfig {
                    filter: "off".into(),
                    format: crate::LogFormat::Json,
                },
                TelemetryConfig::default(),
            )
        };
        let failed = b.run(config(), logs, EnvReport::default(), |_| async {
            Err::<(), _>("it broke")
        });
        assert_eq!(failed, ExitCode::FAILURE);
    }
}
