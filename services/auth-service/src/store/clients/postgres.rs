//! The `clients` table in Postgres (production).

use sqlx::{PgPool, Row};

use super::{CimdWrite, Client, ClientSource, ClientStore};
use crate::error::StoreError;

/// Postgres access to the `clients` table.
#[derive(Clone)]
pub struct PgClientStore {
    pool: PgPool,
}

const COLUMNS: &str = "client_id, source, client_name, redirect_uris, grant_types, response_types, \
     token_endpoint_auth_method, scope, secret_sha256, registration_token_sha256, metadata, created_at";

impl PgClientStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Client, StoreError> {
        Ok(Client {
            client_id: row.try_get("client_id")?,
            source: ClientSource::parse(row.try_get::<&str, _>("source")?)?,
            client_name: row.try_get("client_name")?,
            redirect_uris: row.try_get("redirect_uris")?,
            grant_types: row.try_get("grant_types")?,
            response_types: row.try_get("response_types")?,
            token_endpoint_auth_method: row.try_get("token_endpoint_auth_method")?,
            scope: row.try_get("scope")?,
            secret_sha256: row.try_get("secret_sha256")?,
            registration_token_sha256: row.try_get("registration_token_sha256")?,
            metadata: row.try_get("metadata")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

#[async_trait::async_trait]
impl ClientStore for PgClientStore {
    async fn get(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM clients WHERE client_id = $1"
        )))
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::from_row).transpose()
    }

    /// Inserts a new client; `AlreadyExists` on an id collision.
    async fn insert(&self, c: &Client) -> Result<(), StoreError> {
        insert_with(&self.pool, c).await
    }

    /// Inserts a new dynamic client unless `max` dynamic clients exist already (then `false`).
    /// The count and the insert happen under a transaction-scoped advisory lock, so that
    /// concurrent registrations, on any replica, cannot overshoot the cap.
    async fn insert_dynamic_capped(&self, c: &Client, max: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(DYNAMIC_CAP_LOCK)
            .execute(&mut *tx)
            .await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM clients WHERE source = 'dynamic'")
            .fetch_one(&mut *tx)
            .await?;
        if n >= max {
            return Ok(false);
        }
        insert_with(&mut *tx, c).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Inserts or replaces a client that configuration or a metadata document defines.
    async fn upsert(&self, c: &Client) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO clients (client_id, source, client_name, redirect_uris, grant_types, response_types, \
             token_endpoint_auth_method, scope, secret_sha256, registration_token_sha256, metadata, created_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) \
             ON CONFLICT (client_id) DO UPDATE SET source = EXCLUDED.source, client_name = EXCLUDED.client_name, \
             redirect_uris = EXCLUDED.redirect_uris, grant_types = EXCLUDED.grant_types, \
             response_types = EXCLUDED.response_types, token_endpoint_auth_method = EXCLUDED.token_endpoint_auth_method, \
             scope = EXCLUDED.scope, secret_sha256 = EXCLUDED.secret_sha256, metadata = EXCLUDED.metadata, updated_at = now()",
        )
        .bind(&c.client_id)
        .bind(c.source.as_str())
        .bind(&c.client_name)
        .bind(&c.redirect_uris)
        .bind(&c.grant_types)
        .bind(&c.response_types)
        .bind(&c.token_endpoint_auth_method)
        .bind(&c.scope)
        .bind(&c.secret_sha256)
        .bind(&c.registration_token_sha256)
        .bind(&c.metadata)
        .bind(c.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores the client a metadata document defines, writing only when the document is new or
    /// differs from the stored one (a lookup of an unchanged document costs one read-only
    /// statement). A new row is refused once `max` document clients exist; the count and the
    /// insert happen under an advisory lock, as for dynamic registrations. A row of another
    /// source with the same id is left as it is.
    async fn store_cimd(&self, c: &Client, max: i64) -> Result<CimdWrite, StoreError> {
        let (updated, exists): (i64, bool) = sqlx::query_as(
            "WITH u AS (UPDATE clients SET client_name = $2, redirect_uris = $3, grant_types = $4, \
             response_types = $5, token_endpoint_auth_method = $6, scope = $7, metadata = $8, updated_at = now() \
             WHERE client_id = $1 AND source = 'cimd' AND metadata IS DISTINCT FROM $8 RETURNING 1) \
             SELECT (SELECT count(*) FROM u), EXISTS (SELECT 1 FROM clients WHERE client_id = $1)",
        )
        .bind(&c.client_id)
        .bind(&c.client_name)
        .bind(&c.redirect_uris)
        .bind(&c.grant_types)
        .bind(&c.response_types)
        .bind(&c.token_endpoint_auth_method)
        .bind(&c.scope)
        .bind(&c.metadata)
        .fetch_one(&self.pool)
        .await?;
        if updated > 0 {
            return Ok(CimdWrite::Updated);
        }
        if exists {
            return Ok(CimdWrite::Unchanged);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CIMD_CAP_LOCK)
            .execute(&mut *tx)
            .await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM clients WHERE source = 'cimd'")
            .fetch_one(&mut *tx)
            .await?;
        if n >= max {
            return Ok(CimdWrite::Full);
        }
        let r = sqlx::query(
            "INSERT INTO clients (client_id, source, client_name, redirect_uris, grant_types, response_types, \
             token_endpoint_auth_method, scope, metadata, created_at) \
             VALUES ($1, 'cimd', $2, $3, $4, $5, $6, $7, $8, now()) ON CONFLICT (client_id) DO NOTHING",
        )
        .bind(&c.client_id)
        .bind(&c.client_name)
        .bind(&c.redirect_uris)
        .bind(&c.grant_types)
        .bind(&c.response_types)
        .bind(&c.token_endpoint_auth_method)
        .bind(&c.scope)
        .bind(&c.metadata)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(if r.rows_affected() == 1 {
            CimdWrite::Inserted
        } else {
            CimdWrite::Unchanged
        })
    }

    /// Deletes document clients that have no live grant and were neither used at `/token` nor
    /// changed within `ttl_secs`; returns their ids. (Consents go with them: the next use asks
    /// the user again.)
    async fn delete_unused_cimd(&self, ttl_secs: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "DELETE FROM clients c WHERE c.source = 'cimd' \
             AND greatest(coalesce(c.last_used_at, c.created_at), c.updated_at) < now() - make_interval(secs => $1) \
             AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.client_id = c.client_id \
                             AND g.revoked_at IS NULL AND g.expires_at > now()) \
             RETURNING c.client_id",
        )
        .bind(ttl_secs as f64)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Replaces a dynamic client's metadata (RFC 7592 update). The secret and registration
    /// token are kept.
    async fn update_metadata(&self, c: &Client) -> Result<(), StoreError> {
        let r = sqlx::query(
            "UPDATE clients SET client_name = $2, redirect_uris = $3, grant_types = $4, response_types = $5, \
             scope = $6, metadata = $7, updated_at = now() WHERE client_id = $1",
        )
        .bind(&c.client_id)
        .bind(&c.client_name)
        .bind(&c.redirect_uris)
        .bind(&c.grant_types)
        .bind(&c.response_types)
        .bind(&c.scope)
        .bind(&c.metadata)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Replaces the registration access token (RFC 7592 §3: rotated on every use), only if the
    /// presented one is still current, so two concurrent uses cannot both rotate.
    async fn rotate_registration_token(
        &self,
        client_id: &str,
        current_sha256: &[u8],
        next_sha256: &[u8],
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE clients SET registration_token_sha256 = $3 \
             WHERE client_id = $1 AND registration_token_sha256 = $2",
        )
        .bind(client_id)
        .bind(current_sha256)
        .bind(next_sha256)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete(&self, client_id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM clients WHERE client_id = $1")
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

    /// Records that these clients were used (batched by the caller).
    async fn touch(&self, client_ids: &[String]) -> Result<(), StoreError> {
        sqlx::query("UPDATE clients SET last_used_at = now() WHERE client_id = ANY($1)")
            .bind(client_ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes dynamic clients never used within `ttl_secs`; returns their ids.
    async fn delete_unused(&self, ttl_secs: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "DELETE FROM clients WHERE source = 'dynamic' \
             AND coalesce(last_used_at, created_at) < now() - make_interval(secs => $1) RETURNING client_id",
        )
        .bind(ttl_secs as f64)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Advisory lock key serialising dynamic registrations against `registration.max_clients`.
const DYNAMIC_CAP_LOCK: i64 = 0x6d63_7061_7574_6801;
/// Advisory lock key serialising new document clients against `cimd.max_clients`.
const CIMD_CAP_LOCK: i64 = 0x6d63_7061_7574_6802;

async fn insert_with<'e>(db: impl sqlx::PgExecutor<'e>, c: &Client) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO clients (client_id, source, client_name, redirect_uris, grant_types, response_types, \
         token_endpoint_auth_method, scope, secret_sha256, registration_token_sha256, metadata, created_at) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
    )
    .bind(&c.client_id)
    .bind(c.source.as_str())
    .bind(&c.client_name)
    .bind(&c.redirect_uris)
    .bind(&c.grant_types)
    .bind(&c.response_types)
    .bind(&c.token_endpoint_auth_method)
    .bind(&c.scope)
    .bind(&c.secret_sha256)
    .bind(&c.registration_token_sha256)
    .bind(&c.metadata)
    .bind(c.created_at)
    .execute(db)
    .await?;
    Ok(())
}
