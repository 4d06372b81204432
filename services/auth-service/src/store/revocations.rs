//! The revocation deny list: persisted in Postgres, held in memory on every replica, fanned out
//! over Redis and re-synced from Postgres periodically, so that a revocation is enforced
//! everywhere within a second and validation of an access token never touches a database.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use crate::error::StoreError;

/// What a deny-list entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationKind {
    /// One access token, by `jti`.
    Token,
    /// Every token of a grant.
    Grant,
    /// Every token issued to a (deleted) client.
    Client,
}

impl RevocationKind {
    fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Token => "token",
            RevocationKind::Grant => "grant",
            RevocationKind::Client => "client",
        }
    }
}

/// One revocation, as stored and as fanned out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Revocation {
    pub kind: RevocationKind,
    pub id: String,
    /// Unix seconds after which no token it covers can be valid anyway.
    pub expires_at: i64,
}

/// The in-memory deny list of one replica.
#[derive(Clone, Default)]
pub struct DenyList {
    entries: Arc<RwLock<HashMap<(RevocationKind, String), i64>>>,
}

impl DenyList {
    pub fn insert(&self, r: &Revocation) {
        self.entries
            .write()
            .expect("deny list lock")
            .insert((r.kind, r.id.clone()), r.expires_at);
    }

    /// Whether a token with this `jti`, grant and client is revoked.
    pub fn is_revoked(&self, jti: &str, grant_id: Option<&str>, client_id: &str) -> bool {
        let map = self.entries.read().expect("deny list lock");
        if map.is_empty() {
            return false;
        }
        // Keys are owned Strings; look up without allocating through a small probe.
        let probe = |kind: RevocationKind, id: &str| map.contains_key(&(kind, id.to_owned()));
        probe(RevocationKind::Token, jti)
            || grant_id.is_some_and(|g| probe(RevocationKind::Grant, g))
            || probe(RevocationKind::Client, client_id)
    }

    /// Drops entries whose tokens have all expired.
    pub fn purge(&self, now: i64) {
        self.entries
            .write()
            .expect("deny list lock")
            .retain(|_, exp| *exp > now);
    }

    pub fn len(&self) -> usize {
        self.entries.read().expect("deny list lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Postgres access to `revocations`.
#[derive(Clone)]
pub struct RevocationStore {
    pool: PgPool,
}

impl RevocationStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn insert(&self, r: &Revocation) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO revocations (kind, id, expires_at) VALUES ($1, $2, to_timestamp($3)) \
             ON CONFLICT (kind, id) DO UPDATE SET expires_at = GREATEST(revocations.expires_at, EXCLUDED.expires_at)",
        )
        .bind(r.kind.as_str())
        .bind(&r.id)
        .bind(r.expires_at as f64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Unexpired revocations recorded at or after `since` (all of them when `None`), and the
    /// database clock, to use as the next watermark.
    pub async fn since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<(Vec<Revocation>, DateTime<Utc>), StoreError> {
        let rows = sqlx::query(
            "SELECT kind, id, extract(epoch FROM expires_at)::bigint AS exp, clock_timestamp() AS now FROM revocations \
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
                _ => RevocationKind::Grant,
            };
            out.push(Revocation {
                kind,
                id: row.try_get("id")?,
                expires_at: row.try_get("exp")?,
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
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM revocations WHERE expires_at < now()")
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_list_covers_tokens_and_grants_until_expiry() {
        let d = DenyList::default();
        assert!(!d.is_revoked("j1", Some("g1"), "c"));
        d.insert(&Revocation {
            kind: RevocationKind::Token,
            id: "j1".into(),
            expires_at: 100,
        });
        d.insert(&Revocation {
            kind: RevocationKind::Grant,
            id: "g2".into(),
            expires_at: 200,
        });
        d.insert(&Revocation {
            kind: RevocationKind::Client,
            id: "gone".into(),
            expires_at: 200,
        });
        assert!(d.is_revoked("j1", None, "c"));
        assert!(d.is_revoked("other", Some("g2"), "c"));
        assert!(!d.is_revoked("other", Some("g1"), "c"));
        assert!(d.is_revoked("other", None, "gone"));
        d.purge(150);
        assert!(!d.is_revoked("j1", None, "c"));
        assert!(d.is_revoked("x", Some("g2"), "c"));
    }
}
