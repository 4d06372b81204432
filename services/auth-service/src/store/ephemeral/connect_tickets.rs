//! Connect links issued by `UpstreamConnect.StartConnect`, by the ticket's SHA-256. A link is
//! bound to the first browser that opens it and starts one upstream authorization at most.

pub mod memory;
pub mod redis;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;

/// A connect link issued by `UpstreamConnect.StartConnect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectTicket {
    pub user_id: Uuid,
    pub provider: String,
    /// CSRF token of the login and confirmation forms.
    pub csrf: String,
    /// SHA-256 (hex) of the browser-binding cookie of the first browser that opened the link.
    pub browser_sha256: Option<String>,
    pub expires_at: i64,
    /// When `StartConnect` issued it (Unix seconds); `None` when stored by an earlier version.
    #[serde(default)]
    pub created_at: Option<i64>,
}

/// Connect tickets, each living `ttl` seconds from its `put`.
#[async_trait::async_trait]
pub trait ConnectTickets: Send + Sync + 'static {
    async fn put(
        &self,
        ticket_sha256: &[u8],
        t: &ConnectTicket,
        ttl: u64,
    ) -> Result<(), StoreError>;

    async fn get(&self, ticket_sha256: &[u8]) -> Result<Option<ConnectTicket>, StoreError>;

    /// Binds a ticket to the first browser that opens it: true if no browser was bound yet (it
    /// is now `browser_sha256`) or it was already this one; false for any other browser and for
    /// an unknown ticket. A compare-and-set: two browsers cannot both win. The ticket keeps its
    /// expiry.
    async fn bind_browser(
        &self,
        ticket_sha256: &[u8],
        browser_sha256: &str,
    ) -> Result<bool, StoreError>;

    /// Takes a ticket: a connect link starts one upstream authorization at most.
    async fn take(&self, ticket_sha256: &[u8]) -> Result<Option<ConnectTicket>, StoreError>;
}
