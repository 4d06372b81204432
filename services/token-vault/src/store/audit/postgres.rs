//! The trail in Postgres: each batch is one `INSERT … SELECT FROM UNNEST` (one round trip, one
//! commit).

use chrono::{DateTime, Utc};
use mcpauth_runtime::batch::postgres_rejects;
use sqlx::PgPool;

use super::AuditSink;
use crate::audit::{AuditEvent, coalesce};

#[derive(Clone)]
pub struct PostgresAudit {
    pool: PgPool,
}

impl PostgresAudit {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl AuditSink for PostgresAudit {
    async fn record(&self, batch: &[AuditEvent]) -> Result<(), sqlx::Error> {
        insert(&self.pool, batch).await
    }

    fn rejects(&self, error: &sqlx::Error) -> bool {
        postgres_rejects(error)
    }
}

async fn insert(pool: &PgPool, batch: &[AuditEvent]) -> Result<(), sqlx::Error> {
    let rows = coalesce(batch);
    let at: Vec<DateTime<Utc>> = rows.iter().map(|r| r.first).collect();
    let caller: Vec<&str> = rows.iter().map(|r| r.event.caller.as_str()).collect();
    let action: Vec<&str> = rows.iter().map(|r| r.event.action).collect();
    let user: Vec<&str> = rows.iter().map(|r| r.event.user_id.as_str()).collect();
    let provider: Vec<&str> = rows.iter().map(|r| r.event.provider.as_str()).collect();
    let outcome: Vec<&str> = rows.iter().map(|r| r.event.outcome).collect();
    let detail: Vec<&serde_json::Value> = rows.iter().map(|r| &r.event.detail).collect();
    let count: Vec<i32> = rows.iter().map(|r| r.count).collect();
    let last: Vec<Option<DateTime<Utc>>> = rows
        .iter()
        .map(|r| (r.count > 1).then_some(r.last))
        .collect();
    sqlx::query(
        "INSERT INTO vault_audit (occurred_at, caller, action, user_id, provider, outcome, detail, count, last_occurred_at) \
         SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::int[], $9::timestamptz[])",
    )
    .bind(at)
    .bind(caller)
    .bind(action)
    .bind(user)
    .bind(provider)
    .bind(outcome)
    .bind(detail)
    .bind(count)
    .bind(last)
    .execute(pool)
    .await?;
    Ok(())
}
