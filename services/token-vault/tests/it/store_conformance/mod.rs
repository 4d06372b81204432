//! One conformance suite per storage interface of token-vault, written once and run against
//! both backends: production (Postgres + Redis: a fresh database per test, a unique Redis
//! prefix) and embedded (SQLite in a fresh data directory + the in-process lock and bus). The
//! same assertions hold for both, including the concurrency properties (one lock holder among
//! 50, one upstream refresh for 50 concurrent refreshers, fan-out to every follower).

use std::path::PathBuf;
use std::sync::Arc;

use mcpauth_runtime::bus::MemoryBus;
use token_vault::Stores;

use crate::harness::{admin_url, redis_url};

mod audit;
mod credentials;
mod events;
mod locks;

/// One test's stores, and what is needed to look at them from outside and to clean up.
pub struct Backend {
    pub stores: Stores,
    /// Prefix of this test's channels (`redis.key_prefix`).
    pub prefix: String,
    kind: Kind,
}

enum Kind {
    Production {
        db_url: String,
        db_name: String,
        pool: sqlx::PgPool,
    },
    Embedded {
        dir: PathBuf,
    },
}

impl Backend {
    /// Postgres and Redis: a fresh database with the vault's migrations, a unique prefix.
    pub async fn production() -> Backend {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db_name = format!("mcpauth_vaultconf_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&admin_url())
            .await
            .expect("Postgres reachable");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let db_url = format!("{}/{db_name}", admin_url().rsplit_once('/').unwrap().0);
        let pool = token_vault::store::connect_postgres(&db_url, 8)
            .await
            .unwrap();
        token_vault::store::migrate(&pool).await.unwrap();
        let prefix = format!("vaultconf-{}", uuid::Uuid::new_v4().simple());
        let stores = production_stores(pool.clone(), &prefix).await;
        Backend {
            stores,
            prefix,
            kind: Kind::Production {
                db_url,
                db_name,
                pool,
            },
        }
    }

    /// The embedded stores in a fresh data directory, on an in-process bus.
    pub async fn embedded() -> Backend {
        let dir = std::env::temp_dir().join(format!(
            "mcpauth-vaultconf-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let stores = Stores::embedded(&dir, Arc::new(MemoryBus::new()))
            .await
            .unwrap();
        Backend {
            stores,
            prefix: format!("vaultconf-{}", uuid::Uuid::new_v4().simple()),
            kind: Kind::Embedded { dir },
        }
    }

    /// The stores of another replica: its own connections to the same Postgres and Redis; in
    /// the embedded mode (one process by construction) the same stores.
    pub async fn replica(&self) -> Stores {
        match &self.kind {
            Kind::Production { db_url, .. } => {
                let pool = token_vault::store::connect_postgres(db_url, 8)
                    .await
                    .unwrap();
                production_stores(pool, &self.prefix).await
            }
            Kind::Embedded { .. } => self.stores.clone(),
        }
    }

    /// Every row of `vault_audit`: (user_id, action, outcome, count, detail as JSON).
    pub async fn audit_rows(&self) -> Vec<(String, String, String, i64, serde_json::Value)> {
        let rows: Vec<(String, String, String, i64, String)> = match &self.kind {
            Kind::Production { pool, .. } => sqlx::query_as(
                "SELECT user_id, action, outcome, count::bigint, detail::text FROM vault_audit ORDER BY id",
            )
            .fetch_all(pool)
            .await
            .unwrap(),
            Kind::Embedded { dir } => {
                let pool = sqlx::SqlitePool::connect_with(
                    sqlx::sqlite::SqliteConnectOptions::new()
                        .filename(token_vault::store::sqlite_path(dir)),
                )
                .await
                .unwrap();
                let rows = sqlx::query_as(
                    "SELECT user_id, action, outcome, count, detail FROM vault_audit ORDER BY id",
                )
                .fetch_all(&pool)
                .await
                .unwrap();
                pool.close().await;
                rows
            }
        };
        rows.into_iter()
            .map(|(u, a, o, c, d)| (u, a, o, c, serde_json::from_str(&d).unwrap()))
            .collect()
    }

    pub async fn stop(self) {
        match self.kind {
            Kind::Production { db_name, pool, .. } => {
                pool.close().await;
                if let Ok(admin) = sqlx::PgPool::connect(&admin_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await;
                    admin.close().await;
                }
                if let Ok(client) = redis::Client::open(redis_url())
                    && let Ok(mut c) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{}*", self.prefix))
                        .query_async(&mut c)
                        .await
                        .unwrap_or_default();
                    for k in keys {
                        let _: redis::RedisResult<i64> =
                            redis::cmd("DEL").arg(k).query_async(&mut c).await;
                    }
                }
            }
            Kind::Embedded { dir } => {
                drop(self.stores);
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

async fn production_stores(pool: sqlx::PgPool, prefix: &str) -> Stores {
    let (client, redis) = mcpauth_runtime::start_redis("redis", &redis_url(), None, 16)
        .await
        .unwrap();
    Stores::production(pool, client, redis, prefix)
}

/// Instantiates each `suite::test(&Backend)` once per backend:
/// `store_conformance::postgres_redis::<test>` and `store_conformance::sqlite_memory::<test>`.
macro_rules! for_each_backend {
    ($($suite:ident :: $test:ident),* $(,)?) => {
        mod postgres_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let backend = super::Backend::production().await;
                    super::$suite::$test(&backend).await;
                    backend.stop().await;
                }
            )*
        }
        mod sqlite_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let backend = super::Backend::embedded().await;
                    super::$suite::$test(&backend).await;
                    backend.stop().await;
                }
            )*
        }
    };
}

for_each_backend!(
    credentials::put_get_replace_and_delete_leave_a_tombstone,
    credentials::another_users_credential_is_never_returned,
    credentials::rekey_reseals_every_readable_record_under_the_current_key,
    locks::one_holder_among_50_concurrent_acquirers,
    locks::a_dead_holders_lock_expires_and_a_live_holder_keeps_it,
    locks::fifty_concurrent_refreshers_cause_one_upstream_refresh,
    events::connection_events_reach_every_follower,
    events::credential_invalidations_reach_every_replica_cache,
    events::revocations_reach_every_follower,
    audit::n_events_in_n_rows,
);
