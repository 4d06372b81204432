//! `consents` in Postgres (production).

use sqlx::PgPool;
use uuid::Uuid;

use super::ConsentStore;
use crate::error::StoreError;

/// Postgres access to `consents`.
#[derive(Clone)]
pub struct PgConsentStore {
    pool: PgPool,
}

impl PgConsentStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl ConsentStore for PgConsentStore {
    /// The scopes the user already approved for this client and resource, if any.
    async fn consented_scope(
        &self,
        user_id: Uuid,
        client_id: &str,
        resource: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2 AND resource = $3",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(resource)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records an approval (replacing a narrower earlier one).
    async fn record_consent(
        &self,
        user_id: Uuid,
        client_id: &str,
        resource: &str,
        scope: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO consents (user_id, client_id, resource, scope) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, client_id, resource) DO UPDATE SET scope = EXCLUDED.scope, granted_at = now()",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(resource)
        .bind(scope)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
