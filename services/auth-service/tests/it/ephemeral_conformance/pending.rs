//! Pending authorizations: stored until their TTL, replaced by a later `put`, taken once.

use auth_service::store::ephemeral::PendingAuthorization;

use super::{Backend, conformance, outlive};

conformance!(
    put_get_take,
    a_later_put_replaces,
    expires_after_its_ttl,
    concurrent_takers_one_wins
);

fn pending(client_id: &str) -> PendingAuthorization {
    PendingAuthorization {
        client_id: client_id.into(),
        redirect_uri: "http://127.0.0.1:9/cb".into(),
        redirect_uri_given: true,
        state: Some("st".into()),
        code_challenge: "challenge".into(),
        scope: "mcp:read".into(),
        resource: "https://r.example/mcp".into(),
        csrf: "csrf".into(),
        browser_sha256: "ab".repeat(32),
        user_id: None,
        authenticated_at: None,
        force_consent: true,
        device: None,
    }
}

async fn put_get_take(b: Backend) {
    let e = b.ephemeral();
    let id = uuid::Uuid::new_v4().to_string();
    assert!(e.pending.get(&id).await.unwrap().is_none());
    e.pending.put(&id, &pending("c1"), 60).await.unwrap();
    let got = e.pending.get(&id).await.unwrap().unwrap();
    assert_eq!(got.client_id, "c1");
    assert_eq!(got.state.as_deref(), Some("st"));
    assert!(got.force_consent);
    // Reading does not consume it.
    assert!(e.pending.get(&id).await.unwrap().is_some());
    assert_eq!(e.pending.take(&id).await.unwrap().unwrap().client_id, "c1");
    assert!(e.pending.take(&id).await.unwrap().is_none());
    assert!(e.pending.get(&id).await.unwrap().is_none());
}

async fn a_later_put_replaces(b: Backend) {
    let e = b.ephemeral();
    let id = uuid::Uuid::new_v4().to_string();
    e.pending.put(&id, &pending("c1"), 60).await.unwrap();
    let mut logged_in = pending("c1");
    logged_in.user_id = Some(uuid::Uuid::new_v4());
    logged_in.authenticated_at = Some(1_700_000_000);
    e.pending.put(&id, &logged_in, 60).await.unwrap();
    let got = e.pending.get(&id).await.unwrap().unwrap();
    assert_eq!(got.user_id, logged_in.user_id);
    assert_eq!(got.authenticated_at, Some(1_700_000_000));
}

async fn expires_after_its_ttl(b: Backend) {
    let e = b.ephemeral();
    let (short, long) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    e.pending.put(&short, &pending("c1"), 1).await.unwrap();
    e.pending.put(&long, &pending("c2"), 60).await.unwrap();
    outlive(1).await;
    assert!(e.pending.get(&short).await.unwrap().is_none());
    assert!(e.pending.take(&short).await.unwrap().is_none());
    assert_eq!(e.pending.get(&long).await.unwrap().unwrap().client_id, "c2");
}

async fn concurrent_takers_one_wins(b: Backend) {
    let e = b.ephemeral();
    let id = uuid::Uuid::new_v4().to_string();
    e.pending.put(&id, &pending("c1"), 60).await.unwrap();
    let takers: Vec<_> = (0..50)
        .map(|_| {
            let (e, id) = (e.clone(), id.clone());
            tokio::spawn(async move { e.pending.take(&id).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for t in takers {
        won += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(won, 1);
}
