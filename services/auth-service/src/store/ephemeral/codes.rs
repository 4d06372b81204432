//! Authorization codes, by the code's SHA-256: redeemed once, and remembered after their first
//! use (with the grant they produced) so that a replay revokes that grant (RFC 6749 §4.1.2).

pub mod memory;
pub mod redis;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;

/// What an authorization code is bound to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeRecord {
    pub client_id: String,
    pub redirect_uri: String,
    pub redirect_uri_given: bool,
    pub code_challenge: String,
    pub scope: String,
    pub resource: String,
    pub user_id: Uuid,
    /// Unix seconds; a code issued at or before a revocation of its user is refused.
    #[serde(default)]
    pub issued_at: i64,
}

/// Result of redeeming a code.
#[derive(Debug)]
pub enum CodeRedemption {
    /// First use.
    Fresh(CodeRecord),
    /// The code was already redeemed; this is the grant it produced (to revoke).
    Replayed(Option<Uuid>),
    /// Unknown or expired.
    Unknown,
}

/// How long a redeemed code is remembered, to catch replays after its TTL-bound first use.
pub const USED_CODE_TTL_SECS: u64 = 600;

/// Authorization codes, each living `ttl` seconds from its `put` until redeemed.
#[async_trait::async_trait]
pub trait AuthorizationCodes: Send + Sync + 'static {
    async fn put(&self, code_sha256: &[u8], rec: &CodeRecord, ttl: u64) -> Result<(), StoreError>;

    /// Takes a code atomically: of any number of concurrent redemptions one is `Fresh`. The
    /// code is marked used before this returns, so a redemption after it sees `Replayed`.
    async fn redeem(&self, code_sha256: &[u8]) -> Result<CodeRedemption, StoreError>;

    /// Remembers which grant a redeemed code produced (revoked if the code is replayed).
    /// Returns true when a replay was seen meanwhile: the caller must then revoke the grant.
    async fn bind_grant(&self, code_sha256: &[u8], grant_id: Uuid) -> Result<bool, StoreError>;
}
