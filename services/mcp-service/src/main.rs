//! mcp-service binary: configuration → logs → `app::start` → serve until SIGTERM/Ctrl-C; and
//! `check-config`. The shared mechanics are `mcpauth_runtime::bootstrap`'s.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcp_service::config::Config;
use mcpauth_runtime::{Bootstrap, CommonCommand};

const BOOTSTRAP: Bootstrap = Bootstrap {
    name: "mcp-service",
    env: mcpauth_runtime::service_env::MCP,
};

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
    #[command(flatten)]
    Common(CommonCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Common(command) = cli.command.unwrap_or(Command::Common(CommonCommand::Serve));
    let (config, env_report) = match BOOTSTRAP.load(cli.config.as_deref(), Config::load_reporting) {
        Ok(c) => c,
        Err(exit) => return exit,
    };
    if let Some(exit) = BOOTSTRAP.answer(command, || Ok(config.health_addr())) {
        return exit;
    }
    BOOTSTRAP.run(
        config,
        |c| (&c.log, &c.telemetry),
        env_report,
        |config| async move {
            let running = mcp_service::app::start(config, mcpauth_runtime::init_metrics()).await?;
            running.run_until(mcpauth_runtime::shutdown_signal()).await;
            tracing::info!("mcp-service stopped");
            Ok::<(), anyhow::Error>(())
        },
    )
}
