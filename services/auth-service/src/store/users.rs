//! Users (as vouched for by a login provider) and their per-client consents.

use sqlx::PgPool;
use uuid::Uuid;

use crate::error::StoreError;

/// Postgres access to `users` and `consents`.
#[derive(Clone)]
pub struct UserStore {
    pool: PgPool,
}

impl UserStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Finds or creates the user that `provider` knows as `external_subject`; returns its id.
    pub async fn upsert(
        &self,
        provider: &str,
        external_subject: &str,
        username: &str,
    ) -> Result<Uuid, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO users (user_id, provider, external_subject, username) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (provider, external_subject) DO UPDATE SET last_login_at = now(), username = EXCLUDED.username \
             RETURNING user_id",
        )
        .bind(Uuid::new_v4())
        .bind(provider)
        .bind(external_subject)
        .bind(username)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The scopes the user already approved for this client and resource, if any.
    pub async fn consented_scope(
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
    pub async fn record_consent(
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
