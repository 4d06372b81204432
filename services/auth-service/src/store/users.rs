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

    /// The mcpauth user linked to an upstream account, created and linked on first sight. The
    /// same `(issuer, subject)` always yields the same user (concurrent first logins included:
    /// the `users` upsert serialises them on its unique key).
    pub async fn link_upstream(
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
    pub async fn username(&self, user_id: Uuid) -> Result<Option<String>, StoreError> {
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
    pub async fn exists(&self, user_id: Uuid) -> Result<bool, StoreError> {
        Ok(
            sqlx::query_scalar::<_, i32>("SELECT 1 FROM users WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
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
