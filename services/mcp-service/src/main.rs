//! mcp-service binary: configuration → logs → `app::start` → serve until SIGTERM/Ctrl-C; and
//! `check-config`.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcp_service::config::Config;

#[derive(Parser)]
#[command(
    name = "mcp-service",
    version,
    about = "mcpauth MCP server: an OAuth protected resource"
)]
struct Cli {
    /// TOML configuration file; default: $MCPAUTH_MCP_CONFIG (or the older $MCPAUTH_CONFIG).
    /// Environment variables MCPAUTH_MCP__… override it.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, PartialEq, Eq)]
enum Command {
    /// Serve the MCP endpoint (the default).
    Serve,
    /// Check the configuration and exit.
    CheckConfig,
    /// Exit 0 iff GET /readyz answers 200 on the admin listener (else the HTTP listener):
    /// container probes.
    Healthcheck,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    let env: HashMap<String, String> = std::env::vars().collect();
    let (file, legacy_file) =
        mcpauth_runtime::service_env::MCP.config_file(cli.config.as_deref(), &env);
    let (config, mut env_report) = match Config::load_reporting(file.as_deref(), &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mcp-service: {e}");
            return ExitCode::from(2);
        }
    };
    env_report.legacy_config_file = legacy_file;
    match command {
        Command::CheckConfig => {
            println!("configuration ok");
            return ExitCode::SUCCESS;
        }
        Command::Healthcheck => {
            return mcpauth_runtime::healthcheck::run("mcp-service", Ok(config.health_addr()));
        }
        Command::Serve => {}
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mcp-service: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Logs, and traces when telemetry.otlp_endpoint is set (the exporter lives on the runtime).
    let mut telemetry = {
        let _rt = runtime.enter();
        match mcpauth_runtime::telemetry::init("mcp-service", &config.log, &config.telemetry) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("mcp-service: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    env_report.warn();
    let result = runtime.block_on(async move {
        let running = mcp_service::app::start(config, mcpauth_runtime::init_metrics()).await?;
        running.run_until(mcpauth_runtime::shutdown_signal()).await;
        Ok::<(), anyhow::Error>(())
    });
    // Export the spans still queued while the runtime (the exporter's channel) still runs.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}
