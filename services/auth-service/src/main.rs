//! auth-service binary: configuration → telemetry → `app::start` → serve until SIGTERM/Ctrl-C.
//! The shared mechanics are `mcpauth_runtime::bootstrap`'s.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use auth_service::config::{Config, MigrateConfig};
use clap::{Parser, Subcommand};
use mcpauth_runtime::bootstrap::{read_stdin_secret, sha256_hex};
use mcpauth_runtime::{Bootstrap, CommonCommand};

const BOOTSTRAP: Bootstrap = Bootstrap {
    name: "auth-service",
    env: mcpauth_runtime::service_env::AUTH,
};

#[derive(Parser)]
#[command(
    name = "auth-service",
    version,
    about = "mcpauth OAuth 2.1 authorization server for MCP"
)]
struct Cli {
    /// TOML configuration file; default: $MCPAUTH_AUTH_CONFIG (or the older $MCPAUTH_CONFIG).
    /// Environment variables MCPAUTH_AUTH__… override it.
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
    /// Print the SHA-256 (hex) of a secret read from stdin, for `grpc.callers` and `clients`.
    HashSecret,
    /// Print an argon2id hash of a password read from stdin, for `login.users`.
    HashPassword,
    /// Print a new random 256-bit token key (base64), for `tokens.keys`.
    GenerateKey,
    /// Incident response for one user, with this service's configuration (Postgres and Redis
    /// directly; audited). Prints a JSON summary. See docs/operations.md.
    Admin {
        #[command(subcommand)]
        action: AdminCommand,
    },
    /// Generate the keys and service credentials a single-host deployment needs into DIR, once.
    InitSecrets {
        /// Directory of the generated files (created if needed; existing files are kept).
        #[arg(long)]
        dir: PathBuf,
        /// NAME=postgres://USER@HOST:PORT/DB: also write file NAME with a generated password.
        #[arg(long = "database-url", value_parser = auth_service::init_secrets::parse_database_url)]
        database_urls: Vec<(String, String)>,
        /// A local login user; its password comes from $MCPAUTH_INIT_USER_PASSWORD.
        #[arg(long)]
        user: Option<String>,
    },
}

// The variant names are the subcommands (`revoke-user`, `disable-user`, `enable-user`).
#[allow(clippy::enum_variant_names)]
#[derive(Subcommand, Clone)]
enum AdminCommand {
    /// Revoke every grant, refresh and access token, consent and browser session of a user.
    RevokeUser {
        #[command(flatten)]
        target: AdminTarget,
        /// Also delete the user's upstream credentials in token-vault (auth-service's
        /// credential at token-vault then needs the `admin` permission).
        #[arg(long)]
        vault: bool,
    },
    /// Disable a user (no sign-in code, no token) and revoke everything it holds.
    DisableUser {
        #[command(flatten)]
        target: AdminTarget,
        /// Also delete the user's upstream credentials in token-vault.
        #[arg(long)]
        vault: bool,
    },
    /// Re-enable a disabled user (nothing revoked comes back).
    EnableUser {
        #[command(flatten)]
        target: AdminTarget,
    },
}

#[derive(clap::Args, Clone)]
struct AdminTarget {
    /// The user: its id, `local:USERNAME`, or `ISSUER#SUBJECT` of its upstream identity.
    #[arg(long)]
    user: String,
    /// Recorded in the audit trail (e.g. an incident number).
    #[arg(long, default_value = "")]
    reason: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Common(CommonCommand::Serve));
    match command {
        Command::HashSecret => {
            println!("{}", sha256_hex(&read_stdin_secret()));
            ExitCode::SUCCESS
        }
        Command::HashPassword => {
            println!(
                "{}",
                auth_service::login::hash_password(&read_stdin_secret())
            );
            ExitCode::SUCCESS
        }
        Command::GenerateKey => {
            let mut key = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
                .expect("randomness");
            println!(
                "{}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key)
            );
            ExitCode::SUCCESS
        }
        Command::InitSecrets {
            dir,
            database_urls,
            user,
        } => {
            let password = std::env::var(auth_service::init_secrets::USER_PASSWORD_ENV);
            let request = auth_service::init_secrets::Request {
                database_urls,
                user: user.map(|u| (u, password.unwrap_or_default())),
            };
            match auth_service::init_secrets::run(&dir, &request) {
                Ok(done) => {
                    for outcome in done {
                        println!("{outcome}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("auth-service: init-secrets: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        // `migrate` needs the database only: a migration Job has no signing keys to give.
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
                        auth_service::store::connect_postgres(config.database.url.expose(), 2)
                            .await?;
                    auth_service::store::migrate(&pool).await?;
                    tracing::info!("migrations applied");
                    Ok::<(), anyhow::Error>(())
                },
            )
        }
        Command::Admin { action } => {
            let (config, env_report) =
                match BOOTSTRAP.load(cli.config.as_deref(), Config::load_reporting) {
                    Ok(c) => c,
                    Err(exit) => return exit,
                };
            BOOTSTRAP.run(
                config,
                |c| (&c.log, &c.telemetry),
                env_report,
                |config| admin(config, action),
            )
        }
        Command::Common(command) => {
            let (config, env_report) =
                match BOOTSTRAP.load(cli.config.as_deref(), Config::load_reporting) {
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
                    let metrics = mcpauth_runtime::init_metrics();
                    let running = auth_service::app::start(config, metrics).await?;
                    running.run_until(mcpauth_runtime::shutdown_signal()).await;
                    tracing::info!("auth-service stopped");
                    Ok::<(), anyhow::Error>(())
                },
            )
        }
    }
}

/// `admin …`: incident response for one user; prints the JSON summary.
async fn admin(config: Config, action: AdminCommand) -> anyhow::Result<()> {
    use auth_service::user_admin::CliAction;
    let (target, action) = match action {
        AdminCommand::RevokeUser { target, vault } => (
            target,
            CliAction::RevokeUser {
                include_vault: vault,
            },
        ),
        AdminCommand::DisableUser { target, vault } => (
            target,
            CliAction::DisableUser {
                include_vault: vault,
            },
        ),
        AdminCommand::EnableUser { target } => (target, CliAction::EnableUser),
    };
    let out =
        auth_service::user_admin::run_cli(config, &target.user, &target.reason, action).await?;
    println!("{out}");
    Ok(())
}
