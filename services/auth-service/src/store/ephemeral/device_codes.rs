//! RFC 8628 device authorizations, by the SHA-256 of the device code, with an index from the
//! SHA-256 of the user code. One record carries the whole life of a device code: pending until
//! the user decides at `/device`, then approved or denied; an approval is taken by exactly one
//! poll. The per-code polling interval lives here too, so that `slow_down` (RFC 8628 §3.5) holds
//! across replicas and a poll costs one round trip to this store and none to Postgres.

pub mod memory;
pub mod redis;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;

/// What the client asked for at `/device_authorization`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAuthorization {
    pub client_id: String,
    pub scope: String,
    pub resource: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds; from then on a poll answers `expired_token` and the user code is unknown.
    pub expires_at: i64,
}

/// The user's decision at the verification page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceDecision {
    /// Approved by this user, who authenticated at the given Unix second.
    Approved {
        user_id: Uuid,
        authenticated_at: i64,
    },
    Denied,
}

/// The outcome of one poll at `/token` (RFC 8628 §3.4–3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePoll {
    /// No such device code (never issued, or expired long ago).
    Unknown,
    /// The device code was issued to another client; nothing was changed.
    WrongClient,
    Expired,
    /// Still waiting for the user; poll again after `interval` seconds.
    Pending {
        interval: u64,
    },
    /// Polled faster than the interval, which is now `interval` (5 s more than before).
    SlowDown {
        interval: u64,
    },
    Denied,
    /// Approved: this poll took the approval, every later one sees `Redeemed`.
    Approved {
        auth: DeviceAuthorization,
        user_id: Uuid,
        authenticated_at: i64,
    },
    Redeemed,
}

/// How long an expired device code is still recognised (and answered with `expired_token`
/// rather than `invalid_grant`), beyond its own lifetime.
pub const EXPIRED_GRACE_SECS: u64 = 600;

/// Added to a device code's interval on each `slow_down` (RFC 8628 §3.5).
pub const SLOW_DOWN_STEP_SECS: u64 = 5;

/// A poll this much earlier than the interval still counts as on time: two requests sent
/// `interval` apart can arrive a little closer together.
pub const POLL_TOLERANCE_MS: i64 = 250;

/// Device authorizations. Every operation on one device code is atomic.
#[async_trait::async_trait]
pub trait DeviceCodes: Send + Sync + 'static {
    /// Stores a pending authorization under both hashes, polled no faster than `interval`
    /// seconds, until `auth.expires_at` (plus [`EXPIRED_GRACE_SECS`] for the device code).
    /// Returns false, storing nothing, when the user code is already in use.
    async fn put(
        &self,
        device_sha256: &[u8],
        user_sha256: &[u8],
        auth: &DeviceAuthorization,
        interval: u64,
    ) -> Result<bool, StoreError>;

    /// The pending, unexpired authorization a user code names, and its device code's hash.
    async fn pending_by_user_code(
        &self,
        user_sha256: &[u8],
        now: i64,
    ) -> Result<Option<(Vec<u8>, DeviceAuthorization)>, StoreError>;

    /// Records the user's decision on a pending, unexpired authorization. False when it was
    /// not pending any more (decided in another tab, expired).
    async fn decide(
        &self,
        device_sha256: &[u8],
        decision: DeviceDecision,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// One poll by `client_id` at `now_ms` (Unix milliseconds).
    async fn poll(
        &self,
        device_sha256: &[u8],
        client_id: &str,
        now_ms: i64,
    ) -> Result<DevicePoll, StoreError>;
}

/// The seconds a record lives in the store.
pub(crate) fn retention_secs(auth: &DeviceAuthorization, now: i64) -> u64 {
    (auth.expires_at - now).max(1) as u64 + EXPIRED_GRACE_SECS
}
