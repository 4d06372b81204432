//! `RevocationStore` conformance: the persisted deny list, its merge rule, the re-sync
//! watermark, and expiry.

use auth_service::store::revocations::{Revocation, RevocationKind};
use chrono::{Duration, Utc};

use super::Backend;

fn rev(kind: RevocationKind, id: &str, expires_at: i64, issued_before: Option<i64>) -> Revocation {
    Revocation {
        kind,
        id: id.into(),
        expires_at,
        issued_before,
    }
}

fn sorted(mut v: Vec<Revocation>) -> Vec<Revocation> {
    v.sort_by_key(|a| (a.id.clone(), a.expires_at));
    v
}

async fn revocations_are_listed_until_they_expire(b: &Backend) {
    let store = &b.stores.revocations;
    let now = Utc::now().timestamp();
    let live = [
        rev(RevocationKind::Token, "jti-1", now + 600, None),
        rev(RevocationKind::Grant, "g-1", now + 600, None),
        rev(RevocationKind::Client, "c-1", now + 600, None),
        rev(RevocationKind::User, "u-1", now + 600, Some(now)),
    ];
    for r in &live {
        store.insert(r).await.unwrap();
    }
    store
        .insert(&rev(RevocationKind::Token, "expired", now - 10, None))
        .await
        .unwrap();
    let (all, clock) = store.since(None).await.unwrap();
    assert_eq!(sorted(all), sorted(live.to_vec()));
    assert!((clock - Utc::now()).num_seconds().abs() < 60);
    assert_eq!(store.sweep().await.unwrap(), 1, "only the expired row");
    assert_eq!(store.sweep().await.unwrap(), 0);
    assert_eq!(b.count("SELECT count(*) FROM revocations").await, 4);
}

async fn a_repeated_revocation_keeps_the_later_instants(b: &Backend) {
    let store = &b.stores.revocations;
    let now = Utc::now().timestamp();
    store
        .insert(&rev(RevocationKind::User, "u", now + 100, Some(now - 50)))
        .await
        .unwrap();
    store
        .insert(&rev(RevocationKind::User, "u", now + 50, Some(now - 10)))
        .await
        .unwrap();
    store
        .insert(&rev(RevocationKind::User, "u", now + 80, None))
        .await
        .unwrap();
    store
        .insert(&rev(RevocationKind::Token, "t", now + 10, None))
        .await
        .unwrap();
    store
        .insert(&rev(RevocationKind::Token, "t", now + 90, None))
        .await
        .unwrap();
    // Same id, another kind: another entry.
    store
        .insert(&rev(RevocationKind::Grant, "t", now + 30, None))
        .await
        .unwrap();
    let (all, _) = store.since(None).await.unwrap();
    assert_eq!(
        sorted(all),
        sorted(vec![
            rev(RevocationKind::User, "u", now + 100, Some(now - 10)),
            rev(RevocationKind::Token, "t", now + 90, None),
            rev(RevocationKind::Grant, "t", now + 30, None),
        ])
    );
}

async fn the_watermark_returns_what_was_recorded_since(b: &Backend) {
    let store = &b.stores.revocations;
    let now = Utc::now().timestamp();
    store
        .insert(&rev(RevocationKind::Token, "before", now + 600, None))
        .await
        .unwrap();
    let (_, mark) = store.since(None).await.unwrap();
    store
        .insert(&rev(RevocationKind::Token, "after", now + 600, None))
        .await
        .unwrap();
    let (newer, next) = store.since(Some(mark)).await.unwrap();
    let ids: Vec<_> = newer.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["after"]);
    assert!(next >= mark);
    // Recording it again counts as recorded now.
    store
        .insert(&rev(RevocationKind::Token, "before", now + 600, None))
        .await
        .unwrap();
    let (again, _) = store.since(Some(next)).await.unwrap();
    let ids: Vec<_> = again.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["before"]);
    // A watermark in the future finds nothing.
    let (none, _) = store
        .since(Some(Utc::now() + Duration::hours(1)))
        .await
        .unwrap();
    assert!(none.is_empty());
}

crate::conformance!(
    revocations_are_listed_until_they_expire,
    a_repeated_revocation_keeps_the_later_instants,
    the_watermark_returns_what_was_recorded_since,
);
