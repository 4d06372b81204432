//! The trail in the embedded database: each batch is one transaction of multi-row `INSERT`s
//! (chunks of [`ROWS_PER_STATEMENT`], well under SQLite's bound-parameter limit), so a batch is
//! still one commit.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::AuditSink;
use crate::audit::{AuditEvent, coalesce};

/// Rows per `INSERT` (9 parameters each).
const ROWS_PER_STATEMENT: usize = 500;

#[derive(Clone)]
pub struct SqliteAudit {
    pool: SqlitePool,
}

impl SqliteAudit {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl AuditSink for SqliteAudit {
    async fn record(&self, batch: &[AuditEvent]) -> Result<(), sqlx::Error> {
        let rows = coalesce(batch);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO vault_audit (occurred_at, caller, action, user_id, provider, outcome, \
                 detail, count, last_occurred_at) ",
            );
            q.push_values(chunk, |mut b, r| {
                let last: Option<DateTime<Utc>> = (r.count > 1).then_some(r.last);
                b.push_bind(r.first)
                    .push_bind(r.event.caller.clone())
                    .push_bind(r.event.action)
                    .push_bind(r.event.user_id.clone())
                    .push_bind(r.event.provider.clone())
                    .push_bind(r.event.outcome)
                    .push_bind(r.event.detail.to_string())
                    .push_bind(i64::from(r.count))
                    .push_bind(last);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    fn rejects(&self, error: &sqlx::Error) -> bool {
        sqlite_rejects(error)
    }
}

/// Whether SQLite refused the data itself: a constraint (`SQLITE_CONSTRAINT`, 19, and its
/// extended codes), a value too big (`SQLITE_TOOBIG`, 18) or of the wrong type
/// (`SQLITE_MISMATCH`, 20), or values that could not be encoded. Anything else (busy, I/O, a
/// missing table) is retried, as with Postgres.
pub fn sqlite_rejects(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 18..=20)),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}
