//! Upstream states: taken exactly once, gone after their TTL.

use auth_service::store::ephemeral::{UpstreamAuthState, UpstreamPurpose};

use super::{Backend, conformance, outlive, random_key};

conformance!(
    taken_once,
    expires_after_its_ttl,
    concurrent_callbacks_one_wins
);

fn state(user_id: uuid::Uuid) -> UpstreamAuthState {
    UpstreamAuthState {
        provider: "github".into(),
        purpose: UpstreamPurpose::Connect {
            user_id,
            ticket_created_at: Some(1),
        },
        code_verifier: "verifier".into(),
        nonce: "nonce".into(),
        browser_sha256: "cd".repeat(32),
    }
}

async fn taken_once(b: Backend) {
    let e = b.ephemeral();
    let (k, user) = (random_key(), uuid::Uuid::new_v4());
    assert!(e.upstream_states.take(&k).await.unwrap().is_none());
    e.upstream_states.put(&k, &state(user), 60).await.unwrap();
    let got = e.upstream_states.take(&k).await.unwrap().unwrap();
    assert_eq!(got.provider, "github");
    assert_eq!(got.nonce, "nonce");
    assert!(matches!(got.purpose, UpstreamPurpose::Connect { user_id, .. } if user_id == user));
    // A replayed callback finds nothing.
    assert!(e.upstream_states.take(&k).await.unwrap().is_none());
}

async fn expires_after_its_ttl(b: Backend) {
    let e = b.ephemeral();
    let k = random_key();
    e.upstream_states
        .put(&k, &state(uuid::Uuid::new_v4()), 1)
        .await
        .unwrap();
    outlive(1).await;
    assert!(e.upstream_states.take(&k).await.unwrap().is_none());
}

async fn concurrent_callbacks_one_wins(b: Backend) {
    let e = b.ephemeral();
    let k = random_key();
    e.upstream_states
        .put(&k, &state(uuid::Uuid::new_v4()), 60)
        .await
        .unwrap();
    let takers: Vec<_> = (0..50)
        .map(|_| {
            let (e, k) = (e.clone(), k.clone());
            tokio::spawn(async move { e.upstream_states.take(&k).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for t in takers {
        won += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(won, 1);
}
