//! `UserAdminStore` conformance: finding a user, the disabled flag, and the bulk revocation of
//! a user's grants and consents.

use auth_service::store::clients::ClientSource;
use chrono::Duration;

use super::clients::client;
use super::grants::grant;
use super::{Backend, now};

async fn a_user_is_found_by_link_or_by_provider_subject(b: &Backend) {
    let s = &b.stores;
    let local = s.users.upsert("local", "alice", "alice").await.unwrap();
    let linked = s
        .users
        .link_upstream("gh", "https://gh.example", "42", "octo")
        .await
        .unwrap();
    assert!(s.user_admin.exists(local).await.unwrap());
    assert!(!s.user_admin.exists(uuid::Uuid::new_v4()).await.unwrap());
    assert_eq!(
        s.user_admin
            .find_by_subject("local", "alice")
            .await
            .unwrap(),
        Some(local)
    );
    assert_eq!(
        s.user_admin
            .find_by_subject("https://gh.example", "42")
            .await
            .unwrap(),
        Some(linked)
    );
    assert_eq!(
        s.user_admin.find_by_subject("local", "bob").await.unwrap(),
        None
    );
}

async fn disabling_keeps_the_first_instant_and_is_reversible(b: &Backend) {
    let s = &b.stores;
    let u = s.users.upsert("dev", "alice", "alice").await.unwrap();
    assert!(!s.user_admin.is_disabled(u).await.unwrap());
    assert!(s.user_admin.set_disabled(u, true).await.unwrap());
    assert!(s.user_admin.set_disabled(u, true).await.unwrap());
    assert!(s.user_admin.is_disabled(u).await.unwrap());
    assert!(s.user_admin.set_disabled(u, false).await.unwrap());
    assert!(!s.user_admin.is_disabled(u).await.unwrap());
    let ghost = uuid::Uuid::new_v4();
    assert!(!s.user_admin.set_disabled(ghost, true).await.unwrap());
    assert!(!s.user_admin.is_disabled(ghost).await.unwrap());
}

async fn a_users_grants_and_consents_go_in_bulk(b: &Backend) {
    let s = &b.stores;
    s.clients
        .insert(&client("app", ClientSource::Dynamic))
        .await
        .unwrap();
    let alice = s.users.upsert("dev", "alice", "alice").await.unwrap();
    let bob = s.users.upsert("dev", "bob", "bob").await.unwrap();
    let live = grant(alice, "app");
    s.grants
        .create(&live, now() + Duration::days(1), Some(&[1; 32][..]))
        .await
        .unwrap();
    // Past its own expiry but refreshed since: still live, still revoked.
    let old = grant(alice, "app");
    s.grants
        .create(&old, now() - Duration::hours(1), None)
        .await
        .unwrap();
    let revoked = grant(alice, "app");
    s.grants
        .create(&revoked, now() + Duration::days(1), None)
        .await
        .unwrap();
    s.grants.revoke(revoked.grant_id, "earlier").await.unwrap();
    let bobs = grant(bob, "app");
    s.grants
        .create(&bobs, now() + Duration::days(1), Some(&[2; 32][..]))
        .await
        .unwrap();
    s.consents
        .record_consent(alice, "app", "https://r.example/mcp", "read")
        .await
        .unwrap();
    s.consents
        .record_consent(bob, "app", "https://r.example/mcp", "read")
        .await
        .unwrap();

    let mut ids = s.user_admin.revoke_grants(alice, "incident").await.unwrap();
    ids.sort();
    let mut expected = vec![live.grant_id, old.grant_id];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(
        s.user_admin
            .revoke_grants(alice, "incident")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.grants.active_refresh(&[1; 32]).await.unwrap().is_none());
    assert!(s.grants.active_refresh(&[2; 32]).await.unwrap().is_some());
    assert_eq!(s.user_admin.delete_consents(alice).await.unwrap(), 1);
    assert_eq!(s.user_admin.delete_consents(alice).await.unwrap(), 0);
    assert!(
        s.consents
            .consented_scope(bob, "app", "https://r.example/mcp")
            .await
            .unwrap()
            .is_some()
    );
}

crate::conformance!(
    a_user_is_found_by_link_or_by_provider_subject,
    disabling_keeps_the_first_instant_and_is_reversible,
    a_users_grants_and_consents_go_in_bulk,
);
