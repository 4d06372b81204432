//! The vault's storage, behind one narrow interface per aggregate, each with a production and an
//! embedded implementation:
//!
//! | aggregate | interface | production | embedded |
//! |---|---|---|---|
//! | credentials (+ tombstones, rekey) | [`CredentialStore`] | Postgres | SQLite |
//! | refresh lock | [`RefreshLocks`] | Redis | in-process leases |
//! | access trail | [`AuditSink`] | Postgres | SQLite |
//! | events (connections, cache invalidations, revocations) | [`EventBus`] | Redis pub/sub | in-process broadcast |
//!
//! [`Stores`] holds one of each; the service starts from it. Production builds it from the
//! configured Postgres and Redis; the embedded single-process mode from a data directory and the
//! process's event bus. Ciphertexts are stored the same way in both: AES-256-GCM sealed before
//! they reach any store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mcpauth_runtime::bus::{EventBus, RedisBus};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub mod audit;
pub mod credentials;
pub mod locks;

pub use audit::AuditSink;
pub use credentials::{ConnectionStatus, CredentialRow, CredentialStore, CredentialWrite};
pub use locks::RefreshLocks;

/// The vault's own migrations table, so the vault can share a database with auth-service.
pub const MIGRATIONS_TABLE: &str = "_token_vault_migrations";

/// The embedded migrations of token-vault (`migrations/token-vault`).
pub fn migrator() -> sqlx::migrate::Migrator {
    let mut m = sqlx::migrate!("../../migrations/token-vault");
    m.dangerous_set_table_name(MIGRATIONS_TABLE);
    m
}

/// The migrations of the embedded database (`migrations/token-vault-sqlite`).
pub fn sqlite_migrator() -> sqlx::migrate::Migrator {
    let mut m = sqlx::migrate!("../../migrations/token-vault-sqlite");
    m.dangerous_set_table_name(MIGRATIONS_TABLE);
    m
}

/// Applies pending migrations (sqlx takes an advisory lock: replicas never race).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    migrator().run(pool).await
}

/// Connects to Postgres.
pub async fn connect_postgres(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await
}

/// The file of the embedded database in `data_dir`.
pub fn sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("token-vault.sqlite3")
}

/// How long a writer waits for another's transaction before SQLite reports `SQLITE_BUSY`.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens (creating it if needed) the embedded database at `path` and applies its migrations:
/// WAL (readers never wait for the writer), a busy timeout (writers queue instead of failing),
/// full sync (a committed credential survives a crash of the machine, as in Postgres).
pub async fn open_sqlite(path: &Path) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| anyhow::anyhow!("embedded database {}: {e}", path.display()))?;
    sqlite_migrator()
        .run(&pool)
        .await
        .map_err(|e| anyhow::anyhow!("embedded database {}: {e}", path.display()))?;
    Ok(pool)
}

/// Everything token-vault stores or publishes, behind its interfaces.
#[derive(Clone)]
pub struct Stores {
    pub credentials: Arc<dyn CredentialStore>,
    pub locks: Arc<dyn RefreshLocks>,
    pub audit: Arc<dyn AuditSink>,
    pub bus: Arc<dyn EventBus>,
    backend: Backend,
}

/// What the stores run on, for readiness and pool metrics.
#[derive(Clone)]
enum Backend {
    Production {
        pool: PgPool,
        redis: deadpool_redis::Pool,
    },
    Embedded {
        path: PathBuf,
    },
}

impl Stores {
    /// The production stores over today's Postgres pool and Redis (client for subscriptions,
    /// pool for everything else); `key_prefix` is `redis.key_prefix` (the lock keys).
    pub fn production(
        pool: PgPool,
        redis_client: redis::Client,
        redis: deadpool_redis::Pool,
        key_prefix: &str,
    ) -> Self {
        Self {
            credentials: Arc::new(credentials::PostgresCredentials::new(pool.clone())),
            locks: Arc::new(locks::RedisLocks::new(redis.clone(), key_prefix)),
            audit: Arc::new(audit::PostgresAudit::new(pool.clone())),
            bus: Arc::new(RedisBus::new(redis_client, redis.clone())),
            backend: Backend::Production { pool, redis },
        }
    }

    /// Connects to the configured Postgres and Redis (as token-vault always has).
    pub async fn connect(config: &crate::Config) -> anyhow::Result<Self> {
        let pool = connect_postgres(
            config.database.url.expose(),
            config.database.max_connections,
        )
        .await
        .map_err(|e| anyhow::anyhow!("database.url: {e}"))?;
        let (redis_client, redis) = mcpauth_runtime::start_redis(
            "redis",
            config.redis.url.expose(),
            config.redis.tls.as_ref(),
            config.redis.pool_size,
        )
        .await?;
        Ok(Self::production(
            pool,
            redis_client,
            redis,
            &config.redis.key_prefix,
        ))
    }

    /// The embedded stores of the single-process mode: a SQLite file in `data_dir` (created
    /// with its migrations if needed; it survives a restart), in-process refresh locks, and
    /// `bus` (the process's, shared with the other services). Single replica by construction:
    /// the locks and the bus do not reach other processes.
    pub async fn embedded(data_dir: &Path, bus: Arc<dyn EventBus>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| anyhow::anyhow!("data directory {}: {e}", data_dir.display()))?;
        let path = sqlite_path(data_dir);
        let pool = open_sqlite(&path).await?;
        Ok(Self {
            credentials: Arc::new(credentials::SqliteCredentials::new(pool.clone())),
            locks: Arc::new(locks::MemoryLocks::new()),
            audit: Arc::new(audit::SqliteAudit::new(pool)),
            bus,
            backend: Backend::Embedded { path },
        })
    }

    /// Where the data lives, for the startup log line.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Production { .. } => "postgres + redis".into(),
            Backend::Embedded { path } => format!("embedded sqlite at {}", path.display()),
        }
    }

    /// Starts the pool gauges of the production pools (nothing to measure when embedded).
    pub(crate) fn spawn_pool_metrics(&self) -> Option<tokio::task::JoinHandle<()>> {
        match &self.backend {
            Backend::Production { pool, redis } => Some(mcpauth_runtime::pool_metrics::spawn(
                Some(pool.clone()),
                Some(redis.clone()),
            )),
            Backend::Embedded { .. } => None,
        }
    }

    /// Whether the stores answer: `Err` with what does not (the `/readyz` body).
    pub async fn ready(&self) -> Result<(), String> {
        match &self.backend {
            Backend::Production { pool, redis } => {
                // As before the interfaces: a query on the pool and a PING on Redis.
                let pg = sqlx::query("SELECT 1").execute(pool).await.is_ok();
                let redis = async {
                    let mut c = redis.get().await.ok()?;
                    ::redis::cmd("PING")
                        .query_async::<String>(&mut c)
                        .await
                        .ok()
                }
                .await
                .is_some();
                if pg && redis {
                    Ok(())
                } else {
                    Err(format!("postgres: {pg}, redis: {redis}"))
                }
            }
            Backend::Embedded { .. } => {
                let db = self.credentials.ping().await.is_ok();
                let locks = self.locks.ping().await.is_ok();
                if db && locks {
                    Ok(())
                } else {
                    Err(format!("sqlite: {db}"))
                }
            }
        }
    }
}
