//! Grants and their refresh-token families: the stored shapes and the storage interface
//! (Postgres in production, SQLite in the embedded mode). Only SHA-256 digests of refresh
//! tokens are stored.

pub mod postgres;
pub mod sqlite;

use chrono::{DateTime, Utc};
use uuid::Uuid;

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

/// A refresh token and its grant, as a rotation issued it.
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
    /// When the request reached the token endpoint. A token spent *after* that was still
    /// active when the request was sent, so presenting it is no replay: the request was held up
    /// (e.g. waiting for Postgres during an outage) while its client gave up, retried and moved
    /// on to the successor. Such a late request is refused without revoking the family — the
    /// client holds a live successor and must not be logged out by its own abandoned request.
    ///
    /// Monotonic, and never compared with a wall clock of this service: `rotated_at` is on the
    /// store's clock (Postgres's `now()`), so the arrival is placed on that clock too (the
    /// store's now at the read minus the time waited since), and a skew between the two clocks
    /// cannot turn a replay into a delayed request or the other way round.
    pub received_at: std::time::Instant,
}

/// `grants` and `refresh_tokens`: creating a grant, rotating its refresh tokens, looking
/// them up, revoking and sweeping.
#[async_trait::async_trait]
pub trait GrantStore: Send + Sync + 'static {
    /// Creates a grant and, when `refresh_sha256` is given, its first refresh token (both or
    /// neither).
    async fn create(
        &self,
        grant: &Grant,
        expires_at: DateTime<Utc>,
        refresh_sha256: Option<&[u8]>,
    ) -> Result<(), StoreError>;

    /// Redeems a refresh token: rotation with grace (see `domain::refresh`) and reuse
    /// detection; concurrent refreshes with the same token all succeed within the grace period
    /// and all get the same successor, and exactly one of them spends the token.
    /// `successor_sha256` must be the digest of the successor derived from the presented token
    /// (`KeyRing::refresh_successor`), never a random one. `requested_scope` narrows the access
    /// token only (the returned row's `scope`).
    async fn refresh(&self, r: RefreshRequest<'_>) -> Result<RefreshOutcome, StoreError>;

    /// Looks up an active (unspent, unexpired, unrevoked) refresh token for introspection,
    /// with when it was issued.
    async fn active_refresh(
        &self,
        sha256: &[u8],
    ) -> Result<Option<(RefreshTokenRow, DateTime<Utc>)>, StoreError>;

    /// The grant a refresh token belongs to, whatever the token's state (for revocation).
    async fn grant_of_refresh(&self, sha256: &[u8]) -> Result<Option<Grant>, StoreError>;

    /// Marks a grant revoked (its refresh tokens stop working at once).
    async fn revoke(&self, grant_id: Uuid, reason: &str) -> Result<(), StoreError>;

    /// Deletes refresh tokens and grants a day past their expiry (keeps tables from growing);
    /// returns how many rows went.
    async fn sweep_expired(&self) -> Result<u64, StoreError>;
}
