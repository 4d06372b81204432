//! Every storage interface of auth-service in one place, and the two ways to build them: the
//! production backends (Postgres, from configuration as always) and the embedded ones (one
//! SQLite file under a data directory) that a single-process `mcpauth dev` runs on. The
//! services' startup takes a `Stores` ([`crate::app::start_with`]); nothing past it knows which
//! backend it got.

use std::path::Path;
use std::sync::Arc;

use mcpauth_runtime::bus::EventBus;
use sqlx::PgPool;

use crate::store::audit::AuditSink;
use crate::store::audit::postgres::PgAuditSink;
use crate::store::audit::sqlite::SqliteAuditSink;
use crate::store::clients::ClientStore;
use crate::store::clients::postgres::PgClientStore;
use crate::store::clients::sqlite::SqliteClientStore;
use crate::store::consents::ConsentStore;
use crate::store::consents::postgres::PgConsentStore;
use crate::store::consents::sqlite::SqliteConsentStore;
use crate::store::grants::GrantStore;
use crate::store::grants::postgres::PgGrantStore;
use crate::store::grants::sqlite::SqliteGrantStore;
use crate::store::health::Durable;
use crate::store::health::postgres::PgDurable;
use crate::store::health::sqlite::SqliteDurable;
use crate::store::revocations::RevocationStore;
use crate::store::revocations::postgres::PgRevocationStore;
use crate::store::revocations::sqlite::SqliteRevocationStore;
use crate::store::user_admin::UserAdminStore;
use crate::store::user_admin::postgres::PgUserAdminStore;
use crate::store::user_admin::sqlite::SqliteUserAdminStore;
use crate::store::users::UserStore;
use crate::store::users::postgres::PgUserStore;
use crate::store::users::sqlite::SqliteUserStore;

/// The name of the embedded database file inside the data directory.
pub const SQLITE_FILE: &str = "auth-service.sqlite3";

/// auth-service's storage, one handle per aggregate. Cheap to clone.
#[derive(Clone)]
pub struct Stores {
    pub clients: Arc<dyn ClientStore>,
    pub grants: Arc<dyn GrantStore>,
    pub users: Arc<dyn UserStore>,
    pub consents: Arc<dyn ConsentStore>,
    pub user_admin: Arc<dyn UserAdminStore>,
    pub revocations: Arc<dyn RevocationStore>,
    pub audit: Arc<dyn AuditSink>,
    pub durable: Arc<dyn Durable>,
    /// The Postgres pool behind the production stores, for the connection-pool gauges; `None`
    /// in the embedded mode.
    pub postgres_pool: Option<PgPool>,
    /// Where the short-lived state lives (pending authorizations, codes, sessions, rate-limit
    /// counts) and replica events go. `None`: Redis as configured (`redis.*`), connected at
    /// startup; `Some(bus)` (the embedded mode): in this process's memory, events on `bus`
    /// under the configured `redis.key_prefix`, where the other services follow them.
    pub in_process: Option<Arc<dyn EventBus>>,
}

impl Stores {
    /// The production stores over one Postgres pool (migrated by the caller).
    pub fn postgres(pool: PgPool) -> Self {
        Self {
            clients: Arc::new(PgClientStore::new(pool.clone())),
            grants: Arc::new(PgGrantStore::new(pool.clone())),
            users: Arc::new(PgUserStore::new(pool.clone())),
            consents: Arc::new(PgConsentStore::new(pool.clone())),
            user_admin: Arc::new(PgUserAdminStore::new(pool.clone())),
            revocations: Arc::new(PgRevocationStore::new(pool.clone())),
            audit: Arc::new(PgAuditSink::new(pool.clone())),
            durable: Arc::new(PgDurable::new(pool.clone())),
            postgres_pool: Some(pool),
            in_process: None,
        }
    }

    /// The production stores as configured (`database.*`): connects to Postgres.
    pub async fn from_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        let pool = crate::store::connect_postgres(
            config.database.url.expose(),
            config.database.max_connections,
        )
        .await?;
        Ok(Self::postgres(pool))
    }

    /// The stores over an open SQLite pool (see [`crate::store::sqlite::open`]).
    pub fn sqlite(pool: sqlx::SqlitePool) -> Self {
        Self {
            clients: Arc::new(SqliteClientStore::new(pool.clone())),
            grants: Arc::new(SqliteGrantStore::new(pool.clone())),
            users: Arc::new(SqliteUserStore::new(pool.clone())),
            consents: Arc::new(SqliteConsentStore::new(pool.clone())),
            user_admin: Arc::new(SqliteUserAdminStore::new(pool.clone())),
            revocations: Arc::new(SqliteRevocationStore::new(pool.clone())),
            audit: Arc::new(SqliteAuditSink::new(pool.clone())),
            durable: Arc::new(SqliteDurable::new(pool)),
            postgres_pool: None,
            in_process: None,
        }
    }

    /// The embedded stores: the durable aggregates in `data_dir`/[`SQLITE_FILE`] (created and
    /// migrated on first use; it survives restarts). Single-process by construction: nothing
    /// here is shared with another replica. `bus` is the process's event bus (for the
    /// aggregates that publish) and the short-lived state lives in this process's memory.
    pub async fn embedded(data_dir: &Path, bus: Arc<dyn EventBus>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            )
        })?;
        let pool = crate::store::sqlite::open(&data_dir.join(SQLITE_FILE)).await?;
        Ok(Self {
            in_process: Some(bus),
            ..Self::sqlite(pool)
        })
    }
}
