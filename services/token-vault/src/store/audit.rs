//! Where the vault access trail is written: "record these events", a batch at a time (the
//! batching, retries and quarantine are `crate::audit`'s, over `mcpauth_runtime::batch`).
//! Identical accesses of a batch are one row with their `count` in both implementations:
//! [`postgres::PostgresAudit`] (one `INSERT … SELECT FROM UNNEST`) and [`sqlite::SqliteAudit`]
//! (one multi-row `INSERT` per batch, in one transaction).

use crate::audit::AuditEvent;

pub mod postgres;
pub mod sqlite;

pub use postgres::PostgresAudit;
pub use sqlite::SqliteAudit;

/// The `vault_audit` table.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync + 'static {
    /// Records these events at once (one commit).
    async fn record(&self, batch: &[AuditEvent]) -> Result<(), sqlx::Error>;

    /// Whether `error` is about the events themselves (retrying them can never succeed) rather
    /// than about the way to the store.
    fn rejects(&self, error: &sqlx::Error) -> bool;
}
