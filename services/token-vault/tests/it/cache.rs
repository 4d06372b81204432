//! The per-replica credential cache: a write on one replica (refresh, new connection, delete) is
//! what every other replica serves well within the cache TTL, through the invalidation channel.

use std::time::{Duration, Instant};

use mcpauth_proto::v1::DeleteCredentialRequest;
use tonic::Code;

use crate::harness::*;

/// Well under `token_vault::cache::TTL`: only the invalidation message can explain a change
/// seen this fast.
const PROPAGATION: Duration = Duration::from_millis(700);

/// Polls `b` until `done` accepts its answer; every other answer must be `before`'s token.
/// Returns how long it took.
async fn until_b_serves(
    b: &Vault,
    mcp: &str,
    before: &str,
    done: impl Fn(&Result<mcpauth_proto::v1::GetAccessTokenResponse, tonic::Status>) -> bool,
) -> Duration {
    let started = Instant::now();
    let mut c = b.client();
    loop {
        let got = get(&mut c, mcp, "github").await;
        if done(&got) {
            return started.elapsed();
        }
        assert_eq!(
            got.expect("the old token until the change arrives")
                .access_token,
            before
        );
        assert!(
            started.elapsed() < PROPAGATION,
            "replica B did not see replica A's write within {PROPAGATION:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn cached_rows(v: &Vault) -> usize {
    v.running.as_ref().unwrap().vault.cache().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_on_one_replica_reach_the_others_within_the_bound() {
    assert!(PROPAGATION < token_vault::cache::TTL);
    let w = World::start().await;
    // A refreshes everything that expires within two hours; B only within a minute.
    let a = w
        .vault(&[("MCPAUTH__REFRESH__BUFFER_SECS", "7200".into())])
        .await;
    let b = w.vault(&[]).await;
    let mcp = w.mcp_token("alice", &w.resource);
    let original = w.upstream_tokens("cached", now() + 3600);
    put(&mut a.client(), "alice", "github", original.clone()).await;

    // B reads and caches the row.
    assert_eq!(
        get(&mut b.client(), &mcp, "github")
            .await
            .unwrap()
            .access_token,
        original.access_token
    );
    assert_eq!(cached_rows(&b), 1, "B serves this row from its cache");
    for _ in 0..20 {
        assert_eq!(
            get(&mut b.client(), &mcp, "github")
                .await
                .unwrap()
                .access_token,
            original.access_token
        );
    }

    // A refresh on A: B serves the refreshed token, not its cached row.
    let refreshed = get(&mut a.client(), &mcp, "github").await.unwrap();
    assert!(
        refreshed
            .access_token
            .starts_with("upstream-at-refreshed-1-")
    );
    assert_eq!(w.upstream.get(|s| s.token_calls), 1);
    until_b_serves(&b, &mcp, &original.access_token, |r| {
        r.as_ref()
            .is_ok_and(|t| t.access_token == refreshed.access_token)
    })
    .await;
    assert_eq!(w.upstream.get(|s| s.token_calls), 1, "B did not refresh");
    assert_eq!(cached_rows(&b), 1);

    // A new connection stored through A replaces it on B too.
    let reconnected = w.upstream_tokens("reconnected", now() + 86_400);
    put(&mut a.client(), "alice", "github", reconnected.clone()).await;
    until_b_serves(&b, &mcp, &refreshed.access_token, |r| {
        r.as_ref()
            .is_ok_and(|t| t.access_token == reconnected.access_token)
    })
    .await;

    // A delete on A: B refuses at once.
    let del = a
        .client()
        .delete_credential(req(
            CREDENTIAL,
            DeleteCredentialRequest {
                access_token: String::new(),
                user_id: "alice".into(),
                provider: "github".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(del.deleted);
    until_b_serves(&b, &mcp, &reconnected.access_token, |r| {
        r.as_ref().is_err_and(|e| e.code() == Code::NotFound)
    })
    .await;
    assert_eq!(cached_rows(&b), 0);
    // And keeps refusing (nothing stale comes back).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        get(&mut b.client(), &mcp, "github")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    w.assert_no_plaintext().await;
    for v in [a, b] {
        v.stop().await;
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reauthorization_required_on_one_replica_reaches_the_others() {
    let w = World::start().await;
    let a = w
        .vault(&[("MCPAUTH__REFRESH__BUFFER_SECS", "7200".into())])
        .await;
    let b = w.vault(&[]).await;
    let mcp = w.mcp_token("alice", &w.resource);
    let original = w.upstream_tokens("reauth", now() + 3600);
    put(&mut a.client(), "alice", "github", original.clone()).await;
    get(&mut b.client(), &mcp, "github").await.unwrap();
    assert_eq!(cached_rows(&b), 1);

    w.upstream.set(|s| s.default = Some(Answer::InvalidGrant));
    let e = get(&mut a.client(), &mcp, "github").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    until_b_serves(&b, &mcp, &original.access_token, |r| {
        r.as_ref()
            .is_err_and(|e| e.code() == Code::FailedPrecondition)
    })
    .await;
    for v in [a, b] {
        v.stop().await;
    }
    w.stop().await;
}
