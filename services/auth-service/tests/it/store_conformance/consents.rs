//! `ConsentStore` conformance: one approval per user, client and resource, replaced by the next.

use auth_service::store::clients::ClientSource;

use super::Backend;
use super::clients::client;

const R1: &str = "https://one.example/mcp";
const R2: &str = "https://two.example/mcp";

async fn an_approval_is_upserted_per_client_and_resource(b: &Backend) {
    let s = &b.stores;
    s.clients
        .insert(&client("app", ClientSource::Dynamic))
        .await
        .unwrap();
    s.clients
        .insert(&client("other", ClientSource::Dynamic))
        .await
        .unwrap();
    let u = s.users.upsert("dev", "alice", "alice").await.unwrap();
    assert!(
        s.consents
            .consented_scope(u, "app", R1)
            .await
            .unwrap()
            .is_none()
    );
    s.consents
        .record_consent(u, "app", R1, "read")
        .await
        .unwrap();
    assert_eq!(
        s.consents
            .consented_scope(u, "app", R1)
            .await
            .unwrap()
            .as_deref(),
        Some("read")
    );
    s.consents
        .record_consent(u, "app", R1, "read write")
        .await
        .unwrap();
    assert_eq!(
        s.consents
            .consented_scope(u, "app", R1)
            .await
            .unwrap()
            .as_deref(),
        Some("read write")
    );
    // Another resource or client is another approval.
    assert!(
        s.consents
            .consented_scope(u, "app", R2)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.consents
            .consented_scope(u, "other", R1)
            .await
            .unwrap()
            .is_none()
    );
    s.consents
        .record_consent(u, "app", R2, "admin")
        .await
        .unwrap();
    assert_eq!(
        s.consents
            .consented_scope(u, "app", R2)
            .await
            .unwrap()
            .as_deref(),
        Some("admin")
    );
    assert_eq!(b.count("SELECT count(*) FROM consents").await, 2);
}

async fn concurrent_approvals_leave_one_row(b: &Backend) {
    let s = &b.stores;
    s.clients
        .insert(&client("app", ClientSource::Dynamic))
        .await
        .unwrap();
    let u = s.users.upsert("dev", "alice", "alice").await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let consents = s.consents.clone();
            tokio::spawn(async move {
                consents
                    .record_consent(u, "app", R1, &format!("s{i}"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(b.count("SELECT count(*) FROM consents").await, 1);
    assert!(
        s.consents
            .consented_scope(u, "app", R1)
            .await
            .unwrap()
            .unwrap()
            .starts_with('s')
    );
}

crate::conformance!(
    an_approval_is_upserted_per_client_and_resource,
    concurrent_approvals_leave_one_row,
);
