//! `UserStore` conformance: one user per (provider, subject) and per upstream identity,
//! concurrent first logins included.

use std::collections::HashSet;

use super::Backend;

async fn a_login_finds_or_creates_one_user(b: &Backend) {
    let users = &b.stores.users;
    let a = users.upsert("dev", "alice", "alice").await.unwrap();
    let again = users.upsert("dev", "alice", "Alice Liddell").await.unwrap();
    assert_eq!(a, again);
    assert_eq!(
        users.username(a).await.unwrap().as_deref(),
        Some("Alice Liddell")
    );
    let other_provider = users.upsert("local", "alice", "alice").await.unwrap();
    assert_ne!(a, other_provider);
    assert!(users.exists(a).await.unwrap());
    assert!(!users.exists(uuid::Uuid::new_v4()).await.unwrap());
    assert!(
        users
            .username(uuid::Uuid::new_v4())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(b.count("SELECT count(*) FROM users").await, 2);
}

async fn concurrent_first_logins_link_one_user(b: &Backend) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let users = b.stores.users.clone();
            tokio::spawn(async move {
                users
                    .link_upstream("github", "https://github.com", "12345", &format!("octo{i}"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 1, "one user for one upstream identity");
    let id = *ids.iter().next().unwrap();
    // The link holds whichever provider name it is seen through later.
    let later = b
        .stores
        .users
        .link_upstream("github-2", "https://github.com", "12345", "octo")
        .await
        .unwrap();
    assert_eq!(later, id);
    assert!(b.stores.users.username(id).await.unwrap().is_some());
    let other = b
        .stores
        .users
        .link_upstream("github", "https://github.com", "999", "other")
        .await
        .unwrap();
    assert_ne!(other, id);
    assert_eq!(b.count("SELECT count(*) FROM upstream_identities").await, 2);
    assert_eq!(b.count("SELECT count(*) FROM users").await, 2);
}

crate::conformance!(
    a_login_finds_or_creates_one_user,
    concurrent_first_logins_link_one_user,
);
