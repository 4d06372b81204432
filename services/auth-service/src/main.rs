//! auth-service binary: configuration → telemetry → `app::start` → serve until SIGTERM/Ctrl-C.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use auth_service::config::{Config, MigrateConfig};
use clap::{Parser, Subcommand};

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
    /// Serve HTTP and gRPC (the default).
    Serve,
    /// Apply database migrations, then exit (reads only the database, log and telemetry settings).
    Migrate,
    /// Print the SHA-256 (hex) of a secret read from stdin, for `grpc.callers` and `clients`.
    HashSecret,
    /// Print an argon2id hash of a password read from stdin, for `login.users`.
    HashPassword,
    /// Print a new random 256-bit token key (base64), for `tokens.keys`.
    GenerateKey,
    /// Check the configuration and exit.
    CheckConfig,
    /// Exit 0 iff GET /readyz answers 200 on the admin listener (else the HTTP listener):
    /// container probes.
    Healthcheck,
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

/// The configuration a command needs.
enum Loaded {
    Full(Box<Config>),
    Migrate(MigrateConfig),
}

fn read_stdin() -> String {
    let mut s = String::new();
    let _ = std::io::stdin().read_to_string(&mut s);
    s.trim_end_matches(['\r', '\n']).to_owned()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    match command {
        Command::HashSecret => {
            println!(
                "{}",
                auth_service::domain::token::hex(&auth_service::domain::token::hash(&read_stdin()))
            );
            return ExitCode::SUCCESS;
        }
        Command::HashPassword => {
            println!("{}", auth_service::login::hash_password(&read_stdin()));
            return ExitCode::SUCCESS;
        }
        Command::GenerateKey => {
            let mut key = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
                .expect("randomness");
            println!(
                "{}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key)
            );
            return ExitCode::SUCCESS;
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
            return match auth_service::init_secrets::run(&dir, &request) {
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
            };
        }
        _ => {}
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    let (file, legacy_file) =
        mcpauth_runtime::service_env::AUTH.config_file(cli.config.as_deref(), &env);
    // `migrate` needs the database only: a migration Job has no signing keys to give.
    let loaded = if matches!(command, Command::Migrate) {
        MigrateConfig::load_reporting(file.as_deref(), &env).map(|(c, r)| (Loaded::Migrate(c), r))
    } else {
        Config::load_reporting(file.as_deref(), &env).map(|(c, r)| (Loaded::Full(Box::new(c)), r))
    };
    let (config, mut env_report) = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("auth-service: {e}");
            return ExitCode::from(2);
        }
    };
    env_report.legacy_config_file = legacy_file;
    if matches!(command, Command::CheckConfig) {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    if let (Command::Healthcheck, Loaded::Full(config)) = (&command, &config) {
        return mcpauth_runtime::healthcheck::run("auth-service", Ok(config.health_addr()));
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("auth-service: cannot start the async runtime: {e}");
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
        match mcpauth_runtime::telemetry::init("auth-service", log, traces) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("auth-service: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    env_report.warn();
    let result = runtime.block_on(async move {
        match config {
            Loaded::Migrate(config) => {
                let pool =
                    auth_service::store::connect_postgres(config.database.url.expose(), 2).await?;
                auth_service::store::migrate(&pool).await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            Loaded::Full(config) if matches!(command, Command::Admin { .. }) => {
                let Command::Admin { action } = command else {
                    unreachable!()
                };
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
                let out = auth_service::user_admin::run_cli(
                    *config,
                    &target.user,
                    &target.reason,
                    action,
                )
                .await?;
                println!("{out}");
                Ok(())
            }
            Loaded::Full(config) => {
                let metrics = mcpauth_runtime::init_metrics();
                let running = auth_service::app::start(*config, metrics).await?;
                running.run_until(mcpauth_runtime::shutdown_signal()).await;
                tracing::info!("auth-service stopped");
                Ok::<(), anyhow::Error>(())
            }
        }
    });
    // Export the spans still queued while the runtime (the exporter's channel) still runs.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "auth-service failed");
            eprintln!("auth-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}
