//! The `clients` table in SQLite (embedded mode). Lists are JSON arrays, metadata JSON text;
//! the caps on dynamic and document clients are kept under `BEGIN IMMEDIATE` (SQLite's write
//! lock serialises the count and the insert, as the advisory locks do in Postgres).

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use super::{CimdWrite, Client, ClientSource, ClientStore};
use crate::error::StoreError;
use crate::store::sqlite::{begin_immediate, from_micros, json_list, now_micros, parse_list};

/// SQLite access to the `clients` table.
#[derive(Clone)]
pub struct SqliteClientStore {
    pool: SqlitePool,
}

const COLUMNS: &str = "client_id, source, client_name, redirect_uris, grant_types, response_types, \
     token_endpoint_auth_method, scope, secret_sha256, registration_token_sha256, metadata, created_at";

impl SqliteClientStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    fn from_row(row: &SqliteRow) -> Result<Client, StoreError> {
        let metadata: String = row.try_get("metadata")?;
        Ok(Client {
            client_id: row.try_get("client_id")?,
            source: ClientSource::parse(row.try_get::<&str, _>("source")?)?,
            client_name: row.try_get("client_name")?,
            redirect_uris: parse_list(row.try_get("redirect_uris")?)?,
            grant_types: parse_list(row.try_get("grant_types")?)?,
            response_types: parse_list(row.try_get("response_types")?)?,
            token_endpoint_auth_method: row.try_get("token_endpoint_auth_method")?,
            scope: row.try_get("scope")?,
            secret_sha256: row.try_get("secret_sha256")?,
            registration_token_sha256: row.try_get("registration_token_sha256")?,
            metadata: serde_json::from_str(&metadata)
                .map_err(|e| StoreError::Corrupt(format!("client metadata: {e}")))?,
            created_at: from_micros(row.try_get("created_at")?)?,
        })
    }
}

/// Metadata as stored. Without serde_json's `preserve_order` objects serialise with sorted
/// keys, so equal documents give equal text (what `jsonb` equality gives in Postgres).
fn metadata_text(c: &Client) -> String {
    c.metadata.to_string()
}

async fn insert_with<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    c: &Client,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO clients (client_id, source, client_name, redirect_uris, grant_types, response_types, \
         token_endpoint_auth_method, scope, secret_sha256, registration_token_sha256, metadata, created_at, updated_at) \
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)",
    )
    .bind(&c.client_id)
    .bind(c.source.as_str())
    .bind(&c.client_name)
    .bind(json_list(&c.redirect_uris))
    .bind(json_list(&c.grant_types))
    .bind(json_list(&c.response_types))
    .bind(&c.token_endpoint_auth_method)
    .bind(&c.scope)
    .bind(&c.secret_sha256)
    .bind(&c.registration_token_sha256)
    .bind(metadata_text(c))
    .bind(c.created_at.timestamp_micros())
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl ClientStore for SqliteClientStore {
    async fn get(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM clients WHERE client_id = ?1"
        )))
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::from_row).transpose()
    }

    async fn insert(&self, c: &Client) -> Result<(), StoreError> {
        insert_with(&self.pool, c, now_micros()).await
    }

    async fn insert_dynamic_capped(&self, c: &Client, max: i64) -> Result<bool, StoreError> {
        let mut tx = begin_immediate(&self.pool).await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM clients WHERE source = 'dynamic'")
            .fetch_one(&mut *tx)
            .await?;
        if n >= max {
            return Ok(false);
        }
        insert_with(&mut *tx, c, now_micros()).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn upsert(&self, c: &Client) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO clients (client_id, source, client_name, redirect_uris, grant_types, response_types, \
             token_endpoint_auth_method, scope, secret_sha256, registration_token_sha256, metadata, created_at, updated_at) \
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13) \
             ON CONFLICT (client_id) DO UPDATE SET source = excluded.source, client_name = excluded.client_name, \
             redirect_uris = excluded.redirect_uris, grant_types = excluded.grant_types, \
             response_types = excluded.response_types, token_endpoint_auth_method = excluded.token_endpoint_auth_method, \
             scope = excluded.scope, secret_sha256 = excluded.secret_sha256, metadata = excluded.metadata, \
             updated_at = excluded.updated_at",
        )
        .bind(&c.client_id)
        .bind(c.source.as_str())
        .bind(&c.client_name)
        .bind(json_list(&c.redirect_uris))
        .bind(json_list(&c.grant_types))
        .bind(json_list(&c.response_types))
        .bind(&c.token_endpoint_auth_method)
        .bind(&c.scope)
        .bind(&c.secret_sha256)
        .bind(&c.registration_token_sha256)
        .bind(metadata_text(c))
        .bind(c.created_at.timestamp_micros())
        .bind(now_micros())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn store_cimd(&self, c: &Client, max: i64) -> Result<CimdWrite, StoreError> {
        let metadata = metadata_text(c);
        // Unchanged documents cost one read-only statement: the UPDATE matches no row.
        let updated = sqlx::query(
            "UPDATE clients SET client_name = ?2, redirect_uris = ?3, grant_types = ?4, \
             response_types = ?5, token_endpoint_auth_method = ?6, scope = ?7, metadata = ?8, updated_at = ?9 \
             WHERE client_id = ?1 AND source = 'cimd' AND metadata IS NOT ?8",
        )
        .bind(&c.client_id)
        .bind(&c.client_name)
        .bind(json_list(&c.redirect_uris))
        .bind(json_list(&c.grant_types))
        .bind(json_list(&c.response_types))
        .bind(&c.token_endpoint_auth_method)
        .bind(&c.scope)
        .bind(&metadata)
        .bind(now_micros())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated > 0 {
            return Ok(CimdWrite::Updated);
        }
        let mut tx = begin_immediate(&self.pool).await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM clients WHERE client_id = ?1)")
                .bind(&c.client_id)
                .fetch_one(&mut *tx)
                .await?;
        if exists {
            return Ok(CimdWrite::Unchanged);
        }
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM clients WHERE source = 'cimd'")
            .fetch_one(&mut *tx)
            .await?;
        if n >= max {
            return Ok(CimdWrite::Full);
        }
        let now = now_micros();
        sqlx::query(
            "INSERT INTO clients (client_id, source, client_name, redirect_uris, grant_types, response_types, \
             token_endpoint_auth_method, scope, metadata, created_at, updated_at) \
             VALUES (?1, 'cimd', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        )
        .bind(&c.client_id)
        .bind(&c.client_name)
        .bind(json_list(&c.redirect_uris))
        .bind(json_list(&c.grant_types))
        .bind(json_list(&c.response_types))
        .bind(&c.token_endpoint_auth_method)
        .bind(&c.scope)
        .bind(&metadata)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(CimdWrite::Inserted)
    }

    async fn delete_unused_cimd(&self, ttl_secs: i64) -> Result<Vec<String>, StoreError> {
        let now = now_micros();
        Ok(sqlx::query_scalar(
            "DELETE FROM clients AS c WHERE c.source = 'cimd' \
             AND max(coalesce(c.last_used_at, c.created_at), c.updated_at) < ?1 - ?2 * 1000000 \
             AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.client_id = c.client_id \
                             AND g.revoked_at IS NULL AND g.expires_at > ?1) \
             RETURNING client_id",
        )
        .bind(now)
        .bind(ttl_secs)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn update_metadata(&self, c: &Client) -> Result<(), StoreError> {
        let r = sqlx::query(
            "UPDATE clients SET client_name = ?2, redirect_uris = ?3, grant_types = ?4, response_types = ?5, \
             scope = ?6, metadata = ?7, updated_at = ?8 WHERE client_id = ?1",
        )
        .bind(&c.client_id)
        .bind(&c.client_name)
        .bind(json_list(&c.redirect_uris))
        .bind(json_list(&c.grant_types))
        .bind(json_list(&c.response_types))
        .bind(&c.scope)
        .bind(metadata_text(c))
        .bind(now_micros())
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn rotate_registration_token(
        &self,
        client_id: &str,
        current_sha256: &[u8],
        next_sha256: &[u8],
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE clients SET registration_token_sha256 = ?3 \
             WHERE client_id = ?1 AND registration_token_sha256 = ?2",
        )
        .bind(client_id)
        .bind(current_sha256)
        .bind(next_sha256)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete(&self, client_id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM clients WHERE client_id = ?1")
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn count_dynamic(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM clients WHERE source = 'dynamic'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn touch(&self, client_ids: &[String]) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE clients SET last_used_at = ?1 \
             WHERE client_id IN (SELECT value FROM json_each(?2))",
        )
        .bind(now_micros())
        .bind(json_list(client_ids))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_unused(&self, ttl_secs: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "DELETE FROM clients WHERE source = 'dynamic' \
             AND coalesce(last_used_at, created_at) < ?1 - ?2 * 1000000 RETURNING client_id",
        )
        .bind(now_micros())
        .bind(ttl_secs)
        .fetch_all(&self.pool)
        .await?)
    }
}
