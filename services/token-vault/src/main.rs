//! token-vault binary: configuration → logs → `app::start` → serve until SIGTERM/Ctrl-C; and
//! the operator commands (migrate, rekey, generate-key, hash-secret, check-config). The shared
//! mechanics are `mcpauth_runtime::bootstrap`'s.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcpauth_runtime::bootstrap::{read_stdin_secret, sha256_hex};
use mcpauth_runtime::{Bootstrap, CommonCommand};
use token_vault::config::{Config, MigrateConfig};

const BOOTSTRAP: Bootstrap = Bootstrap {
    name: "token-vault",
    env: mcpauth_runtime::service_env::VAULT,
};

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
    #[command(flatten)]
    Common(CommonCommand),
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Common(CommonCommand::Serve));
    match command {
        Command::GenerateKey => {
            println!("{}", token_vault::crypto::generate_key());
            ExitCode::SUCCESS
        }
        Command::HashSecret => {
            println!("{}", sha256_hex(&read_stdin_secret()));
            ExitCode::SUCCESS
        }
        // `migrate` needs the database only: a migration Job has no encryption keys to give.
        Command::Migrate => {
            let (config, env_report) =
                match BOOTSTRAP.load(cli.config.as_deref(), MigrateConfig::load_reporting) {
                    Ok(c) => c,
                    Err(exit) => return exit,
                };
            BOOTSTRAP.run(
                config,
                |c| (&c.log, &c.telemetry),
                env_report,
                |config| async move {
                    let pool =
                        token_vault::store::connect_postgres(config.database.url.expose(), 2)
                            .await?;
                    token_vault::store::migrate(&pool).await?;
                    tracing::info!("migrations applied");
                    Ok::<(), anyhow::Error>(())
                },
            )
        }
        Command::Rekey { batch } => {
            let (config, env_report) =
                match BOOTSTRAP.load(cli.config.as_deref(), Config::load_reporting) {
                    Ok(c) => c,
                    Err(exit) => return exit,
                };
            BOOTSTRAP.run(
                config,
                |c| (&c.log, &c.telemetry),
                env_report,
                |config| rekey(config, batch),
            )
        }
        Command::Common(command) => {
            let (config, env_report) =
                match BOOTSTRAP.load(cli.config.as_deref(), Config::load_reporting) {
                    Ok(c) => c,
                    Err(exit) => return exit,
                };
            if let Some(exit) = BOOTSTRAP.answer(command, || config.health_addr()) {
                return exit;
            }
            BOOTSTRAP.run(
                config,
                |c| (&c.log, &c.telemetry),
                env_report,
                |config| async move {
                    let metrics = mcpauth_runtime::init_metrics();
                    let running = token_vault::app::start(config, metrics).await?;
                    running.run_until(mcpauth_runtime::shutdown_signal()).await;
                    tracing::info!("token-vault stopped");
                    Ok::<(), anyhow::Error>(())
                },
            )
        }
    }
}

/// `rekey`: every credential re-encrypted under the current key, in batches of `batch`.
async fn rekey(config: Config, batch: i64) -> anyhow::Result<()> {
    let keys = config.key_ring()?;
    let pool = token_vault::store::connect_postgres(config.database.url.expose(), 2).await?;
    let store = token_vault::store::credentials::PostgresCredentials::new(pool);
    let report = token_vault::rekey::rekey(&store, &keys, batch.clamp(1, 10_000), |line| {
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
    for (key, count) in token_vault::store::CredentialStore::count_by_key(&store).await? {
        println!("  key {key:?}: {count} records");
    }
    if report.failed > 0 || report.skipped > 0 {
        anyhow::bail!("some records were not re-encrypted");
    }
    Ok(())
}
