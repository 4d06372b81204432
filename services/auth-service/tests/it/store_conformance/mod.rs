//! One conformance suite per storage interface, written once and run against every backend:
//! Postgres (a fresh database per test, as the rest of the harness does) and SQLite (a fresh
//! file per test). The same assertions prove both behave alike, concurrency included. Tests
//! reach the stores only through their interfaces; raw SQL is used to observe (count rows),
//! never to stand in for a store.

mod audit;
mod clients;
mod consents;
mod grants;
mod revocations;
mod user_admin;
mod users;

use std::path::PathBuf;

use auth_service::stores::Stores;
use chrono::{DateTime, Utc};

use crate::harness::TestDb;

/// One backend under test.
pub struct Backend {
    pub stores: Stores,
    db: Db,
}

enum Db {
    Postgres(TestDb, sqlx::PgPool),
    Sqlite(PathBuf, sqlx::SqlitePool),
}

impl Backend {
    pub async fn postgres() -> Backend {
        let db = TestDb::create().await;
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        Backend {
            stores: Stores::postgres(pool.clone()),
            db: Db::Postgres(db, pool),
        }
    }

    pub async fn sqlite() -> Backend {
        let dir = std::env::temp_dir().join(format!(
            "mcpauth-conformance-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let stores = Stores::embedded(
            &dir,
            std::sync::Arc::new(mcpauth_runtime::bus::MemoryBus::default()),
        )
        .await
        .expect("embedded stores open");
        let pool = auth_service::store::sqlite::open(&dir.join(auth_service::stores::SQLITE_FILE))
            .await
            .unwrap();
        Backend {
            stores,
            db: Db::Sqlite(dir, pool),
        }
    }

    /// A number the test reads back with plain SQL valid on both backends (`count(*)`).
    pub async fn count(&self, sql: &'static str) -> i64 {
        match &self.db {
            Db::Postgres(_, pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            Db::Sqlite(_, pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        }
    }

    pub async fn finish(self) {
        drop(self.stores);
        match self.db {
            Db::Postgres(db, pool) => {
                pool.close().await;
                db.drop_db().await;
            }
            Db::Sqlite(dir, pool) => {
                pool.close().await;
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Now, at the precision both stores keep (microseconds).
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

/// Instantiates each listed `async fn(&Backend)` of the calling module once per backend, as
/// `<module>::postgres::<name>` and `<module>::sqlite::<name>`.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let b = $crate::store_conformance::Backend::postgres().await;
                    super::$name(&b).await;
                    b.finish().await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let b = $crate::store_conformance::Backend::sqlite().await;
                    super::$name(&b).await;
                    b.finish().await;
                }
            )*
        }
    };
}
