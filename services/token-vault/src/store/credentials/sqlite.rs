//! The embedded credential store: SQLite (`migrations/token-vault-sqlite`), the same tables and
//! the same conditional writes as [`super::PostgresCredentials`]. Single statements are atomic
//! in SQLite as in Postgres; the delete, one statement with its tombstone in Postgres, is a
//! `BEGIN IMMEDIATE` transaction here (the write lock taken before the read, so no other writer
//! slips between them). The ciphertext is stored exactly as in Postgres: the `sealed` BLOB is
//! nonce ‖ AES-256-GCM ciphertext ‖ tag, never plaintext.

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use super::{ConnectionStatus, CredentialRow, CredentialStore, CredentialWrite, expiry};
use crate::crypto::Sealed;

type Row = (
    String,
    String,
    i64,
    String,
    Vec<u8>,
    String,
    String,
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

fn from_row(r: Row) -> Result<CredentialRow, sqlx::Error> {
    let scopes: Vec<String> =
        serde_json::from_str(&r.6).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(CredentialRow {
        user_id: r.0,
        provider: r.1,
        version: r.2,
        sealed: Sealed {
            key_id: r.3,
            blob: r.4,
        },
        status: ConnectionStatus::parse(&r.5),
        scopes,
        expires_at: r.7,
        upstream_issuer: r.8,
        upstream_subject: r.9,
        connected_at: r.10,
        updated_at: r.11,
        deleted_through: r.12,
    })
}

/// `text[]` of Postgres is a JSON array here.
fn scopes_json(scopes: &[String]) -> String {
    serde_json::to_string(scopes).expect("strings serialize")
}

/// The `vault_credentials` and `vault_credential_tombstones` tables of the embedded database.
#[derive(Clone)]
pub struct SqliteCredentials {
    pool: SqlitePool,
}

impl SqliteCredentials {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait::async_trait]
impl CredentialStore for SqliteCredentials {
    async fn get(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<Option<CredentialRow>, sqlx::Error> {
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM vault_credentials c WHERE user_id = ?1 AND provider = ?2"
        )))
        .bind(user_id)
        .bind(provider)
        .fetch_optional(&self.pool)
        .await?;
        row.map(from_row).transpose()
    }

    async fn version(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<Option<(i64, ConnectionStatus)>, sqlx::Error> {
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT version, status FROM vault_credentials WHERE user_id = ?1 AND provider = ?2",
        )
        .bind(user_id)
        .bind(provider)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(v, s)| (v, ConnectionStatus::parse(&s))))
    }

    async fn list(&self, user_id: &str) -> Result<Vec<CredentialRow>, sqlx::Error> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM vault_credentials c WHERE user_id = ?1 ORDER BY provider"
        )))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(from_row).collect()
    }

    async fn version_and_floor(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<(Option<(i64, ConnectionStatus)>, i64), sqlx::Error> {
        // One statement: one consistent read of both tables.
        let (version, status, deleted): (Option<i64>, Option<String>, i64) = sqlx::query_as(
            "SELECT c.version, c.status, \
             COALESCE((SELECT t.version FROM vault_credential_tombstones t \
                       WHERE t.user_id = ?1 AND t.provider = ?2), 0) \
             FROM (SELECT 1) k \
             LEFT JOIN vault_credentials c ON c.user_id = ?1 AND c.provider = ?2",
        )
        .bind(user_id)
        .bind(provider)
        .fetch_one(&self.pool)
        .await?;
        let current =
            version.map(|v| (v, ConnectionStatus::parse(status.as_deref().unwrap_or(""))));
        Ok((current, deleted))
    }

    async fn insert(
        &self,
        user_id: &str,
        provider: &str,
        w: &CredentialWrite<'_>,
        upstream_issuer: &str,
        upstream_subject: &str,
    ) -> Result<bool, sqlx::Error> {
        let now = Utc::now();
        let done = sqlx::query(
            "INSERT INTO vault_credentials (user_id, provider, version, key_id, sealed, status, scopes, \
             expires_at, upstream_issuer, upstream_subject, connected_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'connected', ?6, ?7, ?8, ?9, ?10, ?10) ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(provider)
        .bind(w.version)
        .bind(&w.sealed.key_id)
        .bind(&w.sealed.blob)
        .bind(scopes_json(w.scopes))
        .bind(expiry(w.expires_at))
        .bind(upstream_issuer)
        .bind(upstream_subject)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

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
            "UPDATE vault_credentials SET version = ?4, key_id = ?5, sealed = ?6, status = 'connected', \
             scopes = ?7, expires_at = ?8, upstream_issuer = ?9, upstream_subject = ?10, \
             connected_at = ?11, updated_at = ?11 \
             WHERE user_id = ?1 AND provider = ?2 AND version = ?3",
        )
        .bind(user_id)
        .bind(provider)
        .bind(expected)
        .bind(w.version)
        .bind(&w.sealed.key_id)
        .bind(&w.sealed.blob)
        .bind(scopes_json(w.scopes))
        .bind(expiry(w.expires_at))
        .bind(upstream_issuer)
        .bind(upstream_subject)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn store_refreshed(
        &self,
        user_id: &str,
        provider: &str,
        expected: i64,
        w: &CredentialWrite<'_>,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE vault_credentials SET version = ?4, key_id = ?5, sealed = ?6, status = 'connected', \
             scopes = ?7, expires_at = ?8, updated_at = ?9 \
             WHERE user_id = ?1 AND provider = ?2 AND version = ?3",
        )
        .bind(user_id)
        .bind(provider)
        .bind(expected)
        .bind(w.version)
        .bind(&w.sealed.key_id)
        .bind(&w.sealed.blob)
        .bind(scopes_json(w.scopes))
        .bind(expiry(w.expires_at))
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn mark_reauthorization_required(
        &self,
        user_id: &str,
        provider: &str,
        expected: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE vault_credentials SET status = 'reauthorization_required', updated_at = ?4 \
             WHERE user_id = ?1 AND provider = ?2 AND version = ?3",
        )
        .bind(user_id)
        .bind(provider)
        .bind(expected)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<Option<CredentialRow>, sqlx::Error> {
        // What Postgres does in one statement (the CTE's DELETE locks the row): the write lock
        // first, then read, delete and raise the tombstone, then commit.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM vault_credentials c WHERE user_id = ?1 AND provider = ?2"
        )))
        .bind(user_id)
        .bind(provider)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        sqlx::query("DELETE FROM vault_credentials WHERE user_id = ?1 AND provider = ?2")
            .bind(user_id)
            .bind(provider)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO vault_credential_tombstones (user_id, provider, version, deleted_at) \
             VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (user_id, provider) DO UPDATE SET deleted_at = excluded.deleted_at, \
             version = MAX(vault_credential_tombstones.version, excluded.version)",
        )
        .bind(user_id)
        .bind(provider)
        .bind(row.2)
        .bind(Utc::now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        from_row(row).map(Some)
    }

    async fn not_under_key(
        &self,
        current_key: &str,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<CredentialRow>, sqlx::Error> {
        let (u, p) = after.unwrap_or(("", ""));
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM vault_credentials c WHERE key_id <> ?1 AND (user_id, provider) > (?2, ?3) \
             ORDER BY user_id, provider LIMIT ?4"
        )))
        .bind(current_key)
        .bind(u)
        .bind(p)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(from_row).collect()
    }

    async fn reseal(&self, row: &CredentialRow, sealed: &Sealed) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE vault_credentials SET key_id = ?5, sealed = ?6 \
             WHERE user_id = ?1 AND provider = ?2 AND version = ?3 AND key_id = ?4",
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
