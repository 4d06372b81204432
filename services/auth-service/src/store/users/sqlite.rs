//! `users` and `upstream_identities` in SQLite (embedded mode).

use sqlx::SqlitePool;
use uuid::Uuid;

use super::UserStore;
use crate::error::StoreError;
use crate::store::sqlite::{begin_immediate, now_micros};

/// SQLite access to `users` and `upstream_identities`.
#[derive(Clone)]
pub struct SqliteUserStore {
    pool: SqlitePool,
}

impl SqliteUserStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

const UPSERT_USER: &str = "INSERT INTO users (user_id, provider, external_subject, username, created_at, last_login_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
     ON CONFLICT (provider, external_subject) DO UPDATE SET last_login_at = excluded.last_login_at, \
     username = excluded.username RETURNING user_id";

#[async_trait::async_trait]
impl UserStore for SqliteUserStore {
    async fn upsert(
        &self,
        provider: &str,
        external_subject: &str,
        username: &str,
    ) -> Result<Uuid, StoreError> {
        Ok(sqlx::query_scalar(UPSERT_USER)
            .bind(Uuid::new_v4())
            .bind(provider)
            .bind(external_subject)
            .bind(username)
            .bind(now_micros())
            .fetch_one(&self.pool)
            .await?)
    }

    async fn link_upstream(
        &self,
        provider: &str,
        issuer: &str,
        subject: &str,
        username: &str,
    ) -> Result<Uuid, StoreError> {
        let now = now_micros();
        // The write lock serialises concurrent first logins: the second sees the first's link.
        let mut tx = begin_immediate(&self.pool).await?;
        let linked: Option<Uuid> = sqlx::query_scalar(
            "UPDATE upstream_identities SET last_login_at = ?4, username = ?3 \
             WHERE upstream_issuer = ?1 AND upstream_subject = ?2 RETURNING user_id",
        )
        .bind(issuer)
        .bind(subject)
        .bind(username)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let user_id = match linked {
            Some(u) => u,
            None => {
                let u: Uuid = sqlx::query_scalar(UPSERT_USER)
                    .bind(Uuid::new_v4())
                    .bind(issuer)
                    .bind(subject)
                    .bind(username)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query_scalar(
                    "INSERT INTO upstream_identities (upstream_issuer, upstream_subject, user_id, provider, \
                     username, linked_at, last_login_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
                     ON CONFLICT (upstream_issuer, upstream_subject) DO UPDATE SET last_login_at = excluded.last_login_at \
                     RETURNING user_id",
                )
                .bind(issuer)
                .bind(subject)
                .bind(u)
                .bind(provider)
                .bind(username)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        sqlx::query("UPDATE users SET last_login_at = ?2 WHERE user_id = ?1")
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(user_id)
    }

    async fn username(&self, user_id: Uuid) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT username FROM users WHERE user_id = ?1",
            )
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .flatten(),
        )
    }

    async fn exists(&self, user_id: Uuid) -> Result<bool, StoreError> {
        Ok(
            sqlx::query_scalar::<_, i32>("SELECT 1 FROM users WHERE user_id = ?1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }
}
