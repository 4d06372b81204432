//! token-vault binary: configuration → logs → `app::start` → serve until SIGTERM/Ctrl-C; and
//! the operator commands (migrate, rekey, generate-key, hash-secret, check-config).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use token_vault::config::{Config, MigrateConfig};

#[derive(Parser)]
#[command(
    name = "token-vault",
    version,
    about = "mcpauth token vault: users' upstream credentials, encrypted and refreshed"
)]
struct Cli {
    /// TOML configuration file; default: $MCPAUTH_VAULT_CONFIG (or the older $MCPAUTH_CONFIG).
    /// Environment variables MCPAUTH_VAULT__… override it.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Apply database migrations, then exit (reads only the database, log and telemetry settings).
    Migrate,
    /// Re-encrypt every credential under encryption.current_key (resumable), then exit.
    Rekey {
        /// Records per batch.
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
    /// Print a new random 256-bit encryption key (base64), for encryption.keys.
    GenerateKey,
    /// Print the SHA-256 (hex) of a credential read from stdin, for grpc.callers.
    HashSecret,
    /// Check the configuration and exit.
    CheckConfig,
    /// Exit 0 iff the admin listener (admin.addr) answers GET /readyz with 200 (container probes).
    Healthcheck,
}

/// The configuration a command needs.
enum Loaded {
    Full(Box<Config>),
    Migrate(MigrateConfig),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    match command {
        Command::GenerateKey => {
            println!("{}", token_vault::crypto::generate_key());
            return ExitCode::SUCCESS;
        }
        Command::HashSecret => {
            let mut s = String::new();
            let _ = std::io::stdin().read_to_string(&mut s);
            let s = s.trim_end_matches(['\r', '\n']);
            println!(
                "{}",
                token_vault::crypto::hex(&token_vault::crypto::sha256(s))
            );
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    let (file, legacy_file) =
        mcpauth_runtime::service_env::VAULT.config_file(cli.config.as_deref(), &env);
    // `migrate` needs the database only: a migration Job has no encryption keys to give.
    let loaded = if matches!(command, Command::Migrate) {
        MigrateConfig::load_reporting(file.as_deref(), &env).map(|(c, r)| (Loaded::Migrate(c), r))
    } else {
        Config::load_reporting(file.as_deref(), &env).map(|(c, r)| (Loaded::Full(Box::new(c)), r))
    };
    let (config, mut env_report) = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("token-vault: {e}");
            return ExitCode::from(2);
        }
    };
    env_report.legacy_config_file = legacy_file;
    if matches!(command, Command::CheckConfig) {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    if let (Command::Healthcheck, Loaded::Full(config)) = (&command, &config) {
        return mcpauth_runtime::healthcheck::run("token-vault", config.health_addr());
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("token-vault: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Logs, and traces when telemetry.otlp_endpoint is set (the exporter lives on the runtime).
    let mut telemetry = {
        let _rt = runtime.enter();
        let (log, traces) = match &config {
            Loaded::Full(c) => (&c.log, &c.telemetry),
            Loaded::Migrate(c) => (&c.log, &c.telemetry),
        };
        match mcpauth_runtime::telemetry::init("token-vault", log, traces) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("token-vault: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    env_report.warn();
    let result = runtime.block_on(async move {
        let config = match config {
            Loaded::Migrate(config) => {
                let pool =
                    token_vault::store::connect_postgres(config.database.url.expose(), 2).await?;
                token_vault::store::migrate(&pool).await?;
                tracing::info!("migrations applied");
                return Ok(());
            }
            Loaded::Full(config) => *config,
        };
        match command {
            Command::Rekey { batch } => {
                let keys = config.key_ring()?;
                let pool =
                    token_vault::store::connect_postgres(config.database.url.expose(), 2).await?;
                let store = token_vault::store::credentials::PostgresCredentials::new(pool);
                let report =
                    token_vault::rekey::rekey(&store, &keys, batch.clamp(1, 10_000), |line| {
                        println!("{line}")
                    })
                    .await?;
                println!(
                    "rekey done: {} re-encrypted under {:?}, {} changed meanwhile (run again), {} unreadable",
                    report.resealed,
                    keys.current_id(),
                    report.skipped,
                    report.failed
                );
                for (key, count) in
                    token_vault::store::CredentialStore::count_by_key(&store).await?
                {
                    println!("  key {key:?}: {count} records");
                }
                if report.failed > 0 || report.skipped > 0 {
                    anyhow::bail!("some records were not re-encrypted");
                }
                Ok(())
            }
            _ => {
                let metrics = mcpauth_runtime::init_metrics();
                let running = token_vault::app::start(config, metrics).await?;
                running.run_until(mcpauth_runtime::shutdown_signal()).await;
                tracing::info!("token-vault stopped");
                Ok::<(), anyhow::Error>(())
            }
        }
    });
    // Export the spans still queued while the runtime (the exporter's channel) still runs.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "token-vault failed");
            eprintln!("token-vault: {e:#}");
            ExitCode::FAILURE
        }
    }
}
