//! Where the audit trail ends up: the storage interface behind [`crate::audit::AuditLog`]'s
//! batch writer (Postgres in production, SQLite embedded). The writer gathers events off the
//! request path and hands them over here a batch at a time.

pub mod postgres;
pub mod sqlite;

use crate::audit::AuditEvent;

/// Why a batch was not written. The batch writer retries `Unavailable` until it succeeds and
/// splits a `Rejected` batch until the refused event stands alone (then quarantines it).
#[derive(Debug, thiserror::Error)]
pub enum AuditWriteError {
    /// The store refused the data itself: writing it again can never succeed.
    #[error("refused: {0}")]
    Rejected(String),
    /// The way to the store failed (down, timed out, busy): retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// `audit_events`.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync + 'static {
    /// Records these events, all or none (one statement or one transaction).
    async fn record_batch(&self, events: &[AuditEvent]) -> Result<(), AuditWriteError>;
}
