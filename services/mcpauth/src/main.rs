//! `mcpauth`: the whole product in one process, for trying it and for development.
//!
//! `mcpauth dev` starts auth-service, token-vault and mcp-service in this process on the ports of
//! `make run-stack`, with embedded storage: a SQLite file per service under a data directory (it
//! survives a restart) and in-process replacements for what Redis holds in production (pending
//! authorizations, codes, sessions, rate-limit windows, locks, events). Single replica by
//! construction: production runs the three services on Postgres + Redis (docs/architecture.md).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod dev;

#[derive(Parser)]
#[command(
    name = "mcpauth",
    version,
    about = "mcpauth in one process: auth-service, token-vault and mcp-service with embedded storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the three services in this process with embedded storage (no Postgres, no Redis).
    /// Dev only: a single replica, data on local disk.
    Dev(DevArgs),
}

#[derive(clap::Args)]
pub struct DevArgs {
    /// Where the embedded databases, the generated token key and the effective configurations
    /// live (created if needed).
    #[arg(long, env = "MCPAUTH_DEV_DATA_DIR", default_value = ".mcpauth-dev")]
    pub data_dir: PathBuf,
    /// auth-service configuration (default: the built-in dev configuration of `config/dev.toml`
    /// with a persistent token key). MCPAUTH_AUTH__… variables override it.
    #[arg(long)]
    pub auth_config: Option<PathBuf>,
    /// token-vault configuration (default: `config/token-vault.dev.toml`). MCPAUTH_VAULT__…
    /// variables override it.
    #[arg(long)]
    pub vault_config: Option<PathBuf>,
    /// mcp-service configuration (default: `config/mcp-service.dev.toml`). MCPAUTH_MCP__…
    /// variables override it.
    #[arg(long)]
    pub mcp_config: Option<PathBuf>,
    /// Start even though a configuration is not in dev mode. The embedded mode is one process on
    /// local disk: no second replica can share its state, and it has no backups. Never production.
    #[arg(long)]
    pub force_embedded: bool,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Dev(args) => dev::run(args),
    }
}
