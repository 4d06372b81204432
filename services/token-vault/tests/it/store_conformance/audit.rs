//! `AuditSink` behind the batched writer: N events in, N accesses recorded, nothing lost or
//! doubled, identical accesses folded into counted rows.

use serde_json::json;
use token_vault::audit::{AuditEvent, AuditLog};

use super::Backend;

const N: usize = 1_500;

pub async fn n_events_in_n_rows(b: &Backend) {
    let (log, writer) = AuditLog::start(b.stores.audit.clone());
    for i in 0..N {
        log.record(
            AuditEvent::new("conformance", "get", &format!("user-{i}"), "github")
                .detail(json!({"i": i})),
        )
        .await;
    }
    // Identical accesses: as many accesses, in as many rows as batches they fell into.
    for _ in 0..5 {
        log.record(AuditEvent::new("conformance", "list", "same-user", "").outcome("ok"))
            .await;
    }
    log.record(AuditEvent::new("conformance", "get", "x", "github").outcome("not_found"))
        .await;
    // The writer drains what is queued once the last handle is gone.
    drop(log);
    writer.await.unwrap();

    let rows = b.audit_rows().await;
    let distinct: Vec<_> = rows.iter().filter(|r| r.0.starts_with("user-")).collect();
    assert_eq!(distinct.len(), N, "N distinct accesses in, N rows");
    for (i, r) in distinct.iter().enumerate() {
        assert_eq!(
            (r.0.as_str(), r.1.as_str(), r.2.as_str(), r.3),
            (format!("user-{i}").as_str(), "get", "ok", 1),
            "in order, each once"
        );
        assert_eq!(r.4, json!({"i": i}));
    }
    let same: i64 = rows
        .iter()
        .filter(|r| r.0 == "same-user")
        .map(|r| {
            assert_eq!(r.1, "list");
            r.3
        })
        .sum();
    assert_eq!(same, 5, "identical accesses are counted, none lost");
    assert!(
        rows.iter()
            .any(|r| (r.0.as_str(), r.2.as_str()) == ("x", "not_found"))
    );
    assert_eq!(
        rows.len(),
        N + rows.iter().filter(|r| r.0 == "same-user").count() + 1
    );
}
