//! Incident-response storage for one user: finding the user, disabling it, and removing its
//! grants and consents in bulk (`crate::user_admin` drives it). The storage interface; Postgres
//! in production, SQLite embedded.

pub mod postgres;
pub mod sqlite;

use uuid::Uuid;

use crate::error::StoreError;

/// What `admin revoke-user` / `disable-user` / `enable-user` need of storage.
#[async_trait::async_trait]
pub trait UserAdminStore: Send + Sync + 'static {
    /// Whether the user exists.
    async fn exists(&self, user_id: Uuid) -> Result<bool, StoreError>;

    /// The user an upstream identity (issuer, subject) is linked to, or that a login provider
    /// (`local`, `dev`: issuer = the provider name) knows by that subject.
    async fn find_by_subject(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<Uuid>, StoreError>;

    /// Sets (keeping the first instant) or clears the user's `disabled_at`; false when there is
    /// no such user.
    async fn set_disabled(&self, user_id: Uuid, disabled: bool) -> Result<bool, StoreError>;

    /// Whether the user is disabled (an unknown user is not).
    async fn is_disabled(&self, user_id: Uuid) -> Result<bool, StoreError>;

    /// Marks every unrevoked grant of the user revoked (their refresh tokens stop working at
    /// once), whatever the grant's `expires_at` (a grant refreshed past it is live); returns
    /// the grants revoked.
    async fn revoke_grants(&self, user_id: Uuid, reason: &str) -> Result<Vec<Uuid>, StoreError>;

    /// Deletes every consent of the user; returns how many.
    async fn delete_consents(&self, user_id: Uuid) -> Result<u64, StoreError>;
}
