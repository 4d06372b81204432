//! The audit trail: every security event, written to the store (an [`AuditSink`]: Postgres, or
//! SQLite in the embedded mode) in batches by a background task
//! so that the request path never waits on an insert. The channel is bounded (a burst applies
//! back-pressure instead of growing memory, for at most [`RECORD_WAIT`]; past that an event is
//! dropped, counted and logged rather than holding requests up), a batch that fails to reach the
//! database is retried until it does, an event the database refuses on its own is quarantined
//! (logged, counted) without holding up the rest, and shutdown drains the channel before
//! exiting. Recorded strings are sanitized: a control character in a client-supplied value
//! cannot poison the trail.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use mcpauth_runtime::batch::{Batching, Recorder, Sink, Trail, sanitize, sanitize_json};
use serde_json::Value;
use uuid::Uuid;

use crate::store::audit::{AuditSink, AuditWriteError};

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
    TokenExchanged,
    TokenExchangeRefused,
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
    UserRevoked,
    UserDisabled,
    UserEnabled,
    GrpcPermissionDenied,
    SessionLoggedOut,
    DeviceAuthorized,
    DeviceApproved,
    DeviceRedeemed,
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
            AuditKind::TokenExchanged => "token.exchanged",
            AuditKind::TokenExchangeRefused => "token.exchange_refused",
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
            AuditKind::UserRevoked => "user.revoked",
            AuditKind::UserDisabled => "user.disabled",
            AuditKind::UserEnabled => "user.enabled",
            AuditKind::GrpcPermissionDenied => "grpc.permission_denied",
            AuditKind::SessionLoggedOut => "session.logged_out",
            AuditKind::DeviceAuthorized => "device.authorized",
            AuditKind::DeviceApproved => "device.approved",
            AuditKind::DeviceRedeemed => "device.redeemed",
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
    /// The client; control characters are replaced (the value may come from a request).
    pub fn client(mut self, id: impl Into<String>) -> Self {
        let id = id.into();
        self.client_id = Some(match sanitize(&id) {
            std::borrow::Cow::Borrowed(_) => id,
            std::borrow::Cow::Owned(clean) => clean,
        });
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
        self.ip = ip.map(|ip| sanitize(&ip).into_owned());
        self
    }
    /// Free-form detail; every string in it is sanitized like [`AuditEvent::client`].
    pub fn detail(mut self, mut detail: Value) -> Self {
        sanitize_json(&mut detail);
        self.detail = detail;
        self
    }
}

/// Handle used by request handlers to record events.
#[derive(Clone)]
pub struct AuditLog {
    recorder: Recorder<AuditEvent>,
}

/// Longest a request waits for room in a full channel before its event is dropped (and
/// counted in `mcpauth_batch_dropped_total{trail="audit"}`).
pub const RECORD_WAIT: Duration = Duration::from_secs(1);

/// The audit trail: 65,536 events of slack, batches of up to 2,000 gathered for 10 ms after the
/// first one (see [`Batching`]).
const TRAIL: Trail = Trail {
    name: "audit",
    channel: 65_536,
    batching: Batching {
        max: 2_000,
        linger: Duration::from_millis(10),
    },
    record_wait: RECORD_WAIT,
};

impl AuditLog {
    /// Starts the writer task; it ends after every handle is dropped and the channel is drained.
    pub fn start(sink: Arc<dyn AuditSink>) -> (Self, tokio::task::JoinHandle<()>) {
        let (recorder, writer) = TRAIL.start(AuditTable { sink });
        (Self { recorder }, writer)
    }

    /// Records an event. Waits only when the writer is a full channel behind, and then at most
    /// [`RECORD_WAIT`].
    pub async fn record(&self, event: AuditEvent) {
        let kind = event.kind.as_str();
        metrics::counter!("mcpauth_audit_events_total", "kind" => kind).increment(1);
        if !self.recorder.record(event).await {
            tracing::error!(kind, "audit event not recorded");
        }
    }
}

/// The batch writer's view of the store: an [`AuditSink`], whichever backend it is.
struct AuditTable {
    sink: Arc<dyn AuditSink>,
}

impl Sink<AuditEvent> for AuditTable {
    type Error = AuditWriteError;
    fn write<'a>(
        &'a mut self,
        batch: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), AuditWriteError>> {
        self.sink.record_batch(batch)
    }
    fn rejects(&self, error: &AuditWriteError) -> bool {
        matches!(error, AuditWriteError::Rejected(_))
    }
    fn quarantine(&mut self, e: &AuditEvent, error: &AuditWriteError) {
        // What the row would have said, minus `detail` (free-form; its strings are the likely
        // culprit). Values are escaped by the log encoder.
        tracing::error!(
            target: "audit",
            error = %error,
            kind = e.kind.as_str(),
            at = %e.at,
            client_id = e.client_id.as_deref().map(|c| sanitize(c).into_owned()),
            user_id = ?e.user_id,
            grant_id = ?e.grant_id,
            "audit event refused by the database; quarantined in this log"
        );
    }
}
