//! Transparent refresh: single flight across replicas, rotation, invalid_grant, transient
//! upstream failures.

use std::time::Duration;

use mcpauth_proto::v1::{ConnectionStatus, ListConnectionsRequest};
use tonic::Code;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_refresh_across_two_replicas_for_100_concurrent_calls() {
    let w = World::start().await;
    let a = w.vault(&[]).await;
    let b = w.vault(&[]).await;
    let mcp = w.mcp_token("alice", &w.resource);
    // Expires within the 60 s buffer: due for refresh.
    let original = w.upstream_tokens("single", now() + 20);
    put(&mut a.client(), "alice", "github", original.clone()).await;
    w.upstream.set(|s| s.delay_ms = 400);

    let mut calls = vec![];
    for i in 0..100 {
        let mut c = if i % 2 == 0 { a.client() } else { b.client() };
        let mcp = mcp.clone();
        calls.push(tokio::spawn(
            async move { get(&mut c, &mcp, "github").await },
        ));
    }
    let mut answers = std::collections::HashSet::new();
    for call in calls {
        let got = call.await.unwrap().expect("every caller gets a token");
        answers.insert(got.access_token);
    }
    assert_eq!(
        w.upstream.get(|s| s.token_calls),
        1,
        "exactly one refresh at the upstream"
    );
    assert_eq!(
        answers.len(),
        1,
        "everyone received the one refreshed token"
    );
    let refreshed = answers.into_iter().next().unwrap();
    assert!(refreshed.starts_with("upstream-at-refreshed-1-"));
    assert_eq!(
        w.upstream.get(|s| s.refresh_tokens_seen.clone()),
        vec![original.refresh_token.clone()]
    );
    // client_secret_basic at the token endpoint.
    assert!(
        w.upstream
            .get(|s| s.client_auth_seen[0].starts_with("Basic "))
    );
    let pool = w.pool().await;
    assert_eq!(row(&pool, "alice", "github").await.unwrap().0, 2);

    // The rotated refresh token is what the next refresh presents (a replica with a buffer
    // longer than the new token's life refreshes at once).
    let eager = w
        .vault(&[("MCPAUTH__REFRESH__BUFFER_SECS", "7200".into())])
        .await;
    w.upstream.set(|s| s.delay_ms = 0);
    let next = get(&mut eager.client(), &mcp, "github").await.unwrap();
    assert!(next.access_token.starts_with("upstream-at-refreshed-2-"));
    let seen = w.upstream.get(|s| s.refresh_tokens_seen.clone());
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].starts_with("upstream-rt-rotated-1-"),
        "the rotated refresh token is used"
    );
    assert_eq!(row(&pool, "alice", "github").await.unwrap().0, 3);
    // A plain read on the other replicas now serves the stored token without refreshing.
    assert_eq!(
        get(&mut a.client(), &mcp, "github")
            .await
            .unwrap()
            .access_token,
        next.access_token
    );
    assert_eq!(w.upstream.get(|s| s.token_calls), 2);
    pool.close().await;
    w.assert_no_plaintext().await;
    for v in [a, b, eager] {
        v.stop().await;
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_grant_requires_reauthorization() {
    let w = World::start().await;
    let v = w.vault(&[]).await;
    let mut c = v.client();
    let mut events = w.events().await;
    let mcp = w.mcp_token("alice", &w.resource);
    put(
        &mut c,
        "alice",
        "github",
        w.upstream_tokens("ig", now() - 5),
    )
    .await;
    next_event(&mut events).await;
    w.upstream.set(|s| s.default = Some(Answer::InvalidGrant));

    let e = get(&mut c, &mcp, "github").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    // The typed detail is the signal; the message keeps its prefix for older callers.
    assert_eq!(
        mcpauth_proto::status_detail::vault_error_reason(&e),
        mcpauth_proto::v1::VaultErrorReason::ReauthorizationRequired
    );
    assert!(
        e.message().starts_with("reauthorization_required"),
        "{}",
        e.message()
    );
    assert_eq!(
        next_event(&mut events).await,
        serde_json::json!({"user_id": "alice", "provider": "github", "status": "reauthorization_required"})
    );
    let list = c
        .list_connections(req(
            CREDENTIAL,
            ListConnectionsRequest {
                access_token: mcp.clone(),
                user_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.connections[0].status,
        ConnectionStatus::ReauthorizationRequired as i32
    );
    // Later calls fail the same way without asking the upstream again.
    let e = get(&mut c, &mcp, "github").await.unwrap_err();
    assert_eq!(
        mcpauth_proto::status_detail::vault_error_reason(&e),
        mcpauth_proto::v1::VaultErrorReason::ReauthorizationRequired
    );
    assert_eq!(w.upstream.get(|s| s.token_calls), 1);
    // A new connection clears it.
    w.upstream.set(|s| s.default = Some(Answer::Ok));
    let fresh = w.upstream_tokens("reconnected", now() + 3600);
    put(&mut c, "alice", "github", fresh.clone()).await;
    assert_eq!(
        get(&mut c, &mcp, "github").await.unwrap().access_token,
        fresh.access_token
    );
    w.assert_no_plaintext().await;
    v.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transient_upstream_failures_are_retried_and_never_lose_the_credential() {
    let w = World::start().await;
    let v = w.vault(&[]).await;
    let mut c = v.client();
    let pool = w.pool().await;
    let mcp = w.mcp_token("alice", &w.resource);

    // 503 then success: retried within the same call.
    let t = w.upstream_tokens("503", now() - 5);
    put(&mut c, "alice", "github", t.clone()).await;
    w.upstream.set(|s| s.script = vec![Answer::Unavailable503]);
    let got = get(&mut c, &mcp, "github").await.unwrap();
    assert!(got.access_token.starts_with("upstream-at-refreshed-1-"));
    assert_eq!(w.upstream.get(|s| s.token_calls), 2);
    assert_eq!(
        w.upstream.get(|s| s.refresh_tokens_seen.clone()),
        vec![t.refresh_token.clone(); 2]
    );
    assert_eq!(row(&pool, "alice", "github").await.unwrap().0, 2);

    // Always 503 while the current token is still valid: the current token is returned and the
    // record is unchanged.
    let t = w.upstream_tokens("still-valid", now() + 30);
    let version = put(&mut c, "alice", "github", t.clone()).await;
    w.upstream.set(|s| s.default = Some(Answer::Unavailable503));
    let calls_before = w.upstream.get(|s| s.token_calls);
    let got = get(&mut c, &mcp, "github").await.unwrap();
    assert_eq!(got.access_token, t.access_token);
    assert_eq!(
        w.upstream.get(|s| s.token_calls) - calls_before,
        3,
        "one try and two retries"
    );
    assert_eq!(row(&pool, "alice", "github").await.unwrap().0, version);

    // Always 503 with an expired token: UNAVAILABLE, the credential kept; once the upstream is
    // back, the same refresh token works.
    let t = w.upstream_tokens("expired", now() - 5);
    let version = put(&mut c, "alice", "github", t.clone()).await;
    let e = get(&mut c, &mcp, "github").await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let (v_now, status, _) = row(&pool, "alice", "github").await.unwrap();
    assert_eq!((v_now, status.as_str()), (version, "connected"));
    w.upstream.set(|s| s.default = Some(Answer::Ok));
    let got = get(&mut c, &mcp, "github").await.unwrap();
    assert!(got.access_token.starts_with("upstream-at-refreshed-"));
    assert_eq!(
        w.upstream.get(|s| s.refresh_tokens_seen.last().cloned()),
        Some(t.refresh_token.clone())
    );

    // A slow upstream (beyond the request timeout) counts as transient too.
    let slow = w
        .vault(&[
            ("MCPAUTH__REFRESH__UPSTREAM_TIMEOUT_MS", "300".into()),
            ("MCPAUTH__REFRESH__RETRIES", "0".into()),
        ])
        .await;
    let t = w.upstream_tokens("slow", now() + 30);
    let version = put(&mut c, "alice", "github", t.clone()).await;
    w.upstream.set(|s| s.delay_ms = 2_000);
    let started = std::time::Instant::now();
    let got = get(&mut slow.client(), &mcp, "github").await.unwrap();
    assert_eq!(got.access_token, t.access_token);
    assert!(started.elapsed() < Duration::from_millis(1_500));
    assert_eq!(row(&pool, "alice", "github").await.unwrap().0, version);
    pool.close().await;
    w.assert_no_plaintext().await;
    slow.stop().await;
    v.stop().await;
    w.stop().await;
}
