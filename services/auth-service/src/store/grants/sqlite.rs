//! `grants` and `refresh_tokens` in SQLite (embedded mode).
//!
//! Postgres rotates optimistically (statements that re-check the row they change, retried when a
//! concurrent use got there first). Here a refresh is one `BEGIN IMMEDIATE` transaction: read the
//! token, decide ([`refresh::decide`], the same rule), write. SQLite's write lock makes the
//! read-decide-write atomic, so of any number of concurrent callers exactly one spends the token;
//! the others, serialised behind it, see it spent and get the grace answer (the same successor)
//! or the reuse verdict, exactly as they would in Postgres.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

use super::{Grant, GrantStore, RefreshOutcome, RefreshRequest, RefreshTokenRow};
use crate::domain::refresh::{self, RefreshDecision};
use crate::domain::scope::ScopeSet;
use crate::error::StoreError;
use crate::store::sqlite::{begin_immediate, from_micros, now_micros, secs_to_micros};

/// SQLite access to `grants` and `refresh_tokens`.
#[derive(Clone)]
pub struct SqliteGrantStore {
    pool: SqlitePool,
}

impl SqliteGrantStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

/// The grant of a row of `refresh_tokens JOIN grants` (`grant_scope`, `grant_resource`).
fn grant_of(row: &SqliteRow) -> Result<Grant, StoreError> {
    Ok(Grant {
        grant_id: row.try_get("grant_id")?,
        user_id: row.try_get("user_id")?,
        client_id: row.try_get("client_id")?,
        scope: row.try_get("grant_scope")?,
        resource: row.try_get("grant_resource")?,
    })
}

const ONE_DAY_MICROS: i64 = 86_400 * 1_000_000;

#[async_trait::async_trait]
impl GrantStore for SqliteGrantStore {
    async fn create(
        &self,
        grant: &Grant,
        expires_at: DateTime<Utc>,
        refresh_sha256: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let now = now_micros();
        let mut tx = begin_immediate(&self.pool).await?;
        sqlx::query(
            "INSERT INTO grants (grant_id, user_id, client_id, scope, resource, created_at, expires_at) \
             VALUES (?1,?2,?3,?4,?5,?6,?7)",
        )
        .bind(grant.grant_id)
        .bind(grant.user_id)
        .bind(&grant.client_id)
        .bind(&grant.scope)
        .bind(&grant.resource)
        .bind(now)
        .bind(expires_at.timestamp_micros())
        .execute(&mut *tx)
        .await?;
        if let Some(token) = refresh_sha256 {
            sqlx::query(
                "INSERT INTO refresh_tokens (token_sha256, grant_id, scope, resource, created_at, expires_at) \
                 VALUES (?1,?2,?3,?4,?5,?6)",
            )
            .bind(token)
            .bind(grant.grant_id)
            .bind(&grant.scope)
            .bind(&grant.resource)
            .bind(now)
            .bind(expires_at.timestamp_micros())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn refresh(&self, r: RefreshRequest<'_>) -> Result<RefreshOutcome, StoreError> {
        let RefreshRequest {
            presented_sha256,
            client_id,
            successor_sha256,
            requested_scope,
            requested_resource,
            grace_secs,
            refresh_ttl_secs,
            received_at,
        } = r;
        let mut tx = begin_immediate(&self.pool).await?;
        let now_us = now_micros();
        let now = from_micros(now_us)?;
        let row = sqlx::query(
            "SELECT rt.scope, rt.resource, rt.expires_at, rt.rotated_at, rt.successor_used, rt.parent_sha256, \
                    g.grant_id, g.user_id, g.client_id, g.scope AS grant_scope, g.resource AS grant_resource, \
                    g.revoked_at IS NOT NULL AS grant_revoked, \
                    EXISTS (SELECT 1 FROM users u WHERE u.user_id = g.user_id AND u.disabled_at IS NOT NULL) AS user_disabled \
             FROM refresh_tokens rt JOIN grants g USING (grant_id) \
             WHERE rt.token_sha256 = ?1",
        )
        .bind(presented_sha256)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(RefreshOutcome::Invalid);
        };
        let grant = grant_of(&row)?;
        let expires_at: i64 = row.try_get("expires_at")?;
        let grant_revoked: bool = row.try_get("grant_revoked")?;
        // A disabled user's tokens are dead even if revoking their grants failed halfway.
        let user_disabled: bool = row.try_get("user_disabled")?;
        // A token presented by another client is treated like an unknown one (RFC 6749 §6).
        if grant.client_id != client_id || grant_revoked || user_disabled || expires_at <= now_us {
            return Ok(RefreshOutcome::Invalid);
        }
        let rotated_at = row
            .try_get::<Option<i64>, _>("rotated_at")?
            .map(from_micros)
            .transpose()?;
        let successor_used: bool = row.try_get("successor_used")?;
        let parent: Option<Vec<u8>> = row.try_get("parent_sha256")?;
        // The arrival on the clock `rotated_at` is on. Measured once the read is back, so it
        // errs early by the read's round trip: a token spent within that much of the arrival
        // counts as spent after it (refused, family kept), never the other way round.
        let received_then = chrono::Duration::from_std(received_at.elapsed())
            .ok()
            .and_then(|waited| now.checked_sub_signed(waited));
        let decision = refresh::decide(
            rotated_at.map(|t| t.timestamp()),
            successor_used,
            now.timestamp(),
            grace_secs,
        );
        if decision == RefreshDecision::Reuse {
            if rotated_at.is_some_and(|at| received_then.is_none_or(|arrived| at > arrived)) {
                // Spent after this request arrived: a delayed request, not a replay.
                return Ok(RefreshOutcome::Invalid);
            }
            sqlx::query(
                "UPDATE grants SET revoked_at = ?2, revoke_reason = 'refresh_token_reuse' \
                 WHERE grant_id = ?1 AND revoked_at IS NULL",
            )
            .bind(grant.grant_id)
            .bind(now_us)
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
        if decision == RefreshDecision::GraceRepeat {
            // The successor the rotation stored, if it is the one derived now (see
            // `domain::refresh`); nothing is written.
            let successor_expires_at: Option<i64> = sqlx::query_scalar(
                "SELECT expires_at FROM refresh_tokens WHERE token_sha256 = ?1 AND parent_sha256 = ?2",
            )
            .bind(successor_sha256)
            .bind(presented_sha256)
            .fetch_optional(&mut *tx)
            .await?;
            return Ok(match successor_expires_at {
                Some(at) => RefreshOutcome::Issued(RefreshTokenRow {
                    grant,
                    scope,
                    resource,
                    expires_at: from_micros(at)?,
                    grant_revoked: false,
                }),
                None => RefreshOutcome::Invalid,
            });
        }
        // Rotate: spend the presented token, end its parent's grace period (using a successor
        // does that), store the successor. RFC 6749 §6: the successor keeps the presented
        // token's scope; a narrower `scope` applies to this access token only.
        let successor_expiry = now_us + secs_to_micros(refresh_ttl_secs);
        sqlx::query("UPDATE refresh_tokens SET rotated_at = ?2 WHERE token_sha256 = ?1")
            .bind(presented_sha256)
            .bind(now_us)
            .execute(&mut *tx)
            .await?;
        if let Some(parent) = &parent {
            sqlx::query(
                "UPDATE refresh_tokens SET successor_used = 1 WHERE token_sha256 = ?1 AND NOT successor_used",
            )
            .bind(parent)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO refresh_tokens (token_sha256, grant_id, parent_sha256, scope, resource, created_at, expires_at) \
             VALUES (?1,?2,?3,?4,?5,?6,?7)",
        )
        .bind(successor_sha256)
        .bind(grant.grant_id)
        .bind(presented_sha256)
        .bind(&token_scope)
        .bind(&resource)
        .bind(now_us)
        .bind(successor_expiry)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Issued(RefreshTokenRow {
            grant,
            scope,
            resource,
            expires_at: from_micros(successor_expiry)?,
            grant_revoked: false,
        }))
    }

    async fn active_refresh(
        &self,
        sha256: &[u8],
    ) -> Result<Option<(RefreshTokenRow, DateTime<Utc>)>, StoreError> {
        let row = sqlx::query(
            "SELECT rt.scope, rt.resource, rt.expires_at, rt.created_at, g.grant_id, g.user_id, g.client_id, \
                    g.scope AS grant_scope, g.resource AS grant_resource \
             FROM refresh_tokens rt JOIN grants g USING (grant_id) \
             WHERE rt.token_sha256 = ?1 AND rt.rotated_at IS NULL AND g.revoked_at IS NULL AND rt.expires_at > ?2",
        )
        .bind(sha256)
        .bind(now_micros())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((
            RefreshTokenRow {
                grant: grant_of(&row)?,
                scope: row.try_get("scope")?,
                resource: row.try_get("resource")?,
                expires_at: from_micros(row.try_get("expires_at")?)?,
                grant_revoked: false,
            },
            from_micros(row.try_get("created_at")?)?,
        )))
    }

    async fn grant_of_refresh(&self, sha256: &[u8]) -> Result<Option<Grant>, StoreError> {
        let row = sqlx::query(
            "SELECT g.grant_id, g.user_id, g.client_id, g.scope AS grant_scope, g.resource AS grant_resource \
             FROM refresh_tokens rt JOIN grants g USING (grant_id) WHERE rt.token_sha256 = ?1",
        )
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(grant_of).transpose()
    }

    async fn revoke(&self, grant_id: Uuid, reason: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE grants SET revoked_at = ?3, revoke_reason = ?2 WHERE grant_id = ?1 AND revoked_at IS NULL",
        )
        .bind(grant_id)
        .bind(reason)
        .bind(now_micros())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn sweep_expired(&self) -> Result<u64, StoreError> {
        let cutoff = now_micros() - ONE_DAY_MICROS;
        let a = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < ?1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let b = sqlx::query("DELETE FROM grants WHERE expires_at < ?1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(a + b)
    }
}
