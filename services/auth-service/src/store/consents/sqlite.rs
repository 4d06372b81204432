//! `consents` in SQLite (embedded mode).

use sqlx::SqlitePool;
use uuid::Uuid;

use super::ConsentStore;
use crate::error::StoreError;
use crate::store::sqlite::now_micros;

/// SQLite access to `consents`.
#[derive(Clone)]
pub struct SqliteConsentStore {
    pool: SqlitePool,
}

impl SqliteConsentStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl ConsentStore for SqliteConsentStore {
    async fn consented_scope(
        &self,
        user_id: Uuid,
        client_id: &str,
        resource: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT scope FROM consents WHERE user_id = ?1 AND client_id = ?2 AND resource = ?3",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(resource)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn record_consent(
        &self,
        user_id: Uuid,
        client_id: &str,
        resource: &str,
        scope: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO consents (user_id, client_id, resource, scope, granted_at) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (user_id, client_id, resource) DO UPDATE SET scope = excluded.scope, \
             granted_at = excluded.granted_at",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(resource)
        .bind(scope)
        .bind(now_micros())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
