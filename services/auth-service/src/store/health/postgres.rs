//! Readiness of Postgres (production).

use sqlx::PgPool;

use super::Durable;
use crate::error::StoreError;

pub struct PgDurable {
    pool: PgPool,
}

impl PgDurable {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl Durable for PgDurable {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }
}
