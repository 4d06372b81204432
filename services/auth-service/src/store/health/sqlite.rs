//! Readiness of the embedded SQLite store.

use sqlx::SqlitePool;

use super::Durable;
use crate::error::StoreError;

pub struct SqliteDurable {
    pool: SqlitePool,
}

impl SqliteDurable {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl Durable for SqliteDurable {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }
}
