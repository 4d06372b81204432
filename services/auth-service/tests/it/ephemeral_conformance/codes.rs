//! Authorization codes: redeemed once (also by 50 concurrent redeemers), bound to the grant they
//! produced, and a replay — before or after the binding — leads to that grant.

use auth_service::store::ephemeral::{CodeRecord, CodeRedemption};
use uuid::Uuid;

use super::{Backend, conformance, outlive, random_key};

conformance!(
    an_unknown_code_is_unknown,
    redeemed_once_then_replayed_with_its_grant,
    a_replay_before_the_binding_is_reported_to_it,
    fifty_concurrent_redeemers_one_wins,
    expires_after_its_ttl
);

fn record() -> CodeRecord {
    CodeRecord {
        client_id: "client-1".into(),
        redirect_uri: "http://127.0.0.1:9/cb".into(),
        redirect_uri_given: false,
        code_challenge: "challenge".into(),
        scope: "mcp:read".into(),
        resource: "https://r.example/mcp".into(),
        user_id: Uuid::new_v4(),
        issued_at: 1_700_000_000,
    }
}

async fn an_unknown_code_is_unknown(b: Backend) {
    let e = b.ephemeral();
    assert!(matches!(
        e.codes.redeem(&random_key()).await.unwrap(),
        CodeRedemption::Unknown
    ));
}

async fn redeemed_once_then_replayed_with_its_grant(b: Backend) {
    let e = b.ephemeral();
    let (k, rec) = (random_key(), record());
    e.codes.put(&k, &rec, 60).await.unwrap();
    let CodeRedemption::Fresh(got) = e.codes.redeem(&k).await.unwrap() else {
        panic!("first redemption is not fresh");
    };
    assert_eq!(got.client_id, rec.client_id);
    assert_eq!(got.user_id, rec.user_id);
    assert_eq!(got.issued_at, rec.issued_at);
    let grant = Uuid::new_v4();
    // No replay seen: the grant stands.
    assert!(!e.codes.bind_grant(&k, grant).await.unwrap());
    for _ in 0..2 {
        match e.codes.redeem(&k).await.unwrap() {
            CodeRedemption::Replayed(Some(g)) => assert_eq!(g, grant),
            other => panic!("a replay after the binding gave {other:?}"),
        }
    }
}

async fn a_replay_before_the_binding_is_reported_to_it(b: Backend) {
    let e = b.ephemeral();
    let k = random_key();
    e.codes.put(&k, &record(), 60).await.unwrap();
    assert!(matches!(
        e.codes.redeem(&k).await.unwrap(),
        CodeRedemption::Fresh(_)
    ));
    // Replayed while the first redemption is still issuing: no grant to name yet.
    assert!(matches!(
        e.codes.redeem(&k).await.unwrap(),
        CodeRedemption::Replayed(None)
    ));
    // The first redemption learns of the replay when it binds its grant…
    let grant = Uuid::new_v4();
    assert!(e.codes.bind_grant(&k, grant).await.unwrap());
    // …and later replays name the grant.
    match e.codes.redeem(&k).await.unwrap() {
        CodeRedemption::Replayed(Some(g)) => assert_eq!(g, grant),
        other => panic!("a replay after the binding gave {other:?}"),
    }
}

async fn fifty_concurrent_redeemers_one_wins(b: Backend) {
    let e = b.ephemeral();
    let k = random_key();
    e.codes.put(&k, &record(), 60).await.unwrap();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let redeemers: Vec<_> = (0..50)
        .map(|_| {
            let (e, k, start) = (e.clone(), k.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                e.codes.redeem(&k).await.unwrap()
            })
        })
        .collect();
    let mut fresh = 0;
    let mut replayed = 0;
    for r in redeemers {
        match r.await.unwrap() {
            CodeRedemption::Fresh(_) => fresh += 1,
            CodeRedemption::Replayed(None) => replayed += 1,
            // A loser that ran between the winner's take and its used mark (Redis: two
            // commands) finds nothing; never a grant, none was bound.
            CodeRedemption::Unknown => {}
            CodeRedemption::Replayed(Some(g)) => panic!("replay named grant {g} before binding"),
        }
    }
    assert_eq!(fresh, 1);
    // Whoever saw the replay flagged it: the winner's binding must revoke its grant.
    let grant = Uuid::new_v4();
    assert_eq!(e.codes.bind_grant(&k, grant).await.unwrap(), replayed > 0);
}

async fn expires_after_its_ttl(b: Backend) {
    let e = b.ephemeral();
    let k = random_key();
    e.codes.put(&k, &record(), 1).await.unwrap();
    outlive(1).await;
    assert!(matches!(
        e.codes.redeem(&k).await.unwrap(),
        CodeRedemption::Unknown
    ));
}
