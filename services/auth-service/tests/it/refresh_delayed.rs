//! A refresh request held up inside the server (as while Postgres is down) whose token is spent,
//! and a successor used, only after it arrived, is refused — it is not a replay and must not
//! revoke the family (found by mcp-service's fault test, tests/it/faults.rs there).

use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_delayed_past_its_tokens_rotation_does_not_revoke_the_family() {
    let s = TestServer::start().await;
    let (client, body) = s.login(None).await;
    let token = body["refresh_token"].as_str().unwrap().to_owned();
    let digest = auth_service::domain::token::hash(&token);

    // Hold the token's row so that the request waits inside the server.
    let mut tx = s.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM refresh_tokens WHERE token_sha256 = $1 FOR UPDATE")
        .bind(&digest[..])
        .execute(&mut *tx)
        .await
        .unwrap();
    let delayed = {
        let (http, url, client, token) = (
            s.http.clone(),
            s.url("/token"),
            client.clone(),
            token.clone(),
        );
        tokio::spawn(async move {
            let r = http
                .post(url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", client.as_str()),
                ])
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Meanwhile (after the request arrived) the client's retry spent the token and the client
    // went on to use the successor.
    sqlx::query(
        "UPDATE refresh_tokens SET rotated_at = clock_timestamp(), successor_used = true \
         WHERE token_sha256 = $1",
    )
    .bind(&digest[..])
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let (status, body) = delayed.await.unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let revoked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM grants WHERE revoked_at IS NOT NULL")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(revoked, 0, "the delayed request revoked the grant");

    // A replay that arrives after the rotation still revokes the family.
    let (status, body, _) = s.refresh(&client, &token, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let revoked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM grants WHERE revoked_at IS NOT NULL")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(revoked, 1, "a replay revokes the family");
    s.stop().await;
}

/// Redeems `token` at the store, as the token endpoint does for a request that arrived at
/// `received_at` (grace period off: a spent token is a replay or a delayed request).
async fn redeem_at_store(
    s: &TestServer,
    client: &str,
    token: &str,
    received_at: std::time::Instant,
) -> auth_service::store::grants::RefreshOutcome {
    use auth_service::domain::token::hash;
    let keys = &s.running.as_ref().unwrap().state.tokens.keys;
    use auth_service::store::grants::GrantStore;
    auth_service::store::grants::postgres::PgGrantStore::new(s.pool.clone())
        .refresh(auth_service::store::grants::RefreshRequest {
            presented_sha256: &hash(token),
            client_id: client,
            successor_sha256: &hash(&keys.refresh_successor(token)),
            requested_scope: None,
            requested_resource: None,
            grace_secs: 0,
            refresh_ttl_secs: 3600,
            received_at,
        })
        .await
        .unwrap()
}

/// Spends `token` and uses its successor, over HTTP.
async fn rotate_and_move_on(s: &TestServer, client: &str, token: &str) {
    let (status, body, _) = s.refresh(client, token, &[]).await;
    assert_eq!(status, 200, "{body}");
    let next = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, body, _) = s.refresh(client, &next, &[]).await;
    assert_eq!(status, 200, "{body}");
}

/// Issue 12 review: the delayed-refresh check compared the service's clock (when the request
/// arrived) with Postgres's (when the token was spent). A skew between the two flipped the
/// outcome: a service clock behind Postgres made a replay look delayed (the family survived a
/// replayed token), one ahead made a delayed request look like a replay (the family was revoked
/// under its own client). The arrival is now a monotonic instant that the store places on
/// Postgres's clock; the test passes it explicitly, and the service's wall clock — skewed or
/// not — is no input any more.
#[tokio::test]
async fn a_skew_between_the_service_clock_and_postgres_cannot_flip_replay_detection() {
    use auth_service::store::grants::RefreshOutcome;
    let s = TestServer::start().await;

    // A replay that arrives after the rotation (before the fix: on a service whose clock is an
    // hour behind Postgres's, it was taken for a delayed request): still a replay.
    let (client, body) = s.login(None).await;
    let token = body["refresh_token"].as_str().unwrap().to_owned();
    rotate_and_move_on(&s, &client, &token).await;
    let arrived = std::time::Instant::now();
    let outcome = redeem_at_store(&s, &client, &token, arrived).await;
    assert!(
        matches!(outcome, RefreshOutcome::ReuseDetected(_)),
        "a replay after the rotation: {outcome:?}"
    );

    // A request that arrived before the rotation and was held up (before the fix: on a service
    // whose clock is an hour ahead, it was taken for a replay): not a replay, the family lives.
    let (client, body) = s.login(None).await;
    let token = body["refresh_token"].as_str().unwrap().to_owned();
    let arrived = std::time::Instant::now();
    rotate_and_move_on(&s, &client, &token).await;
    let outcome = redeem_at_store(&s, &client, &token, arrived).await;
    assert!(
        matches!(outcome, RefreshOutcome::Invalid),
        "a request held up past the rotation: {outcome:?}"
    );
    s.stop().await;
}
