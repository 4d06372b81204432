//! `AuditSink` conformance, through the batch writer that production uses: every event
//! recorded is written, one row each, with concurrent recorders too.

use auth_service::audit::{AuditEvent, AuditKind, AuditLog};
use serde_json::json;

use super::Backend;

async fn every_event_is_written_once(b: &Backend) {
    let (log, writer) = AuditLog::start(b.stores.audit.clone());
    let user = uuid::Uuid::new_v4();
    for i in 0..250 {
        log.record(
            AuditEvent::new(AuditKind::TokenIssued)
                .client(format!("client-{i}"))
                .user(user)
                .grant(uuid::Uuid::new_v4())
                .ip(Some("127.0.0.1".into()))
                .detail(json!({"n": i, "note": "with\u{0}control"})),
        )
        .await;
    }
    log.record(AuditEvent::new(AuditKind::LoginFailed)).await;
    drop(log);
    writer.await.unwrap();
    assert_eq!(b.count("SELECT count(*) FROM audit_events").await, 251);
    assert_eq!(
        b.count("SELECT count(*) FROM audit_events WHERE kind = 'token.issued'")
            .await,
        250
    );
    assert_eq!(
        b.count("SELECT count(*) FROM audit_events WHERE client_id IS NULL")
            .await,
        1
    );
    // An empty batch is a no-op.
    b.stores.audit.record_batch(&[]).await.unwrap();
}

async fn concurrent_recorders_lose_nothing(b: &Backend) {
    let (log, writer) = AuditLog::start(b.stores.audit.clone());
    let tasks: Vec<_> = (0..10)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..300 {
                    log.record(
                        AuditEvent::new(AuditKind::TokenRefreshed)
                            .client(format!("c{t}"))
                            .detail(json!({"i": i})),
                    )
                    .await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    drop(log);
    writer.await.unwrap();
    assert_eq!(b.count("SELECT count(*) FROM audit_events").await, 3000);
}

async fn direct_concurrent_batches_are_all_written(b: &Backend) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let sink = b.stores.audit.clone();
            tokio::spawn(async move {
                let batch: Vec<_> = (0..100)
                    .map(|_| AuditEvent::new(AuditKind::CodeIssued))
                    .collect();
                sink.record_batch(&batch).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(b.count("SELECT count(*) FROM audit_events").await, 800);
}

crate::conformance!(
    every_event_is_written_once,
    concurrent_recorders_lose_nothing,
    direct_concurrent_batches_are_all_written,
);
