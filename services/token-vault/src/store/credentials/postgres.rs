//! The production credential store: Postgres (`migrations/token-vault`). Each write is one
//! statement conditional on the version it read; a delete and its tombstone are one statement.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{ConnectionStatus, CredentialRow, CredentialStore, CredentialWrite, expiry};
use crate::crypto::Sealed;

type Row = (
    String,
    String,
    i64,
    String,
    Vec<u8>,
    String,
    Vec<String>,
    Option<DateTime<Utc>>,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    i64,
);

const COLUMNS: &str = "user_id, provider, version, key_id, sealed, status, scopes, expires_at, \
                       upstream_issuer, upstream_subject, connected_at, updated_at, \
                       COALESCE((SELECT t.version FROM vault_credential_tombstones t \
                       WHERE t.user_id = c.user_id AND t.provider = c.provider), 0)";

fn from_row(r: Row) -> CredentialRow {
    CredentialRow {
        user_id: r.0,
        provider: r.1,
        version: r.2,
        sealed: Sealed {
            key_id: r.3,
            blob: r.4,
        },
        status: ConnectionStatus::parse(&r.5),
        scopes: r.6,
        expires_at: r.7,
        upstream_issuer: r.8,
        upstream_subject: r.9,
        connected_at: r.10,
        updated_at: r.11,
        deleted_through: r.12,
    }
}

/// The `vault_credentials` and `vault_credential_tombstones` tables.
#[derive(Clone)]
pub struct PostgresCredentials {
    pool: PgPool,
}

impl PostgresCredentials {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait::async_trait]
impl CredentialStore for PostgresCredentials {
    async fn get(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<Option<CredentialRow>, sqlx::Error> {
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM vault_credentials c WHERE user_id = $1 AND provider = $2"
        )))
        .bind(user_id)
        .bind(provider)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(from_row))
    }

    /// The version and status of a record (what waiters poll).
    async fn version(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<Option<(i64, ConnectionStatus)>, sqlx::Error> {
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT version, status FROM vault_credentials WHERE user_id = $1 AND provider = $2",
        )
        .bind(user_id)
        .bind(provider)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(v, s)| (v, ConnectionStatus::parse(&s))))
    }

    async fn list(&self, user_id: &str) -> Result<Vec<CredentialRow>, sqlx::Error> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM vault_credentials c WHERE user_id = $1 ORDER BY provider"
        )))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// The record's version and status (`None` when there is none) and the highest version it
    /// was ever deleted at (0: never): a write's new version must exceed both.
    async fn version_and_floor(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<(Option<(i64, ConnectionStatus)>, i64), sqlx::Error> {
        let (version, status, deleted): (Option<i64>, Option<String>, i64) = sqlx::query_as(
            "SELECT c.version, c.status, COALESCE(t.version, 0) \
             FROM (SELECT $1::text AS user_id, $2::text AS provider) k \
             LEFT JOIN vault_credentials c USING (user_id, provider) \
             LEFT JOIN vault_credential_tombstones t USING (user_id, provider)",
        )
        .bind(user_id)
        .bind(provider)
        .fetch_one(&self.pool)
        .await?;
        let current =
            version.map(|v| (v, ConnectionStatus::parse(status.as_deref().unwrap_or(""))));
        Ok((current, deleted))
    }

    /// Creates the record at `w.version`; false when it already exists.
    async fn insert(
        &self,
        user_id: &str,
        provider: &str,
        w: &CredentialWrite<'_>,
        upstream_issuer: &str,
        upstream_subject: &str,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO vault_credentials (user_id, provider, version, key_id, sealed, status, scopes, \
             expires_at, upstream_issuer, upstream_subject) \
             VALUES ($1, $2, $3, $4, $5, 'connected', $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(provider)
        .bind(w.version)
        .bind(&w.sealed.key_id)
        .bind(&w.sealed.blob)
        .bind(w.scopes)
        .bind(expiry(w.expires_at))
        .bind(upstream_issuer)
        .bind(upstream_subject)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces the credential (a new connection) if the record is still at `expected`.
    async fn replace(
        &self,
        user_id: &str,
        provider: &str,
        expected: i64,
        w: &CredentialWrite<'_>,
        upstream_issuer: &str,
        upstream_subject: &str,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE vault_credentials SET version = $4, key_id = $5, sealed = $6, status = 'connected', \
             scopes = $7, expires_at = $8, upstream_issuer = $9, upstream_subject = $10, \
             connected_at = now(), updated_at = now() \
             WHERE user_id = $1 AND provider = $2 AND version = $3",
        )
        .bind(user_id)
        .bind(provider)
        .bind(expected)
        .bind(w.version)
        .bind(&w.sealed.key_id)
        .bind(&w.sealed.blob)
        .bind(w.scopes)
        .bind(expiry(w.expires_at))
        .bind(upstream_issuer)
        .bind(upstream_subject)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores refreshed tokens if the record is still at `expected`.
    async fn store_refreshed(
        &self,
        user_id: &str,
        provider: &str,
        expected: i64,
        w: &CredentialWrite<'_>,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE vault_credentials SET version = $4, key_id = $5, sealed = $6, status = 'connected', \
             scopes = $7, expires_at = $8, updated_at = now() \
             WHERE user_id = $1 AND provider = $2 AND version = $3",
        )
        .bind(user_id)
        .bind(provider)
        .bind(expected)
        .bind(w.version)
        .bind(&w.sealed.key_id)
        .bind(&w.sealed.blob)
        .bind(w.scopes)
        .bind(expiry(w.expires_at))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks the record as needing a new connection, if it is still at `expected`. The
    /// ciphertext (and so the version) stays, readable for an upstream revocation later.
    async fn mark_reauthorization_required(
        &self,
        user_id: &str,
        provider: &str,
        expected: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE vault_credentials SET status = 'reauthorization_required', updated_at = now() \
             WHERE user_id = $1 AND provider = $2 AND version = $3",
        )
        .bind(user_id)
        .bind(provider)
        .bind(expected)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes the record and records its version in its tombstone, in one statement (a later
    /// record of the pair starts above it); returns what was deleted.
    async fn delete(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<Option<CredentialRow>, sqlx::Error> {
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH c AS (DELETE FROM vault_credentials WHERE user_id = $1 AND provider = $2 RETURNING *), \
             t AS (INSERT INTO vault_credential_tombstones (user_id, provider, version) \
                   SELECT user_id, provider, version FROM c \
                   ON CONFLICT (user_id, provider) DO UPDATE SET deleted_at = now(), \
                   version = GREATEST(vault_credential_tombstones.version, EXCLUDED.version)) \
             SELECT {COLUMNS} FROM c"
        )))
        .bind(user_id)
        .bind(provider)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(from_row))
    }

    /// Up to `limit` records not sealed under `current_key`, in key order after `after`.
    async fn not_under_key(
        &self,
        current_key: &str,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<CredentialRow>, sqlx::Error> {
        let (u, p) = after.unwrap_or(("", ""));
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM vault_credentials c WHERE key_id <> $1 AND (user_id, provider) > ($2, $3) \
             ORDER BY user_id, provider LIMIT $4"
        )))
        .bind(current_key)
        .bind(u)
        .bind(p)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Re-seals one record under another key, keeping its version (the authenticated data is
    /// unchanged), if neither its version nor its key changed meanwhile.
    async fn reseal(&self, row: &CredentialRow, sealed: &Sealed) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE vault_credentials SET key_id = $5, sealed = $6 \
             WHERE user_id = $1 AND provider = $2 AND version = $3 AND key_id = $4",
        )
        .bind(&row.user_id)
        .bind(&row.provider)
        .bind(row.version)
        .bind(&row.sealed.key_id)
        .bind(&sealed.key_id)
        .bind(&sealed.blob)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// How many records are sealed under each key.
    async fn count_by_key(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT key_id, count(*) FROM vault_credentials GROUP BY key_id ORDER BY key_id",
        )
        .fetch_all(&self.pool)
        .await
    }

    async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}
