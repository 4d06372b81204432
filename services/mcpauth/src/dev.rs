//! `mcpauth dev`: the embedded single-process mode.
//!
//! Configuration is the services' own (same files, same `MCPAUTH_AUTH__`/`MCPAUTH_VAULT__`/
//! `MCPAUTH_MCP__` variables); only storage differs. Without `--auth-config` etc. the built-in dev
//! configurations are used, written to `<data-dir>/run/` at each start so that what runs can be
//! read. auth-service gets a token key generated once into `<data-dir>/secrets/` so that tokens
//! survive a restart like the data does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;

use crate::DevArgs;

const AUTH_DEV: &str = include_str!("../../../config/dev.toml");
const VAULT_DEV: &str = include_str!("../../../config/token-vault.dev.toml");
const MCP_DEV: &str = include_str!("../../../config/mcp-service.dev.toml");

/// The key id of the generated token key.
const TOKEN_KEY_ID: &str = "devembedded";

/// The configuration files to load, and the data directory (absolute).
#[derive(Debug)]
pub struct Layout {
    pub data_dir: PathBuf,
    pub auth: PathBuf,
    pub vault: PathBuf,
    pub mcp: PathBuf,
}

/// Creates the data directory and writes what the built-in configurations need.
pub fn prepare(args: &DevArgs) -> anyhow::Result<Layout> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let data_dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("cannot resolve {}", args.data_dir.display()))?;
    let run = data_dir.join("run");
    std::fs::create_dir_all(&run).with_context(|| format!("cannot create {}", run.display()))?;
    let auth = match &args.auth_config {
        Some(p) => p.clone(),
        None => {
            let key = token_key_file(&data_dir)?;
            let text = format!(
                "{GENERATED}{AUTH_DEV}\n# --- added by mcpauth dev: a token key kept in the data directory, so\n\
                 # tokens survive a restart ---\n[tokens]\ncurrent_key = \"{TOKEN_KEY_ID}\"\n\n\
                 [[tokens.keys]]\nid = \"{TOKEN_KEY_ID}\"\nsecret = \"file:{}\"\n",
                key.display()
            );
            write_config(&run.join("auth-service.toml"), &text)?
        }
    };
    let vault = match &args.vault_config {
        Some(p) => p.clone(),
        None => write_config(
            &run.join("token-vault.toml"),
            &format!("{GENERATED}{VAULT_DEV}"),
        )?,
    };
    let mcp = match &args.mcp_config {
        Some(p) => p.clone(),
        None => write_config(
            &run.join("mcp-service.toml"),
            &format!("{GENERATED}{MCP_DEV}"),
        )?,
    };
    Ok(Layout {
        data_dir,
        auth,
        vault,
        mcp,
    })
}

const GENERATED: &str = "# Written by `mcpauth dev` at each start from the built-in dev configuration; edits are\n\
     # overwritten. To change it, copy it elsewhere and pass --auth-config / --vault-config /\n\
     # --mcp-config, or set MCPAUTH_AUTH__… / MCPAUTH_VAULT__… / MCPAUTH_MCP__… variables.\n";

fn write_config(path: &Path, text: &str) -> anyhow::Result<PathBuf> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path.to_owned())
}

/// `<data-dir>/secrets/token-key`: 32 random bytes (base64), made once, readable by the owner only.
fn token_key_file(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = data_dir.join("secrets");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("token-key");
    if path.exists() {
        return Ok(path);
    }
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| anyhow::anyhow!("no system randomness for the token key"))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
    write_private(&path, &encoded).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// The three configurations, loaded exactly as the service binaries load them.
pub struct Configs {
    pub auth: auth_service::config::Config,
    pub vault: token_vault::config::Config,
    pub mcp: mcp_service::config::Config,
}

pub fn load(layout: &Layout, env: &HashMap<String, String>) -> Result<Configs, String> {
    let auth = auth_service::config::Config::load(Some(&layout.auth), env)
        .map_err(|e| format!("auth-service ({}): {e}", layout.auth.display()))?;
    let vault = token_vault::config::Config::load(Some(&layout.vault), env)
        .map_err(|e| format!("token-vault ({}): {e}", layout.vault.display()))?;
    let mut mcp = mcp_service::config::Config::load(Some(&layout.mcp), env)
        .map_err(|e| format!("mcp-service ({}): {e}", layout.mcp.display()))?;
    let mut vault = vault;
    share_one_bus(&auth, &mut vault, &mut mcp);
    Ok(Configs { auth, vault, mcp })
}

/// One process, one event bus, one of each service: whatever the files say about Redis key
/// prefixes (they name channels on that bus here), mcp-service and token-vault follow this
/// auth-service's revocations, and mcp-service this token-vault's connection events.
fn share_one_bus(
    auth: &auth_service::config::Config,
    vault: &mut token_vault::config::Config,
    mcp: &mut mcp_service::config::Config,
) {
    vault.redis.auth_key_prefix = auth.redis.key_prefix.clone();
    mcp.redis.auth_key_prefix = auth.redis.key_prefix.clone();
    if let Some(v) = mcp.vault.as_mut() {
        v.key_prefix = vault.redis.key_prefix.clone();
    }
}

/// The embedded mode is never selected by accident: every configuration must be in dev mode,
/// unless the operator says `--force-embedded`.
pub fn refuse_production(configs: &Configs, force: bool) -> Result<(), String> {
    let not_dev: Vec<&str> = [
        ("auth-service", configs.auth.dev_mode),
        ("token-vault", configs.vault.dev_mode),
        ("mcp-service", configs.mcp.dev_mode),
    ]
    .into_iter()
    .filter(|(_, dev)| !dev)
    .map(|(name, _)| name)
    .collect();
    if not_dev.is_empty() || force {
        return Ok(());
    }
    Err(format!(
        "refusing the embedded mode: the {} configuration is not in dev mode (dev_mode = false). \
         The embedded mode is one process with its data on local disk — a single replica by \
         construction, never production; run the services on Postgres + Redis instead \
         (make run-stack, docker-compose.yml, helm/mcpauth), or pass --force-embedded if this is \
         really what you want",
        not_dev.join(" and ")
    ))
}

pub fn run(args: DevArgs) -> ExitCode {
    let env: HashMap<String, String> = std::env::vars().collect();
    let layout = match prepare(&args) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mcpauth dev: {e:#}");
            return ExitCode::from(2);
        }
    };
    let configs = match load(&layout, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mcpauth dev: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = refuse_production(&configs, args.force_embedded) {
        eprintln!("mcpauth dev: {e}");
        return ExitCode::from(2);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mcpauth dev: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One log and trace pipeline for the process, configured by auth-service's settings.
    let mut telemetry = {
        let _rt = runtime.enter();
        match mcpauth_runtime::telemetry::init(
            "mcpauth-dev",
            &configs.auth.log,
            &configs.auth.telemetry,
        ) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("mcpauth dev: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let result = runtime.block_on(serve(configs, layout));
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcpauth dev: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the three services on embedded storage, prints where they are, and runs until
/// SIGTERM/Ctrl-C; then stops them in reverse order.
async fn serve(configs: Configs, layout: Layout) -> anyhow::Result<()> {
    let metrics = mcpauth_runtime::init_metrics();
    let bus: Arc<dyn mcpauth_runtime::bus::EventBus> =
        Arc::new(mcpauth_runtime::bus::MemoryBus::new());
    let Configs { auth, vault, mcp } = configs;
    let auth_stores =
        auth_service::stores::Stores::embedded(&layout.data_dir.join("auth-service"), bus.clone())
            .await
            .context("auth-service storage")?;
    let auth = auth_service::app::start_with(auth, auth_stores, metrics.clone())
        .await
        .context("auth-service")?;
    let vault_stores =
        token_vault::store::Stores::embedded(&layout.data_dir.join("token-vault"), bus.clone())
            .await
            .context("token-vault storage")?;
    let vault = token_vault::app::start_with(vault, vault_stores, metrics.clone())
        .await
        .context("token-vault")?;
    let mcp_stores = mcp_service::store::Stores::embedded(bus.clone());
    let mcp = mcp_service::app::start_with(mcp, mcp_stores, metrics)
        .await
        .context("mcp-service")?;
    println!(
        "{}",
        banner(
            &layout,
            auth.http_addr,
            auth.grpc_addr,
            vault.grpc_addr,
            mcp.http_addr
        )
    );
    mcpauth_runtime::shutdown_signal().await;
    tracing::info!("stopping: mcp-service, token-vault, auth-service");
    mcp.shutdown().await;
    vault.shutdown().await;
    auth.shutdown().await;
    Ok(())
}

fn banner(
    layout: &Layout,
    auth_http: std::net::SocketAddr,
    auth_grpc: std::net::SocketAddr,
    vault_grpc: std::net::SocketAddr,
    mcp_http: std::net::SocketAddr,
) -> String {
    format!(
        "mcpauth dev: one process, embedded storage (single replica; production runs on Postgres + Redis)\n\
         \x20 auth-service  http://{auth_http}   (dev login: user \"dev\", no password, consent automatic)\n\
         \x20 gRPC          {auth_grpc}          (credential: dev-service-credential)\n\
         \x20 token-vault   {vault_grpc}          (gRPC, same credential; dev-only encryption key)\n\
         \x20 mcp-service   http://{mcp_http}/mcp\n\
         \x20 data          {data}  (SQLite databases, token key; delete it to start afresh)\n\
         \x20 configs       {auth}, {vault}, {mcp}\n\
         Point an MCP client at http://{mcp_http}/mcp. Ctrl-C stops everything.",
        data = layout.data_dir.display(),
        auth = layout.auth.display(),
        vault = layout.vault.display(),
        mcp = layout.mcp.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path) -> DevArgs {
        DevArgs {
            data_dir: dir.to_owned(),
            auth_config: None,
            vault_config: None,
            mcp_config: None,
            force_embedded: false,
        }
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "mcpauth-dev-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_built_in_configurations_load_in_dev_mode_and_keep_one_token_key() {
        let dir = tempdir();
        let layout = prepare(&args(&dir)).unwrap();
        let configs = load(&layout, &HashMap::new()).unwrap();
        refuse_production(&configs, false).unwrap();
        assert_eq!(configs.auth.tokens.current_key, TOKEN_KEY_ID);
        let key = std::fs::read_to_string(dir.join("secrets/token-key")).unwrap();
        // A second start keeps the key (tokens survive a restart).
        prepare(&args(&dir)).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("secrets/token-key")).unwrap(),
            key
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("secrets/token-key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "token key readable by others: {mode:o}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_production_configuration_is_refused_unless_forced() {
        let dir = tempdir();
        let layout = prepare(&args(&dir)).unwrap();
        let mut configs = load(&layout, &HashMap::new()).unwrap();
        configs.vault.dev_mode = false;
        let e = refuse_production(&configs, false).unwrap_err();
        assert!(
            e.contains("token-vault configuration is not in dev mode"),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
        refuse_production(&configs, true).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_bad_value_in_the_environment_is_one_line_naming_the_service() {
        let dir = tempdir();
        let layout = prepare(&args(&dir)).unwrap();
        let env = HashMap::from([("MCPAUTH_VAULT__GRPC__ADDR".to_owned(), "nowhere".to_owned())]);
        let e = load(&layout, &env).err().expect("refused");
        assert!(e.starts_with("token-vault ("), "{e}");
        assert!(!e.contains('\n'), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_services_follow_each_other_on_the_one_bus_whatever_their_prefixes() {
        let dir = tempdir();
        let layout = prepare(&args(&dir)).unwrap();
        let env = HashMap::from([
            (
                "MCPAUTH_AUTH__REDIS__KEY_PREFIX".to_owned(),
                "team-a".to_owned(),
            ),
            (
                "MCPAUTH_MCP__REDIS__AUTH_KEY_PREFIX".to_owned(),
                "team-b".to_owned(),
            ),
            (
                "MCPAUTH_VAULT__REDIS__AUTH_KEY_PREFIX".to_owned(),
                "team-c".to_owned(),
            ),
        ]);
        let configs = load(&layout, &env).unwrap();
        assert_eq!(configs.auth.redis.key_prefix, "team-a");
        assert_eq!(configs.mcp.redis.auth_key_prefix, "team-a");
        assert_eq!(configs.vault.redis.auth_key_prefix, "team-a");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
