//! `audit_events` in Postgres (production): one `INSERT … SELECT FROM UNNEST` per batch.

use chrono::{DateTime, Utc};
use mcpauth_runtime::batch::postgres_rejects;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::{AuditSink, AuditWriteError};
use crate::audit::AuditEvent;

/// The `audit_events` table in Postgres.
pub struct PgAuditSink {
    pool: PgPool,
}

impl PgAuditSink {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl AuditSink for PgAuditSink {
    async fn record_batch(&self, events: &[AuditEvent]) -> Result<(), AuditWriteError> {
        insert(&self.pool, events).await.map_err(|e| {
            if postgres_rejects(&e) {
                AuditWriteError::Rejected(e.to_string())
            } else {
                AuditWriteError::Unavailable(e.to_string())
            }
        })
    }
}

async fn insert(pool: &PgPool, batch: &[AuditEvent]) -> Result<(), sqlx::Error> {
    let at: Vec<DateTime<Utc>> = batch.iter().map(|e| e.at).collect();
    let kind: Vec<&str> = batch.iter().map(|e| e.kind.as_str()).collect();
    let client: Vec<Option<String>> = batch.iter().map(|e| e.client_id.clone()).collect();
    let user: Vec<Option<Uuid>> = batch.iter().map(|e| e.user_id).collect();
    let grant: Vec<Option<Uuid>> = batch.iter().map(|e| e.grant_id).collect();
    let ip: Vec<Option<String>> = batch.iter().map(|e| e.ip.clone()).collect();
    let detail: Vec<Value> = batch
        .iter()
        .map(|e| {
            if e.detail.is_null() {
                Value::Object(Default::default())
            } else {
                e.detail.clone()
            }
        })
        .collect();
    sqlx::query(
        "INSERT INTO audit_events (occurred_at, kind, client_id, user_id, grant_id, ip, detail) \
         SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::uuid[], $5::uuid[], $6::text[], $7::jsonb[])",
    )
    .bind(at)
    .bind(kind)
    .bind(client)
    .bind(user)
    .bind(grant)
    .bind(ip)
    .bind(detail)
    .execute(pool)
    .await?;
    Ok(())
}
