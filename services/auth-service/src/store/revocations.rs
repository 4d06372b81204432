//! The revocation deny list: persisted in Postgres, held in memory on every replica, fanned out
//! over Redis and re-synced from Postgres periodically, so that a revocation is enforced
//! everywhere within a second and validation of an access token never touches a database.
//! (In the embedded mode the store is SQLite and the fan-out an in-process bus.)

pub mod postgres;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

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
    /// Every token of a user (`id` = the user id, the tokens' `sub`) issued at or before
    /// `issued_before` (incident response: `admin revoke-user`).
    User,
}

impl RevocationKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Token => "token",
            RevocationKind::Grant => "grant",
            RevocationKind::Client => "client",
            RevocationKind::User => "user",
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
    /// Kind `user` only: Unix seconds; the user's tokens issued at or before it are revoked
    /// (tokens issued later, after the user signs in again, are not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_before: Option<i64>,
}

/// The in-memory deny list of one replica.
#[derive(Clone, Default)]
pub struct DenyList {
    entries: Arc<RwLock<HashMap<(RevocationKind, String), i64>>>,
    /// Per-user entries: user id → (issued_before, expires_at).
    users: Arc<RwLock<HashMap<String, (i64, i64)>>>,
}

impl DenyList {
    pub fn insert(&self, r: &Revocation) {
        if r.kind == RevocationKind::User {
            let mut users = self.users.write().expect("deny list lock");
            let e = users.entry(r.id.clone()).or_insert((i64::MIN, i64::MIN));
            e.0 = e.0.max(r.issued_before.unwrap_or(i64::MAX));
            e.1 = e.1.max(r.expires_at);
            return;
        }
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

    /// Whether a token of user `sub` issued at `iat` is revoked by a per-user entry.
    pub fn is_user_revoked(&self, sub: &str, iat: i64) -> bool {
        self.user_revoked_before(sub).is_some_and(|t| iat <= t)
    }

    /// The instant up to which the user's tokens (and authorization codes) are revoked.
    pub fn user_revoked_before(&self, sub: &str) -> Option<i64> {
        let users = self.users.read().expect("deny list lock");
        if users.is_empty() {
            return None;
        }
        users.get(sub).map(|(before, _)| *before)
    }

    /// Drops entries whose tokens have all expired.
    pub fn purge(&self, now: i64) {
        self.entries
            .write()
            .expect("deny list lock")
            .retain(|_, exp| *exp > now);
        self.users
            .write()
            .expect("deny list lock")
            .retain(|_, (_, exp)| *exp > now);
    }

    pub fn len(&self) -> usize {
        self.entries.read().expect("deny list lock").len()
            + self.users.read().expect("deny list lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `revocations`: the persisted deny list every replica loads and re-syncs from.
#[async_trait::async_trait]
pub trait RevocationStore: Send + Sync + 'static {
    /// Records a revocation (merging with an earlier one of the same kind and id: the later
    /// expiry and `issued_before` win, and it counts as recorded now).
    async fn insert(&self, r: &Revocation) -> Result<(), StoreError>;

    /// Unexpired revocations recorded at or after `since` (all of them when `None`), and the
    /// store's clock, to use as the next watermark.
    async fn since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<(Vec<Revocation>, DateTime<Utc>), StoreError>;

    /// Deletes rows whose tokens have all expired; returns how many.
    async fn sweep(&self) -> Result<u64, StoreError>;
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
            issued_before: None,
        });
        d.insert(&Revocation {
            kind: RevocationKind::Grant,
            id: "g2".into(),
            expires_at: 200,
            issued_before: None,
        });
        d.insert(&Revocation {
            kind: RevocationKind::Client,
            id: "gone".into(),
            expires_at: 200,
            issued_before: None,
        });
        assert!(d.is_revoked("j1", None, "c"));
        assert!(d.is_revoked("other", Some("g2"), "c"));
        assert!(!d.is_revoked("other", Some("g1"), "c"));
        assert!(d.is_revoked("other", None, "gone"));
        d.purge(150);
        assert!(!d.is_revoked("j1", None, "c"));
        assert!(d.is_revoked("x", Some("g2"), "c"));
    }

    #[test]
    fn a_user_entry_covers_tokens_issued_up_to_its_instant() {
        let d = DenyList::default();
        assert!(!d.is_user_revoked("u1", 10));
        d.insert(&Revocation {
            kind: RevocationKind::User,
            id: "u1".into(),
            expires_at: 200,
            issued_before: Some(50),
        });
        assert!(d.is_user_revoked("u1", 10));
        assert!(d.is_user_revoked("u1", 50));
        assert!(!d.is_user_revoked("u1", 51));
        assert!(!d.is_user_revoked("u2", 10));
        // A later revocation moves the instant forward, never back.
        d.insert(&Revocation {
            kind: RevocationKind::User,
            id: "u1".into(),
            expires_at: 100,
            issued_before: Some(80),
        });
        assert!(d.is_user_revoked("u1", 80));
        d.insert(&Revocation {
            kind: RevocationKind::User,
            id: "u1".into(),
            expires_at: 100,
            issued_before: Some(20),
        });
        assert!(d.is_user_revoked("u1", 80));
        d.purge(250);
        assert!(!d.is_user_revoked("u1", 10));
    }
}
