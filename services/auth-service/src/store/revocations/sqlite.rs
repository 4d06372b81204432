//! `revocations` in SQLite (embedded mode). `expires_at` is stored in microseconds like every
//! instant; `issued_before` stays Unix seconds, as in Postgres.

use chrono::{DateTime, Utc};
use sqlx::{Row, SqlitePool};

use super::{Revocation, RevocationKind, RevocationStore};
use crate::error::StoreError;
use crate::store::sqlite::{from_micros, now_micros, secs_to_micros};

/// SQLite access to `revocations`.
#[derive(Clone)]
pub struct SqliteRevocationStore {
    pool: SqlitePool,
}

impl SqliteRevocationStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl RevocationStore for SqliteRevocationStore {
    async fn insert(&self, r: &Revocation) -> Result<(), StoreError> {
        // `max(coalesce(a, b), coalesce(b, a))` is Postgres' GREATEST, which ignores NULLs
        // (SQLite's max() returns NULL if any argument is).
        sqlx::query(
            "INSERT INTO revocations (kind, id, revoked_at, expires_at, issued_before) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (kind, id) DO UPDATE SET expires_at = max(revocations.expires_at, excluded.expires_at), \
             issued_before = max(coalesce(revocations.issued_before, excluded.issued_before), \
                                 coalesce(excluded.issued_before, revocations.issued_before)), \
             revoked_at = excluded.revoked_at",
        )
        .bind(r.kind.as_str())
        .bind(&r.id)
        .bind(now_micros())
        .bind(secs_to_micros(r.expires_at))
        .bind(r.issued_before)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<(Vec<Revocation>, DateTime<Utc>), StoreError> {
        // The watermark is read before the rows: anything recorded after it is found next time.
        let now = now_micros();
        let rows = sqlx::query(
            "SELECT kind, id, expires_at, issued_before FROM revocations \
             WHERE expires_at > ?1 AND (?2 IS NULL OR revoked_at >= ?2)",
        )
        .bind(now)
        .bind(since.map(|t| t.timestamp_micros()))
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
                expires_at: row.try_get::<i64, _>("expires_at")?.div_euclid(1_000_000),
                issued_before: row.try_get("issued_before")?,
            });
        }
        Ok((out, from_micros(now)?))
    }

    async fn sweep(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM revocations WHERE expires_at < ?1")
            .bind(now_micros())
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
