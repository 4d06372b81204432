//! Incident-response storage for one user in Postgres (production).

use sqlx::PgPool;
use uuid::Uuid;

use super::UserAdminStore;
use crate::error::StoreError;

/// Postgres access for `admin revoke-user` / `disable-user` / `enable-user`.
#[derive(Clone)]
pub struct PgUserAdminStore {
    pool: PgPool,
}

impl PgUserAdminStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl UserAdminStore for PgUserAdminStore {
    /// Whether the user exists.
    async fn exists(&self, user_id: Uuid) -> Result<bool, StoreError> {
        Ok(
            sqlx::query_scalar::<_, i32>("SELECT 1 FROM users WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// The user an upstream identity (issuer, subject) is linked to, or that a login provider
    /// (`local`, `dev`: issuer = the provider name) knows by that subject.
    async fn find_by_subject(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<Uuid>, StoreError> {
        let linked: Option<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM upstream_identities WHERE upstream_issuer = $1 AND upstream_subject = $2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        if linked.is_some() {
            return Ok(linked);
        }
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM users WHERE provider = $1 AND external_subject = $2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Sets or clears the user's `disabled_at`; false when there is no such user.
    async fn set_disabled(&self, user_id: Uuid, disabled: bool) -> Result<bool, StoreError> {
        let sql = if disabled {
            "UPDATE users SET disabled_at = COALESCE(disabled_at, now()) WHERE user_id = $1"
        } else {
            "UPDATE users SET disabled_at = NULL WHERE user_id = $1"
        };
        Ok(sqlx::query(sql)
            .bind(user_id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }

    /// Whether the user is disabled (an unknown user is not).
    async fn is_disabled(&self, user_id: Uuid) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar::<_, bool>(
            "SELECT disabled_at IS NOT NULL FROM users WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or(false))
    }

    /// Marks every unrevoked grant of the user revoked (their refresh tokens stop working at
    /// once); returns the grants revoked. `grants.expires_at` is not a filter: it is set when
    /// the grant is created, while each rotation gives its refresh token a fresh lifetime, so a
    /// grant past it can still be refreshed until the sweeper removes it.
    async fn revoke_grants(&self, user_id: Uuid, reason: &str) -> Result<Vec<Uuid>, StoreError> {
        Ok(sqlx::query_scalar(
            "UPDATE grants SET revoked_at = now(), revoke_reason = $2 \
             WHERE user_id = $1 AND revoked_at IS NULL RETURNING grant_id",
        )
        .bind(user_id)
        .bind(reason)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes every consent of the user; returns how many.
    async fn delete_consents(&self, user_id: Uuid) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM consents WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
