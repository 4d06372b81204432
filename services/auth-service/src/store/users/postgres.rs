//! `users` and `upstream_identities` in Postgres (production).

use sqlx::PgPool;
use uuid::Uuid;

use super::UserStore;
use crate::error::StoreError;

/// Postgres access to `users` and `upstream_identities`.
#[derive(Clone)]
pub struct PgUserStore {
    pool: PgPool,
}

impl PgUserStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl UserStore for PgUserStore {
    /// Finds or creates the user that `provider` knows as `external_subject`; returns its id.
    async fn upsert(
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

    /// The mcpauth user linked to an upstream account, created and linked on first sight. The
    /// same `(issuer, subject)` always yields the same user (concurrent first logins included:
    /// the `users` upsert serialises them on its unique key).
    async fn link_upstream(
        &self,
        provider: &str,
        issuer: &str,
        subject: &str,
        username: &str,
    ) -> Result<Uuid, StoreError> {
        let mut tx = self.pool.begin().await?;
        let linked: Option<Uuid> = sqlx::query_scalar(
            "UPDATE upstream_identities SET last_login_at = now(), username = $3 \
             WHERE upstream_issuer = $1 AND upstream_subject = $2 RETURNING user_id",
        )
        .bind(issuer)
        .bind(subject)
        .bind(username)
        .fetch_optional(&mut *tx)
        .await?;
        let user_id = match linked {
            Some(u) => u,
            None => {
                let u: Uuid = sqlx::query_scalar(
                    "INSERT INTO users (user_id, provider, external_subject, username) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (provider, external_subject) DO UPDATE SET last_login_at = now(), username = EXCLUDED.username \
                     RETURNING user_id",
                )
                .bind(Uuid::new_v4())
                .bind(issuer)
                .bind(subject)
                .bind(username)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query_scalar(
                    "INSERT INTO upstream_identities (upstream_issuer, upstream_subject, user_id, provider, username) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (upstream_issuer, upstream_subject) DO UPDATE SET last_login_at = now() \
                     RETURNING user_id",
                )
                .bind(issuer)
                .bind(subject)
                .bind(u)
                .bind(provider)
                .bind(username)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        sqlx::query("UPDATE users SET last_login_at = now() WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(user_id)
    }

    /// The user's display name.
    async fn username(&self, user_id: Uuid) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT username FROM users WHERE user_id = $1",
            )
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .flatten(),
        )
    }

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
}
