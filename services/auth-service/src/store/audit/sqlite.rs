//! `audit_events` in SQLite (embedded mode): a batch is one transaction of multi-row INSERTs.

use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::{AuditSink, AuditWriteError};
use crate::audit::AuditEvent;

/// Rows per INSERT statement: 7 parameters each stays far below SQLite's 32,766.
const ROWS_PER_STATEMENT: usize = 500;

/// The `audit_events` table in SQLite.
pub struct SqliteAuditSink {
    pool: SqlitePool,
}

impl SqliteAuditSink {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

/// Whether SQLite refused the data itself (a constraint), rather than the way to it failing.
fn sqlite_rejects(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => !matches!(db.kind(), sqlx::error::ErrorKind::Other),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

fn classify(e: sqlx::Error) -> AuditWriteError {
    if sqlite_rejects(&e) {
        AuditWriteError::Rejected(e.to_string())
    } else {
        AuditWriteError::Unavailable(e.to_string())
    }
}

async fn insert(pool: &SqlitePool, events: &[AuditEvent]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO audit_events (occurred_at, kind, client_id, user_id, grant_id, ip, detail) ",
        );
        q.push_values(chunk, |mut row, e| {
            let detail = if e.detail.is_null() {
                "{}".to_owned()
            } else {
                e.detail.to_string()
            };
            row.push_bind(e.at.timestamp_micros())
                .push_bind(e.kind.as_str())
                .push_bind(e.client_id.clone())
                .push_bind(e.user_id)
                .push_bind(e.grant_id)
                .push_bind(e.ip.clone())
                .push_bind(detail);
        });
        q.build().execute(&mut *tx).await?;
    }
    tx.commit().await
}

#[async_trait::async_trait]
impl AuditSink for SqliteAuditSink {
    async fn record_batch(&self, events: &[AuditEvent]) -> Result<(), AuditWriteError> {
        if events.is_empty() {
            return Ok(());
        }
        insert(&self.pool, events).await.map_err(classify)
    }
}
