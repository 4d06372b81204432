//! The vault access trail: who (caller) did what (action) to which user's credential for which
//! provider, and how it ended. Never a token or secret. Written to `vault_audit` in batches by a
//! background task so that the request path never waits on an insert, and also emitted as a
//! structured log event (target `audit`). A full channel applies back-pressure; shutdown drains.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mcpauth_runtime::batch::{Batching, write_batches};
use sqlx::PgPool;
use tokio::sync::mpsc;

/// One access.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: DateTime<Utc>,
    pub caller: String,
    pub action: &'static str,
    pub user_id: String,
    pub provider: String,
    pub outcome: &'static str,
    pub detail: serde_json::Value,
}

impl AuditEvent {
    pub fn new(caller: &str, action: &'static str, user_id: &str, provider: &str) -> Self {
        Self {
            at: Utc::now(),
            caller: caller.to_owned(),
            action,
            user_id: user_id.to_owned(),
            provider: provider.to_owned(),
            outcome: "ok",
            detail: serde_json::json!({}),
        }
    }
    pub fn outcome(mut self, outcome: &'static str) -> Self {
        self.outcome = outcome;
        self
    }
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<AuditEvent>,
}

const CHANNEL: usize = 65_536;
const BATCH: usize = 1_000;
/// How long the writer lets events gather after the first one of a batch (see [`Batching`]):
/// without it, every `GetAccessToken` at moderate load cost a Postgres commit.
const LINGER: Duration = Duration::from_millis(10);

impl AuditLog {
    /// Starts the writer; it ends once every handle is dropped and the channel is drained.
    pub fn start(pool: PgPool) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CHANNEL);
        (Self { tx }, tokio::spawn(writer(pool, rx)))
    }

    pub async fn record(&self, e: AuditEvent) {
        tracing::info!(target: "audit", caller = %e.caller, action = e.action, user_id = %e.user_id,
            provider = %e.provider, outcome = e.outcome, "vault access");
        metrics::counter!("mcpauth_vault_access_total", "action" => e.action, "outcome" => e.outcome)
            .increment(1);
        if self.tx.send(e).await.is_err() {
            tracing::error!("audit writer stopped; event logged only");
        }
    }
}

async fn writer(pool: PgPool, rx: mpsc::Receiver<AuditEvent>) {
    let batching = Batching {
        max: BATCH,
        linger: LINGER,
    };
    write_batches(rx, batching, "vault audit", |batch| {
        // A pool handle per batch (an `Arc` clone): the future may not borrow the closure.
        let pool = pool.clone();
        Box::pin(async move { insert(&pool, batch).await })
    })
    .await;
}

async fn insert(pool: &PgPool, batch: &[AuditEvent]) -> Result<(), sqlx::Error> {
    let at: Vec<DateTime<Utc>> = batch.iter().map(|e| e.at).collect();
    let caller: Vec<&str> = batch.iter().map(|e| e.caller.as_str()).collect();
    let action: Vec<&str> = batch.iter().map(|e| e.action).collect();
    let user: Vec<&str> = batch.iter().map(|e| e.user_id.as_str()).collect();
    let provider: Vec<&str> = batch.iter().map(|e| e.provider.as_str()).collect();
    let outcome: Vec<&str> = batch.iter().map(|e| e.outcome).collect();
    let detail: Vec<serde_json::Value> = batch.iter().map(|e| e.detail.clone()).collect();
    sqlx::query(
        "INSERT INTO vault_audit (occurred_at, caller, action, user_id, provider, outcome, detail) \
         SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[])",
    )
    .bind(at)
    .bind(caller)
    .bind(action)
    .bind(user)
    .bind(provider)
    .bind(outcome)
    .bind(detail)
    .execute(pool)
    .await?;
    Ok(())
}
