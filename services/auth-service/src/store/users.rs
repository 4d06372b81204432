//! Users (as vouched for by a login provider) and the accounts at upstream identity providers
//! linked to them: the storage interface (Postgres in production, SQLite embedded).

pub mod postgres;
pub mod sqlite;

use uuid::Uuid;

use crate::error::StoreError;

/// `users` and `upstream_identities`.
#[async_trait::async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Finds or creates the user that `provider` knows as `external_subject` (recording the
    /// login and the current username); returns its id.
    async fn upsert(
        &self,
        provider: &str,
        external_subject: &str,
        username: &str,
    ) -> Result<Uuid, StoreError>;

    /// The mcpauth user linked to an upstream account, created and linked on first sight. The
    /// same `(issuer, subject)` always yields the same user, concurrent first logins included.
    async fn link_upstream(
        &self,
        provider: &str,
        issuer: &str,
        subject: &str,
        username: &str,
    ) -> Result<Uuid, StoreError>;

    /// The user's display name.
    async fn username(&self, user_id: Uuid) -> Result<Option<String>, StoreError>;

    /// Whether the user exists.
    async fn exists(&self, user_id: Uuid) -> Result<bool, StoreError>;
}
