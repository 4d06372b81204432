//! Browser sessions (the login cookie), by the SHA-256 of the cookie's value, with an index per
//! user so that `admin revoke-user` can end all of a user's sessions at once.

pub mod memory;
pub mod redis;

use uuid::Uuid;

use crate::error::StoreError;

/// Browser sessions, each living `ttl` seconds from its `put`. A user's index lives as long as
/// the user's newest session.
#[async_trait::async_trait]
pub trait BrowserSessions: Send + Sync + 'static {
    async fn put(&self, session_sha256: &[u8], user_id: Uuid, ttl: u64) -> Result<(), StoreError>;

    /// The user of a live session.
    async fn get(&self, session_sha256: &[u8]) -> Result<Option<Uuid>, StoreError>;

    /// Ends one browser session (logout); whether it was live.
    async fn delete(&self, session_sha256: &[u8]) -> Result<bool, StoreError>;

    /// Ends every browser session of a user; returns how many were live. Atomic: a session
    /// stored concurrently is either ended or survives whole (it is not half-indexed).
    async fn delete_user(&self, user_id: Uuid) -> Result<u64, StoreError>;
}
