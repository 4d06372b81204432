//! `grants` and `refresh_tokens` in Postgres (production).

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::{Grant, GrantStore, RefreshOutcome, RefreshRequest, RefreshTokenRow};
use crate::domain::refresh::{self, RefreshDecision};
use crate::domain::scope::ScopeSet;
use crate::error::StoreError;

/// Reading a grant (or a token with its grant) from a row of `refresh_tokens JOIN grants`.
trait FromJoinedRow: Sized {
    fn from_joined_row(row: &PgRow) -> Result<Self, StoreError>;
}

impl FromJoinedRow for Grant {
    /// From a row of `refresh_tokens JOIN grants` that names the grant's scope and resource
    /// `grant_scope` and `grant_resource` (the token's own are `scope` and `resource`).
    fn from_joined_row(row: &PgRow) -> Result<Self, StoreError> {
        Ok(Grant {
            grant_id: row.try_get("grant_id")?,
            user_id: row.try_get("user_id")?,
            client_id: row.try_get("client_id")?,
            scope: row.try_get("grant_scope")?,
            resource: row.try_get("grant_resource")?,
        })
    }
}

impl FromJoinedRow for RefreshTokenRow {
    /// From such a row with the token's `scope`, `resource` and `expires_at`, of a live grant.
    fn from_joined_row(row: &PgRow) -> Result<Self, StoreError> {
        Ok(RefreshTokenRow {
            grant: Grant::from_joined_row(row)?,
            scope: row.try_get("scope")?,
            resource: row.try_get("resource")?,
            expires_at: row.try_get("expires_at")?,
            grant_revoked: false,
        })
    }
}

/// Postgres access to `grants` and `refresh_tokens`.
#[derive(Clone)]
pub struct PgGrantStore {
    pool: PgPool,
}

impl PgGrantStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Rotates the presented token in one statement if it is active, unexpired, of this
    /// client, of an unrevoked grant and (when one is asked for) of the requested resource:
    /// exactly the case where [`refresh::decide`] says `Rotate` and no scope is requested.
    /// `None` when it is not (or a concurrent use spent it first: the UPDATE re-checks
    /// `rotated_at IS NULL` on the committed row), and the general path decides.
    async fn rotate_active(
        &self,
        r: &RefreshRequest<'_>,
    ) -> Result<Option<RefreshTokenRow>, StoreError> {
        let row = sqlx::query(
            "WITH cur AS (\
                 SELECT rt.token_sha256, rt.parent_sha256, rt.scope, rt.resource, g.grant_id, g.user_id, \
                        g.client_id, g.scope AS grant_scope, g.resource AS grant_resource \
                 FROM refresh_tokens rt JOIN grants g USING (grant_id) \
                 WHERE rt.token_sha256 = $1 AND rt.rotated_at IS NULL AND rt.expires_at > now() \
                   AND g.client_id = $3 AND g.revoked_at IS NULL \
                   AND NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = g.user_id AND u.disabled_at IS NOT NULL) \
                   AND ($4::text IS NULL OR rt.resource = $4)), \
             spent AS (\
                 UPDATE refresh_tokens t SET rotated_at = now() FROM cur \
                 WHERE t.token_sha256 = cur.token_sha256 AND t.rotated_at IS NULL \
                 RETURNING cur.*), \
             parent AS (\
                 UPDATE refresh_tokens p SET successor_used = true FROM spent \
                 WHERE p.token_sha256 = spent.parent_sha256 AND NOT p.successor_used RETURNING 1), \
             successor AS (\
                 INSERT INTO refresh_tokens (token_sha256, grant_id, parent_sha256, scope, resource, expires_at) \
                 SELECT $2, grant_id, token_sha256, scope, resource, now() + make_interval(secs => $5) \
                 FROM spent RETURNING expires_at) \
             SELECT spent.scope, spent.resource, spent.grant_id, spent.user_id, spent.client_id, \
                    spent.grant_scope, spent.grant_resource, successor.expires_at \
             FROM spent, successor",
        )
        .bind(r.presented_sha256)
        .bind(r.successor_sha256)
        .bind(r.client_id)
        .bind(r.requested_resource)
        .bind(r.refresh_ttl_secs as f64)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(RefreshTokenRow::from_joined_row)
            .transpose()
    }

    /// One read-decide-write attempt of [`Self::refresh`]; `None` when a concurrent use got
    /// there first.
    async fn refresh_attempt(
        &self,
        r: &RefreshRequest<'_>,
    ) -> Result<Option<RefreshOutcome>, StoreError> {
        let &RefreshRequest {
            presented_sha256,
            client_id,
            successor_sha256,
            requested_scope,
            requested_resource,
            grace_secs,
            refresh_ttl_secs,
            received_at,
        } = r;
        let row = sqlx::query(
            "SELECT rt.scope, rt.resource, rt.expires_at, rt.rotated_at, rt.successor_used, rt.parent_sha256, \
                    g.grant_id, g.user_id, g.client_id, g.scope AS grant_scope, g.resource AS grant_resource, \
                    g.revoked_at IS NOT NULL AS grant_revoked, now() AS now, \
                    EXISTS (SELECT 1 FROM users u WHERE u.user_id = g.user_id AND u.disabled_at IS NOT NULL) AS user_disabled \
             FROM refresh_tokens rt JOIN grants g USING (grant_id) \
             WHERE rt.token_sha256 = $1",
        )
        .bind(presented_sha256)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Some(RefreshOutcome::Invalid));
        };
        let grant = Grant::from_joined_row(&row)?;
        let now: DateTime<Utc> = row.try_get("now")?;
        let expires_at: DateTime<Utc> = row.try_get("expires_at")?;
        let grant_revoked: bool = row.try_get("grant_revoked")?;
        // A disabled user's tokens are dead even if revoking their grants failed halfway
        // (`admin disable-user` sets the flag first).
        let user_disabled: bool = row.try_get("user_disabled")?;
        // A token presented by another client is treated like an unknown one (RFC 6749 §6).
        if grant.client_id != client_id || grant_revoked || user_disabled || expires_at <= now {
            return Ok(Some(RefreshOutcome::Invalid));
        }
        let rotated_at: Option<DateTime<Utc>> = row.try_get("rotated_at")?;
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
                return Ok(Some(RefreshOutcome::Invalid));
            }
            sqlx::query("UPDATE grants SET revoked_at = now(), revoke_reason = 'refresh_token_reuse' WHERE grant_id = $1 AND revoked_at IS NULL")
                .bind(grant.grant_id)
                .execute(&self.pool)
                .await?;
            return Ok(Some(RefreshOutcome::ReuseDetected(grant)));
        }
        let token_scope: String = row.try_get("scope")?;
        let resource: String = row.try_get("resource")?;
        if requested_resource.is_some_and(|r| r != resource) {
            return Ok(Some(RefreshOutcome::ResourceNotGranted));
        }
        let scope = match requested_scope {
            None => token_scope.clone(),
            Some(asked) => {
                let granted = ScopeSet::parse(&token_scope)
                    .map_err(|_| StoreError::Corrupt("stored scope".into()))?;
                if !asked.is_subset(&granted) {
                    return Ok(Some(RefreshOutcome::ScopeNotGranted));
                }
                asked.to_string()
            }
        };
        if decision == RefreshDecision::GraceRepeat {
            return self
                .repeat_successor(presented_sha256, successor_sha256, grant, scope, resource)
                .await;
        }
        let successor_expiry = now + chrono::Duration::seconds(refresh_ttl_secs);
        // RFC 6749 §6: the successor keeps the presented token's scope; a narrower `scope`
        // applies to this access token only.
        //
        // Spend the presented token if it is still active, end its parent's grace period (using
        // a successor does that), and store the successor: one statement, one transaction.
        // Under READ COMMITTED a concurrent spend makes `spent` empty (the UPDATE re-checks
        // `rotated_at IS NULL` on the committed row), and then nothing is written.
        let stored = sqlx::query(
            "WITH spent AS (\
                 UPDATE refresh_tokens SET rotated_at = now() \
                 WHERE token_sha256 = $2 AND rotated_at IS NULL RETURNING 1), \
             parent AS (\
                 UPDATE refresh_tokens SET successor_used = true \
                 WHERE token_sha256 = $7 AND NOT successor_used AND EXISTS (SELECT 1 FROM spent) RETURNING 1) \
             INSERT INTO refresh_tokens (token_sha256, grant_id, parent_sha256, scope, resource, expires_at) \
             SELECT $1, $3, $2, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM spent)",
        )
        .bind(successor_sha256)
        .bind(presented_sha256)
        .bind(grant.grant_id)
        .bind(&token_scope)
        .bind(&resource)
        .bind(successor_expiry)
        .bind(parent.as_deref())
        .execute(&self.pool)
        .await?;
        if stored.rows_affected() == 0 {
            return Ok(None);
        }
        Ok(Some(RefreshOutcome::Issued(RefreshTokenRow {
            grant,
            scope,
            resource,
            expires_at: successor_expiry,
            grant_revoked: false,
        })))
    }

    /// The grace case of [`Self::refresh_attempt`]: the presented token was spent moments ago
    /// and its successor is still unused. Nothing is written — the caller hands out the same
    /// successor the rotation stored (it is derived from the presented token, so
    /// `successor_sha256` names it), which keeps the family a single chain. `None` when the
    /// successor was used in the meantime (decide again: that is reuse now); `Invalid` when the
    /// stored successor is not the one derived now (the current key changed since the
    /// rotation): refused rather than branching.
    async fn repeat_successor(
        &self,
        presented_sha256: &[u8],
        successor_sha256: &[u8],
        grant: Grant,
        scope: String,
        resource: String,
    ) -> Result<Option<RefreshOutcome>, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT NOT successor_used FROM refresh_tokens WHERE token_sha256 = $1) AS open, \
                    (SELECT expires_at FROM refresh_tokens \
                     WHERE token_sha256 = $2 AND parent_sha256 = $1) AS successor_expires_at",
        )
        .bind(presented_sha256)
        .bind(successor_sha256)
        .fetch_one(&self.pool)
        .await?;
        let open: Option<bool> = row.try_get("open")?;
        if open != Some(true) {
            return Ok(None);
        }
        let successor_expires_at: Option<DateTime<Utc>> = row.try_get("successor_expires_at")?;
        Ok(Some(match successor_expires_at {
            Some(expires_at) => RefreshOutcome::Issued(RefreshTokenRow {
                grant,
                scope,
                resource,
                expires_at,
                grant_revoked: false,
            }),
            None => RefreshOutcome::Invalid,
        }))
    }
}

#[async_trait::async_trait]
impl GrantStore for PgGrantStore {
    /// Creates a grant and, when `refresh_sha256` is given, its first refresh token.
    async fn create(
        &self,
        grant: &Grant,
        expires_at: DateTime<Utc>,
        refresh_sha256: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        // The grant and its first refresh token in one statement (one implicit transaction,
        // one round trip): the token row is written only if the grant row is.
        sqlx::query(
            "WITH g AS (\
                 INSERT INTO grants (grant_id, user_id, client_id, scope, resource, expires_at) \
                 VALUES ($1,$2,$3,$4,$5,$6) RETURNING grant_id) \
             INSERT INTO refresh_tokens (token_sha256, grant_id, scope, resource, expires_at) \
             SELECT $7, grant_id, $4, $5, $6 FROM g WHERE $7 IS NOT NULL",
        )
        .bind(grant.grant_id)
        .bind(grant.user_id)
        .bind(&grant.client_id)
        .bind(&grant.scope)
        .bind(&grant.resource)
        .bind(expires_at)
        .bind(refresh_sha256)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Redeems a refresh token: rotation with grace (see `domain::refresh`) and reuse
    /// detection; concurrent refreshes with the same token all succeed within the grace period
    /// and all get the same successor. `successor_sha256` must be the digest of the successor
    /// derived from the presented token (`KeyRing::refresh_successor`), never a random one.
    /// `requested_scope` narrows the access token only (the returned row's `scope`).
    ///
    /// Optimistic, and without an explicit transaction. The common case, an active token
    /// rotated without narrowing its scope, is one statement ([`Self::rotate_active`]). Anything
    /// else is one read, a decision ([`refresh::decide`]), then one conditional write that
    /// applies only if the token is still in the state the decision was made on (or, in the
    /// grace period, one read of the successor already stored). A concurrent
    /// use that changed it first (the token was spent, or one of its successors used) makes the
    /// write a no-op, and the decision is taken again on the new state. A token only moves
    /// forward (active → spent → successor used), so a few attempts always settle.
    async fn refresh(&self, r: RefreshRequest<'_>) -> Result<RefreshOutcome, StoreError> {
        if r.requested_scope.is_none()
            && let Some(row) = self.rotate_active(&r).await?
        {
            return Ok(RefreshOutcome::Issued(row));
        }
        for _ in 0..4 {
            if let Some(outcome) = self.refresh_attempt(&r).await? {
                return Ok(outcome);
            }
        }
        Err(StoreError::Conflict(
            "a refresh token kept changing under concurrent use".into(),
        ))
    }

    /// Looks up an active (unspent, unexpired, unrevoked) refresh token for introspection.
    async fn active_refresh(
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
            RefreshTokenRow::from_joined_row(&row)?,
            row.try_get("created_at")?,
        )))
    }

    /// The grant a refresh token belongs to, whatever the token's state (for revocation).
    async fn grant_of_refresh(&self, sha256: &[u8]) -> Result<Option<Grant>, StoreError> {
        let row = sqlx::query(
            "SELECT g.grant_id, g.user_id, g.client_id, g.scope AS grant_scope, g.resource AS grant_resource \
             FROM refresh_tokens rt JOIN grants g USING (grant_id) WHERE rt.token_sha256 = $1",
        )
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Grant::from_joined_row).transpose()
    }

    /// Marks a grant revoked (its refresh tokens stop working at once).
    async fn revoke(&self, grant_id: Uuid, reason: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE grants SET revoked_at = now(), revoke_reason = $2 WHERE grant_id = $1 AND revoked_at IS NULL")
            .bind(grant_id)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes refresh tokens and grants past their expiry (keeps tables from growing).
    async fn sweep_expired(&self) -> Result<u64, StoreError> {
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
