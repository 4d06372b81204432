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
