//! Grants and their refresh-token families. Only SHA-256 digests of refresh tokens are stored.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::domain::refresh::{self, RefreshDecision};
use crate::domain::scope::ScopeSet;
use crate::error::StoreError;

/// One authorization of a client by a user.
#[derive(Debug, Clone)]
pub struct Grant {
    pub grant_id: Uuid,
    pub user_id: Uuid,
    pub client_id: String,
    pub scope: String,
    pub resource: String,
}

/// The state of a presented refresh token, read under a row lock.
#[derive(Debug, Clone)]
pub struct RefreshTokenRow {
    pub grant: Grant,
    pub scope: String,
    pub resource: String,
    pub expires_at: DateTime<Utc>,
    pub grant_revoked: bool,
}

/// Outcome of a refresh attempt.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// A successor was stored; issue tokens for this row's grant.
    Issued(RefreshTokenRow),
    /// Unknown, expired, or its grant revoked.
    Invalid,
    /// A spent token was replayed: the grant has been revoked.
    ReuseDetected(Grant),
    /// The requested scope is not within the token's.
    ScopeNotGranted,
    /// The requested resource is not the grant's.
    ResourceNotGranted,
}

/// A refresh attempt, as the token endpoint hands it to storage.
#[derive(Debug, Clone, Copy)]
pub struct RefreshRequest<'a> {
    pub presented_sha256: &'a [u8],
    pub client_id: &'a str,
    pub successor_sha256: &'a [u8],
    /// Narrower scope asked for (already parsed); `None` keeps the token's.
    pub requested_scope: Option<&'a ScopeSet>,
    /// A configured resource identifier; must be the grant's.
    pub requested_resource: Option<&'a str>,
    pub grace_secs: i64,
    pub refresh_ttl_secs: i64,
}

/// Postgres access to `grants` and `refresh_tokens`.
#[derive(Clone)]
pub struct GrantStore {
    pool: PgPool,
}

impl GrantStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates a grant and, when `refresh_sha256` is given, its first refresh token.
    pub async fn create(
        &self,
        grant: &Grant,
        expires_at: DateTime<Utc>,
        refresh_sha256: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO grants (grant_id, user_id, client_id, scope, resource, expires_at) VALUES ($1,$2,$3,$4,$5,$6)",
        )
        .bind(grant.grant_id)
        .bind(grant.user_id)
        .bind(&grant.client_id)
        .bind(&grant.scope)
        .bind(&grant.resource)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        if let Some(hash) = refresh_sha256 {
            insert_refresh(
                &mut tx,
                hash,
                grant.grant_id,
                None,
                &grant.scope,
                &grant.resource,
                expires_at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Redeems a refresh token: rotation with grace (see `domain::refresh`), reuse detection,
    /// all in one transaction holding the token's row lock, so that concurrent refreshes with
    /// the same token serialise instead of failing. `requested_scope` narrows the access token
    /// only (the returned row's `scope`).
    pub async fn refresh(&self, r: RefreshRequest<'_>) -> Result<RefreshOutcome, StoreError> {
        let RefreshRequest {
            presented_sha256,
            client_id,
            successor_sha256,
            requested_scope,
            requested_resource,
            grace_secs,
            refresh_ttl_secs,
        } = r;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT rt.scope, rt.resource, rt.expires_at, rt.rotated_at, rt.successor_used, rt.parent_sha256, \
                    g.grant_id, g.user_id, g.client_id, g.scope AS grant_scope, g.resource AS grant_resource, \
                    g.revoked_at IS NOT NULL AS grant_revoked, now() AS now \
             FROM refresh_tokens rt JOIN grants g USING (grant_id) \
             WHERE rt.token_sha256 = $1 FOR UPDATE OF rt",
        )
        .bind(presented_sha256)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(RefreshOutcome::Invalid);
        };
        let grant = Grant {
            grant_id: row.try_get("grant_id")?,
            user_id: row.try_get("user_id")?,
            client_id: row.try_get("client_id")?,
            scope: row.try_get("grant_scope")?,
            resource: row.try_get("grant_resource")?,
        };
        let now: DateTime<Utc> = row.try_get("now")?;
        let expires_at: DateTime<Utc> = row.try_get("expires_at")?;
        let grant_revoked: bool = row.try_get("grant_revoked")?;
        // A token presented by another client is treated like an unknown one (RFC 6749 §6).
        if grant.client_id != client_id || grant_revoked || expires_at <= now {
            return Ok(RefreshOutcome::Invalid);
        }
        let rotated_at: Option<DateTime<Utc>> = row.try_get("rotated_at")?;
        let successor_used: bool = row.try_get("successor_used")?;
        let parent: Option<Vec<u8>> = row.try_get("parent_sha256")?;
        let decision = refresh::decide(
            rotated_at.map(|t| t.timestamp()),
            successor_used,
            now.timestamp(),
            grace_secs,
        );
        if decision == RefreshDecision::Reuse {
            sqlx::query("UPDATE grants SET revoked_at = now(), revoke_reason = 'refresh_token_reuse' WHERE grant_id = $1 AND revoked_at IS NULL")
                .bind(grant.grant_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(RefreshOutcome::ReuseDetected(grant));
        }
        let token_scope: String = row.try_get("scope")?;
        let resource: String = row.try_get("resource")?;
        if requested_resource.is_some_and(|r| r != resource) {
            return Ok(RefreshOutcome::ResourceNotGranted);
        }
        let scope = match requested_scope {
            None => token_scope.clone(),
            Some(asked) => {
                let granted = ScopeSet::parse(&token_scope)
                    .map_err(|_| StoreError::Corrupt("stored scope".into()))?;
                if !asked.is_subset(&granted) {
                    return Ok(RefreshOutcome::ScopeNotGranted);
                }
                asked.to_string()
            }
        };
        let successor_expiry = now + chrono::Duration::seconds(refresh_ttl_secs);
        // One round trip: spend the presented token (on a first use), end its parent's grace
        // period (using a successor does that), and store the successor. RFC 6749 §6: the
        // successor keeps the presented token's scope; a narrower `scope` applies to this
        // access token only.
        sqlx::query(
            "WITH spent AS (\
                 UPDATE refresh_tokens SET rotated_at = now() WHERE token_sha256 = $2 AND $7 RETURNING 1), \
             parent AS (\
                 UPDATE refresh_tokens SET successor_used = true \
                 WHERE $7 AND token_sha256 = $8 AND NOT successor_used RETURNING 1) \
             INSERT INTO refresh_tokens (token_sha256, grant_id, parent_sha256, scope, resource, expires_at) \
             VALUES ($1, $3, $2, $4, $5, $6)",
        )
        .bind(successor_sha256)
        .bind(presented_sha256)
        .bind(grant.grant_id)
        .bind(&token_scope)
        .bind(&resource)
        .bind(successor_expiry)
        .bind(decision == RefreshDecision::Rotate)
        .bind(parent.as_deref())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Issued(RefreshTokenRow {
            grant,
            scope,
            resource,
            expires_at: successor_expiry,
            grant_revoked: false,
        }))
    }

    /// Looks up an active (unspent, unexpired, unrevoked) refresh token for introspection.
    pub async fn active_refresh(
        &self,
        sha256: &[u8],
    ) -> Result<Option<(RefreshTokenRow, DateTime<Utc>)>, StoreError> {
        let row = sqlx::query(
            "SELECT rt.scope, rt.resource, rt.expires_at, rt.created_at, g.grant_id, g.user_id, g.client_id, \
                    g.scope AS grant_scope, g.resource AS grant_resource \
             FROM refresh_tokens rt JOIN grants g USING (grant_id) \
             WHERE rt.token_sha256 = $1 AND rt.rotated_at IS NULL AND g.revoked_at IS NULL AND rt.expires_at > now()",
        )
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((
            RefreshTokenRow {
                grant: Grant {
                    grant_id: row.try_get("grant_id")?,
                    user_id: row.try_get("user_id")?,
                    client_id: row.try_get("client_id")?,
                    scope: row.try_get("grant_scope")?,
                    resource: row.try_get("grant_resource")?,
                },
                scope: row.try_get("scope")?,
                resource: row.try_get("resource")?,
                expires_at: row.try_get("expires_at")?,
                grant_revoked: false,
            },
            row.try_get("created_at")?,
        )))
    }

    /// The grant a refresh token belongs to, whatever the token's state (for revocation).
    pub async fn grant_of_refresh(&self, sha256: &[u8]) -> Result<Option<Grant>, StoreError> {
        let row = sqlx::query(
            "SELECT g.grant_id, g.user_id, g.client_id, g.scope, g.resource FROM refresh_tokens rt \
             JOIN grants g USING (grant_id) WHERE rt.token_sha256 = $1",
        )
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Grant {
                grant_id: row.try_get("grant_id")?,
                user_id: row.try_get("user_id")?,
                client_id: row.try_get("client_id")?,
                scope: row.try_get("scope")?,
                resource: row.try_get("resource")?,
            })
        })
        .transpose()
    }

    /// Marks a grant revoked (its refresh tokens stop working at once).
    pub async fn revoke(&self, grant_id: Uuid, reason: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE grants SET revoked_at = now(), revoke_reason = $2 WHERE grant_id = $1 AND revoked_at IS NULL")
            .bind(grant_id)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes refresh tokens and grants past their expiry (keeps tables from growing).
    pub async fn sweep_expired(&self) -> Result<u64, StoreError> {
        let a =
            sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < now() - interval '1 day'")
                .execute(&self.pool)
                .await?
                .rows_affected();
        let b = sqlx::query("DELETE FROM grants WHERE expires_at < now() - interval '1 day'")
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(a + b)
    }
}

async fn insert_refresh(
    tx: &mut Transaction<'_, Postgres>,
    hash: &[u8],
    grant_id: Uuid,
    parent: Option<&[u8]>,
    scope: &str,
    resource: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_sha256, grant_id, parent_sha256, scope, resource, expires_at) VALUES ($1,$2,$3,$4,$5,$6)",
    )
    .bind(hash)
    .bind(grant_id)
    .bind(parent)
    .bind(scope)
    .bind(resource)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
