//! `GrantStore` conformance: refresh rotation (50 concurrent callers → one successor), the
//! grace period and reuse detection, delayed requests, scope and resource narrowing, and
//! revocation cascades.

use std::sync::Arc;
use std::time::Instant;

use auth_service::domain::scope::ScopeSet;
use auth_service::store::clients::ClientSource;
use auth_service::store::grants::{Grant, GrantStore, RefreshOutcome, RefreshRequest};
use chrono::{Duration, Utc};
use uuid::Uuid;

use super::clients::client;
use super::{Backend, now};

pub const RESOURCE: &str = "https://r.example/mcp";

pub fn grant(user_id: Uuid, client_id: &str) -> Grant {
    Grant {
        grant_id: Uuid::new_v4(),
        user_id,
        client_id: client_id.into(),
        scope: "read write".into(),
        resource: RESOURCE.into(),
    }
}

/// A user, a client and a grant with its first refresh token `[1; 32]`.
async fn setup(b: &Backend) -> Grant {
    b.stores
        .clients
        .insert(&client("app", ClientSource::Dynamic))
        .await
        .unwrap();
    let user = b
        .stores
        .users
        .upsert("dev", "alice", "alice")
        .await
        .unwrap();
    let g = grant(user, "app");
    b.stores
        .grants
        .create(&g, now() + Duration::days(30), Some(&TOKEN[..]))
        .await
        .unwrap();
    g
}

const TOKEN: [u8; 32] = [1; 32];

fn successor_of(token: &[u8]) -> Vec<u8> {
    token.iter().map(|b| b.wrapping_add(1)).collect()
}

fn request<'a>(
    presented: &'a [u8],
    successor: &'a [u8],
    grace_secs: i64,
    received_at: Instant,
) -> RefreshRequest<'a> {
    RefreshRequest {
        presented_sha256: presented,
        client_id: "app",
        successor_sha256: successor,
        requested_scope: None,
        requested_resource: None,
        grace_secs,
        refresh_ttl_secs: 3600,
        received_at,
    }
}

async fn refresh(
    store: &Arc<dyn GrantStore>,
    presented: &[u8],
    grace: i64,
    received_at: Instant,
) -> RefreshOutcome {
    let succ = successor_of(presented);
    store
        .refresh(request(presented, &succ, grace, received_at))
        .await
        .unwrap()
}

async fn a_grant_and_its_first_token_are_created_together(b: &Backend) {
    let g = setup(b).await;
    let (row, issued) = b
        .stores
        .grants
        .active_refresh(&TOKEN)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.grant.grant_id, g.grant_id);
    assert_eq!(row.grant.user_id, g.user_id);
    assert_eq!(row.grant.client_id, "app");
    assert_eq!(row.scope, "read write");
    assert_eq!(row.resource, RESOURCE);
    assert!(issued <= Utc::now() && issued > Utc::now() - Duration::minutes(1));
    assert_eq!(
        b.stores
            .grants
            .grant_of_refresh(&TOKEN)
            .await
            .unwrap()
            .unwrap()
            .grant_id,
        g.grant_id
    );
    assert!(
        b.stores
            .grants
            .active_refresh(&[9; 32])
            .await
            .unwrap()
            .is_none()
    );
    // Without a refresh token, only the grant.
    b.stores
        .grants
        .create(&grant(g.user_id, "app"), now() + Duration::days(1), None)
        .await
        .unwrap();
    assert_eq!(b.count("SELECT count(*) FROM grants").await, 2);
    assert_eq!(b.count("SELECT count(*) FROM refresh_tokens").await, 1);
}

async fn rotation_spends_the_token_and_stores_its_successor(b: &Backend) {
    let g = setup(b).await;
    let store = &b.stores.grants;
    let RefreshOutcome::Issued(row) = refresh(store, &TOKEN, 30, Instant::now()).await else {
        panic!("rotation refused");
    };
    assert_eq!(row.grant.grant_id, g.grant_id);
    assert_eq!(row.scope, "read write");
    assert!(row.expires_at > Utc::now() + Duration::minutes(59));
    assert!(
        store.active_refresh(&TOKEN).await.unwrap().is_none(),
        "spent"
    );
    let succ = successor_of(&TOKEN);
    let (active, _) = store.active_refresh(&succ).await.unwrap().unwrap();
    assert_eq!(active.expires_at, row.expires_at);
    // The successor rotates in turn; the grant is unchanged.
    let RefreshOutcome::Issued(next) = refresh(store, &succ, 30, Instant::now()).await else {
        panic!("second rotation refused");
    };
    assert_eq!(next.grant.grant_id, g.grant_id);
}

async fn fifty_concurrent_refreshes_within_grace_share_one_successor(b: &Backend) {
    let g = setup(b).await;
    let received = Instant::now();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = b.stores.grants.clone();
            tokio::spawn(async move { refresh(&store, &TOKEN, 30, received).await })
        })
        .collect();
    let mut expiries = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            RefreshOutcome::Issued(row) => {
                assert_eq!(row.grant.grant_id, g.grant_id);
                expiries.push(row.expires_at);
            }
            other => panic!("a concurrent refresh within the grace period got {other:?}"),
        }
    }
    assert_eq!(expiries.len(), 50);
    expiries.dedup();
    assert_eq!(expiries.len(), 1, "every caller got the one successor");
    assert_eq!(
        b.count("SELECT count(*) FROM refresh_tokens").await,
        2,
        "exactly one successor"
    );
    assert_eq!(
        b.count("SELECT count(*) FROM refresh_tokens WHERE rotated_at IS NOT NULL")
            .await,
        1
    );
    assert_eq!(
        b.count("SELECT count(*) FROM grants WHERE revoked_at IS NULL")
            .await,
        1
    );
}

async fn fifty_concurrent_refreshes_without_grace_have_one_winner(b: &Backend) {
    let g = setup(b).await;
    // All requests arrived before any rotation: the losers are late, not replays.
    let received = Instant::now();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = b.stores.grants.clone();
            tokio::spawn(async move { refresh(&store, &TOKEN, 0, received).await })
        })
        .collect();
    let (mut issued, mut invalid) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            RefreshOutcome::Issued(row) => {
                assert_eq!(row.grant.grant_id, g.grant_id);
                issued += 1;
            }
            RefreshOutcome::Invalid => invalid += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((issued, invalid), (1, 49));
    assert_eq!(
        b.count("SELECT count(*) FROM refresh_tokens").await,
        2,
        "exactly one successor"
    );
    assert!(
        b.stores
            .grants
            .active_refresh(&successor_of(&TOKEN))
            .await
            .unwrap()
            .is_some()
    );
}

async fn a_replay_after_the_successor_was_used_revokes_the_family(b: &Backend) {
    let g = setup(b).await;
    let store = &b.stores.grants;
    assert!(matches!(
        refresh(store, &TOKEN, 30, Instant::now()).await,
        RefreshOutcome::Issued(_)
    ));
    let succ = successor_of(&TOKEN);
    // Within the grace period the spent token still answers with its successor...
    assert!(matches!(
        refresh(store, &TOKEN, 30, Instant::now()).await,
        RefreshOutcome::Issued(_)
    ));
    // ...until the successor is used: then presenting it again is reuse.
    assert!(matches!(
        refresh(store, &succ, 30, Instant::now()).await,
        RefreshOutcome::Issued(_)
    ));
    match refresh(store, &TOKEN, 30, Instant::now()).await {
        RefreshOutcome::ReuseDetected(grant) => assert_eq!(grant.grant_id, g.grant_id),
        other => panic!("replay not detected: {other:?}"),
    }
    // The whole family is dead.
    let succ2 = successor_of(&succ);
    assert!(store.active_refresh(&succ2).await.unwrap().is_none());
    assert!(matches!(
        refresh(store, &succ2, 30, Instant::now()).await,
        RefreshOutcome::Invalid
    ));
    assert_eq!(
        b.count("SELECT count(*) FROM grants WHERE revoke_reason = 'refresh_token_reuse'")
            .await,
        1
    );
}

async fn without_grace_a_replay_revokes_but_a_delayed_request_does_not(b: &Backend) {
    let store = b.stores.grants.clone();
    setup(b).await;
    let before = Instant::now() - std::time::Duration::from_secs(5);
    assert!(matches!(
        refresh(&store, &TOKEN, 0, Instant::now()).await,
        RefreshOutcome::Issued(_)
    ));
    // Received before the rotation: a request held up, refused without revoking.
    assert!(matches!(
        refresh(&store, &TOKEN, 0, before).await,
        RefreshOutcome::Invalid
    ));
    assert_eq!(
        b.count("SELECT count(*) FROM grants WHERE revoked_at IS NULL")
            .await,
        1
    );
    // Received after it: a replay.
    assert!(matches!(
        refresh(&store, &TOKEN, 0, Instant::now()).await,
        RefreshOutcome::ReuseDetected(_)
    ));
    assert_eq!(
        b.count("SELECT count(*) FROM grants WHERE revoked_at IS NULL")
            .await,
        0
    );
}

async fn scope_resource_and_client_are_checked(b: &Backend) {
    setup(b).await;
    let store = &b.stores.grants;
    let succ = successor_of(&TOKEN);
    let mut r = request(&TOKEN, &succ, 30, Instant::now());
    r.client_id = "someone-else";
    assert!(matches!(
        store.refresh(r).await.unwrap(),
        RefreshOutcome::Invalid
    ));
    let mut r = request(&TOKEN, &succ, 30, Instant::now());
    r.requested_resource = Some("https://other.example/mcp");
    assert!(matches!(
        store.refresh(r).await.unwrap(),
        RefreshOutcome::ResourceNotGranted
    ));
    let wider = ScopeSet::parse("read write admin").unwrap();
    let mut r = request(&TOKEN, &succ, 30, Instant::now());
    r.requested_scope = Some(&wider);
    assert!(matches!(
        store.refresh(r).await.unwrap(),
        RefreshOutcome::ScopeNotGranted
    ));
    // None of these spent the token; a narrower scope narrows the access token only.
    let narrower = ScopeSet::parse("read").unwrap();
    let mut r = request(&TOKEN, &succ, 30, Instant::now());
    r.requested_scope = Some(&narrower);
    r.requested_resource = Some(RESOURCE);
    let RefreshOutcome::Issued(row) = store.refresh(r).await.unwrap() else {
        panic!("narrowed refresh refused");
    };
    assert_eq!(row.scope, "read");
    let (succ_row, _) = store.active_refresh(&succ).await.unwrap().unwrap();
    assert_eq!(
        succ_row.scope, "read write",
        "the successor keeps the token's scope"
    );
    assert!(matches!(
        store
            .refresh(request(&[42; 32], &succ, 30, Instant::now()))
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    ));
}

async fn revoking_a_grant_ends_its_tokens(b: &Backend) {
    let g = setup(b).await;
    let store = &b.stores.grants;
    store.revoke(g.grant_id, "test").await.unwrap();
    store.revoke(g.grant_id, "again").await.unwrap();
    assert!(store.active_refresh(&TOKEN).await.unwrap().is_none());
    assert!(matches!(
        refresh(store, &TOKEN, 30, Instant::now()).await,
        RefreshOutcome::Invalid
    ));
    // Still findable for revocation requests.
    assert_eq!(
        store
            .grant_of_refresh(&TOKEN)
            .await
            .unwrap()
            .unwrap()
            .grant_id,
        g.grant_id
    );
    assert_eq!(
        b.count("SELECT count(*) FROM grants WHERE revoke_reason = 'test'")
            .await,
        1
    );
}

async fn a_disabled_users_tokens_do_not_refresh(b: &Backend) {
    let g = setup(b).await;
    assert!(
        b.stores
            .user_admin
            .set_disabled(g.user_id, true)
            .await
            .unwrap()
    );
    assert!(matches!(
        refresh(&b.stores.grants, &TOKEN, 30, Instant::now()).await,
        RefreshOutcome::Invalid
    ));
    assert!(
        b.stores
            .user_admin
            .set_disabled(g.user_id, false)
            .await
            .unwrap()
    );
    assert!(matches!(
        refresh(&b.stores.grants, &TOKEN, 30, Instant::now()).await,
        RefreshOutcome::Issued(_)
    ));
}

async fn expired_tokens_are_refused_and_swept(b: &Backend) {
    b.stores
        .clients
        .insert(&client("app", ClientSource::Dynamic))
        .await
        .unwrap();
    let user = b
        .stores
        .users
        .upsert("dev", "alice", "alice")
        .await
        .unwrap();
    let old = grant(user, "app");
    b.stores
        .grants
        .create(&old, now() - Duration::days(2), Some(&[7; 32][..]))
        .await
        .unwrap();
    let live = grant(user, "app");
    b.stores
        .grants
        .create(&live, now() + Duration::days(2), Some(&[8; 32][..]))
        .await
        .unwrap();
    assert!(
        b.stores
            .grants
            .active_refresh(&[7; 32])
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        refresh(&b.stores.grants, &[7; 32], 30, Instant::now()).await,
        RefreshOutcome::Invalid
    ));
    assert_eq!(
        b.stores.grants.sweep_expired().await.unwrap(),
        2,
        "one token, one grant"
    );
    assert!(
        b.stores
            .grants
            .grant_of_refresh(&[7; 32])
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        b.stores
            .grants
            .active_refresh(&[8; 32])
            .await
            .unwrap()
            .is_some()
    );
}

crate::conformance!(
    a_grant_and_its_first_token_are_created_together,
    rotation_spends_the_token_and_stores_its_successor,
    fifty_concurrent_refreshes_within_grace_share_one_successor,
    fifty_concurrent_refreshes_without_grace_have_one_winner,
    a_replay_after_the_successor_was_used_revokes_the_family,
    without_grace_a_replay_revokes_but_a_delayed_request_does_not,
    scope_resource_and_client_are_checked,
    revoking_a_grant_ends_its_tokens,
    a_disabled_users_tokens_do_not_refresh,
    expired_tokens_are_refused_and_swept,
);
