//! The audit trail: every security event, written to Postgres in batches by a background task
//! so that the request path never waits on an insert. Events are never dropped: the channel is
//! bounded (a burst applies back-pressure instead of growing memory), a failed batch is retried,
//! and shutdown drains the channel before exiting.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mcpauth_runtime::batch::{Batching, write_batches};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Kinds of security event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    ClientRegistered,
    ClientUpdated,
    ClientDeleted,
    ConsentGranted,
    ConsentDenied,
    LoginSucceeded,
    LoginFailed,
    CodeIssued,
    CodeRedeemed,
    CodeReplayed,
    TokenIssued,
    TokenRefreshed,
    TokenRevoked,
    RefreshReuseDetected,
    ClientAuthFailed,
    UpstreamLoginSucceeded,
    UpstreamLoginFailed,
    VaultStored,
    VaultStoreFailed,
    ConnectStarted,
    ConnectRefused,
    ConnectCompleted,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::ClientRegistered => "client.registered",
            AuditKind::ClientUpdated => "client.updated",
            AuditKind::ClientDeleted => "client.deleted",
            AuditKind::ConsentGranted => "consent.granted",
            AuditKind::ConsentDenied => "consent.denied",
            AuditKind::LoginSucceeded => "login.succeeded",
            AuditKind::LoginFailed => "login.failed",
            AuditKind::CodeIssued => "code.issued",
            AuditKind::CodeRedeemed => "code.redeemed",
            AuditKind::CodeReplayed => "code.replayed",
            AuditKind::TokenIssued => "token.issued",
            AuditKind::TokenRefreshed => "token.refreshed",
            AuditKind::TokenRevoked => "token.revoked",
            AuditKind::RefreshReuseDetected => "refresh.reuse_detected",
            AuditKind::ClientAuthFailed => "client.auth_failed",
            AuditKind::UpstreamLoginSucceeded => "upstream.login_succeeded",
            AuditKind::UpstreamLoginFailed => "upstream.login_failed",
            AuditKind::VaultStored => "vault.credential_stored",
            AuditKind::VaultStoreFailed => "vault.credential_store_failed",
            AuditKind::ConnectStarted => "connect.started",
            AuditKind::ConnectRefused => "connect.refused",
            AuditKind::ConnectCompleted => "connect.completed",
        }
    }
}

/// One event. Never put a token or secret in `detail`.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: DateTime<Utc>,
    pub kind: AuditKind,
    pub client_id: Option<String>,
    pub user_id: Option<Uuid>,
    pub grant_id: Option<Uuid>,
    pub ip: Option<String>,
    pub detail: Value,
}

impl AuditEvent {
    pub fn new(kind: AuditKind) -> Self {
        Self {
            at: Utc::now(),
            kind,
            client_id: None,
            user_id: None,
            grant_id: None,
            ip: None,
            detail: Value::Null,
        }
    }
    pub fn client(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }
    pub fn user(mut self, id: Uuid) -> Self {
        self.user_id = Some(id);
        self
    }
    pub fn grant(mut self, id: Uuid) -> Self {
        self.grant_id = Some(id);
        self
    }
    pub fn ip(mut self, ip: Option<String>) -> Self {
        self.ip = ip;
        self
    }
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// Handle used by request handlers to record events.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<AuditEvent>,
}

const CHANNEL: usize = 65_536;
const BATCH: usize = 2_000;
/// How long the writer lets events gather after the first one of a batch (see [`Batching`]).
const LINGER: Duration = Duration::from_millis(10);

impl AuditLog {
    /// Starts the writer task; it ends after every handle is dropped and the channel is drained.
    pub fn start(pool: PgPool) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let handle = tokio::spawn(writer(pool, rx));
        (Self { tx }, handle)
    }

    /// Records an event. Waits only when the writer is `CHANNEL` events behind.
    pub async fn record(&self, event: AuditEvent) {
        metrics::counter!("mcpauth_audit_events_total", "kind" => event.kind.as_str()).increment(1);
        if let Err(e) = self.tx.send(event).await {
            // Only possible after shutdown began; the event is still logged.
            tracing::error!(
                kind = e.0.kind.as_str(),
                "audit writer stopped; event logged only"
            );
        }
    }
}

async fn writer(pool: PgPool, rx: mpsc::Receiver<AuditEvent>) {
    let batching = Batching {
        max: BATCH,
        linger: LINGER,
    };
    write_batches(rx, batching, "audit", |batch| {
        // A pool handle per batch (an `Arc` clone): the future may not borrow the closure.
        let pool = pool.clone();
        Box::pin(async move { insert(&pool, batch).await })
    })
    .await;
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
