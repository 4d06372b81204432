//! Incident-response storage for one user in SQLite (embedded mode).

use sqlx::SqlitePool;
use uuid::Uuid;

use super::UserAdminStore;
use crate::error::StoreError;
use crate::store::sqlite::now_micros;

/// SQLite access for `admin revoke-user` / `disable-user` / `enable-user`.
#[derive(Clone)]
pub struct SqliteUserAdminStore {
    pool: SqlitePool,
}

impl SqliteUserAdminStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl UserAdminStore for SqliteUserAdminStore {
    async fn exists(&self, user_id: Uuid) -> Result<bool, StoreError> {
        Ok(
            sqlx::query_scalar::<_, i32>("SELECT 1 FROM users WHERE user_id = ?1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    async fn find_by_subject(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<Uuid>, StoreError> {
        let linked: Option<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM upstream_identities WHERE upstream_issuer = ?1 AND upstream_subject = ?2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        if linked.is_some() {
            return Ok(linked);
        }
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM users WHERE provider = ?1 AND external_subject = ?2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn set_disabled(&self, user_id: Uuid, disabled: bool) -> Result<bool, StoreError> {
        let q = if disabled {
            sqlx::query(
                "UPDATE users SET disabled_at = COALESCE(disabled_at, ?2) WHERE user_id = ?1",
            )
            .bind(user_id)
            .bind(now_micros())
        } else {
            sqlx::query("UPDATE users SET disabled_at = NULL WHERE user_id = ?1").bind(user_id)
        };
        Ok(q.execute(&self.pool).await?.rows_affected() == 1)
    }

    async fn is_disabled(&self, user_id: Uuid) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar::<_, bool>(
            "SELECT disabled_at IS NOT NULL FROM users WHERE user_id = ?1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or(false))
    }

    async fn revoke_grants(&self, user_id: Uuid, reason: &str) -> Result<Vec<Uuid>, StoreError> {
        Ok(sqlx::query_scalar(
            "UPDATE grants SET revoked_at = ?3, revoke_reason = ?2 \
             WHERE user_id = ?1 AND revoked_at IS NULL RETURNING grant_id",
        )
        .bind(user_id)
        .bind(reason)
        .bind(now_micros())
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_consents(&self, user_id: Uuid) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM consents WHERE user_id = ?1")
            .bind(user_id)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
