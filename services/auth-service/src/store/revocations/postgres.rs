//! `revocations` in Postgres (production).

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use super::{Revocation, RevocationKind, RevocationStore};
use crate::error::StoreError;

/// Postgres access to `revocations`.
#[derive(Clone)]
pub struct PgRevocationStore {
    pool: PgPool,
}

impl PgRevocationStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl RevocationStore for PgRevocationStore {
    async fn insert(&self, r: &Revocation) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO revocations (kind, id, expires_at, issued_before) VALUES ($1, $2, to_timestamp($3), $4) \
             ON CONFLICT (kind, id) DO UPDATE SET expires_at = GREATEST(revocations.expires_at, EXCLUDED.expires_at), \
             issued_before = GREATEST(revocations.issued_before, EXCLUDED.issued_before), revoked_at = clock_timestamp()",
        )
        .bind(r.kind.as_str())
        .bind(&r.id)
        .bind(r.expires_at as f64)
        .bind(r.issued_before)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Unexpired revocations recorded at or after `since` (all of them when `None`), and the
    /// database clock, to use as the next watermark.
    async fn since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<(Vec<Revocation>, DateTime<Utc>), StoreError> {
        let rows = sqlx::query(
            "SELECT kind, id, extract(epoch FROM expires_at)::bigint AS exp, issued_before, clock_timestamp() AS now FROM revocations \
             WHERE expires_at > now() AND ($1::timestamptz IS NULL OR revoked_at >= $1)",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind = match row.try_get::<&str, _>("kind")? {
                "token" => RevocationKind::Token,
                "client" => RevocationKind::Client,
                "user" => RevocationKind::User,
                _ => RevocationKind::Grant,
            };
            out.push(Revocation {
                kind,
                id: row.try_get("id")?,
                expires_at: row.try_get("exp")?,
                issued_before: row.try_get("issued_before")?,
            });
        }
        let now = match rows.first() {
            Some(r) => r.try_get("now")?,
            None => {
                sqlx::query_scalar("SELECT clock_timestamp()")
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        Ok((out, now))
    }

    /// Deletes rows whose tokens have all expired.
    async fn sweep(&self) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM revocations WHERE expires_at < now()")
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}
