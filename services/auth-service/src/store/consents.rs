//! The per-user registry of approved clients (MCP security best practices: per-client
//! consent): the storage interface (Postgres in production, SQLite embedded).

pub mod postgres;
pub mod sqlite;

use uuid::Uuid;

use crate::error::StoreError;

/// `consents`: one approved scope per user, client and resource.
#[async_trait::async_trait]
pub trait ConsentStore: Send + Sync + 'static {
    /// The scopes the user already approved for this client and resource, if any.
    async fn consented_scope(
        &self,
        user_id: Uuid,
        client_id: &str,
        resource: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Records an approval (replacing an earlier one for the same client and resource).
    async fn record_consent(
        &self,
        user_id: Uuid,
        client_id: &str,
        resource: &str,
        scope: &str,
    ) -> Result<(), StoreError>;
}
