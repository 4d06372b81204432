//! `/authorize` requests waiting for login and consent, by request id.

pub mod memory;
pub mod redis;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;

/// An `/authorize` request waiting for login and consent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub client_id: String,
    pub redirect_uri: String,
    /// Whether the request named `redirect_uri` (then the token request must repeat it).
    pub redirect_uri_given: bool,
    pub state: Option<String>,
    pub code_challenge: String,
    pub scope: String,
    pub resource: String,
    /// CSRF token embedded in the login and consent forms.
    pub csrf: String,
    /// SHA-256 (hex) of the browser-binding cookie set at `/authorize`.
    pub browser_sha256: String,
    /// Set once the user has logged in.
    pub user_id: Option<Uuid>,
    /// When `user_id` was established (Unix seconds): a user revoked at or after it (`admin
    /// revoke-user`) gets no code from this request, even from a consent page already open.
    #[serde(default)]
    pub authenticated_at: Option<i64>,
    /// `prompt=consent`: ask again even if the user already approved this client.
    #[serde(default)]
    pub force_consent: bool,
    /// A device authorization (RFC 8628) entered at `/device`: the SHA-256 (hex) of its device
    /// code. Such a request has no redirect URI: its outcome is recorded for the device to
    /// poll, and the browser gets a page.
    #[serde(default)]
    pub device: Option<String>,
}

/// Pending authorizations, each living `ttl` seconds from its last `put`.
#[async_trait::async_trait]
pub trait PendingAuthorizations: Send + Sync + 'static {
    /// Stores (or replaces) the request `id`.
    async fn put(&self, id: &str, p: &PendingAuthorization, ttl: u64) -> Result<(), StoreError>;

    async fn get(&self, id: &str) -> Result<Option<PendingAuthorization>, StoreError>;

    /// Removes and returns a pending request (single use at the end of the flow): of concurrent
    /// takers, one gets it.
    async fn take(&self, id: &str) -> Result<Option<PendingAuthorization>, StoreError>;
}
