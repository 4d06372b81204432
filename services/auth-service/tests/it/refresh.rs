//! The `refresh_token` grant: rotation on every use, the grace period for concurrent refreshes
//! (`domain::refresh`), reuse detection revoking the whole family, scope and resource rules,
//! binding to the client, and storage of digests only.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use auth_service::domain::token::hash;
use serde_json::Value;

use crate::harness::*;

const READ_WRITE: &str = "mcp:tools.read mcp:tools.write";

fn tokens(body: &Value) -> (String, String) {
    (
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned(),
        body["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_owned(),
    )
}

/// Refreshes and asserts success; returns (access, refresh).
async fn refresh_ok(s: &TestServer, client: &str, rt: &str) -> (String, String) {
    let (status, body, headers) = s.refresh(client, rt, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    tokens(&body)
}

/// The grant's revocation reason, `None` while it stands.
async fn revoke_reason(s: &TestServer, grant_id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT revoke_reason FROM grants WHERE grant_id = $1::uuid")
        .bind(grant_id)
        .fetch_one(&s.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token() {
    let s = TestServer::start().await;
    let (client, body) = s.login(Some(READ_WRITE)).await;
    let (at0, rt0) = tokens(&body);
    let (status, body, headers) = s.refresh(&client, &rt0, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], READ_WRITE);
    let (at1, rt1) = tokens(&body);
    assert_ne!(rt1, rt0, "a new refresh token on every use");
    assert!(rt1.starts_with("mcprt_k1_"));

    let intro = s.assert_active(&at1).await;
    assert_eq!(intro["scope"], READ_WRITE);
    assert_eq!(intro["aud"], RESOURCE);
    let grant_id = s.grpc_introspect(&at1, "").await.grant_id;
    assert_eq!(
        s.grpc_introspect(&at0, "").await.grant_id,
        grant_id,
        "same family"
    );
    // Rotation spends the old refresh token without ending earlier access tokens.
    s.assert_active(&at0).await;
    s.assert_inactive(&rt0).await;
    // (Over HTTP a refresh token is described to its own client only: introspection.rs.)
    s.assert_active(&rt1).await;
    assert_eq!(
        s.grpc_introspect(&rt1, "").await.token_kind,
        mcpauth_proto::v1::TokenKind::Refresh as i32
    );

    let (spent, parent_of_new): (bool, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT (SELECT rotated_at IS NOT NULL FROM refresh_tokens WHERE token_sha256 = $1), \
                (SELECT parent_sha256 FROM refresh_tokens WHERE token_sha256 = $2)",
    )
    .bind(hash(&rt0))
    .bind(hash(&rt1))
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert!(spent);
    assert_eq!(parent_of_new, Some(hash(&rt0)));
    let refreshed = s.audit_events("token.refreshed", 1).await;
    assert_eq!(refreshed.len(), 1);
    assert_eq!(refreshed[0].grant_id.map(|g| g.to_string()), Some(grant_id));
    s.stop().await;
}

#[tokio::test]
async fn reuse_after_a_successor_was_used_revokes_the_family() {
    let s = TestServer::start().await;
    let (client, body) = s.login(None).await;
    let (at0, rt0) = tokens(&body);
    let grant_id = s.grpc_introspect(&at0, "").await.grant_id;

    let (at1, rt1) = refresh_ok(&s, &client, &rt0).await;
    // Within the grace period and before any successor is used, the spent token still works
    // (a second tab refreshing at the same moment) and gets the same successor: no branch.
    let (at1b, rt1b) = refresh_ok(&s, &client, &rt0).await;
    assert_eq!(rt1b, rt1);
    // Using a successor ends the grace period of its parent...
    let (at2, rt2) = refresh_ok(&s, &client, &rt1).await;
    // ...so presenting the parent again is a replay: the whole family goes.
    assert_oauth_error(&s.refresh(&client, &rt0, &[]).await, 400, "invalid_grant");

    for at in [&at0, &at1, &at1b, &at2] {
        s.assert_inactive(at).await;
    }
    for rt in [&rt1b, &rt2] {
        s.assert_inactive(rt).await;
        assert_oauth_error(&s.refresh(&client, rt, &[]).await, 400, "invalid_grant");
    }
    assert_eq!(
        revoke_reason(&s, &grant_id).await.as_deref(),
        Some("refresh_token_reuse")
    );
    let deny: i64 =
        sqlx::query_scalar("SELECT count(*) FROM revocations WHERE kind = 'grant' AND id = $1")
            .bind(&grant_id)
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(deny, 1);
    let reuse = s.audit_events("refresh.reuse_detected", 1).await;
    assert_eq!(reuse.len(), 1);
    assert_eq!(reuse[0].grant_id.map(|g| g.to_string()), Some(grant_id));
    assert_eq!(reuse[0].client_id.as_deref(), Some(client.as_str()));
    s.stop().await;
}

#[tokio::test]
async fn zero_grace_makes_refresh_tokens_strictly_single_use() {
    let s = TestServer::start_with(Options {
        env: vec![("MCPAUTH__TOKENS__REFRESH_GRACE_SECS", "0".into())],
        ..Default::default()
    })
    .await;
    let (client, body) = s.login(None).await;
    let (at0, rt0) = tokens(&body);
    let (at1, rt1) = refresh_ok(&s, &client, &rt0).await;
    // Immediately, in the same second: already a replay.
    assert_oauth_error(&s.refresh(&client, &rt0, &[]).await, 400, "invalid_grant");
    s.assert_inactive(&at0).await;
    s.assert_inactive(&at1).await;
    assert_oauth_error(&s.refresh(&client, &rt1, &[]).await, 400, "invalid_grant");
    assert_eq!(s.audit_events("refresh.reuse_detected", 1).await.len(), 1);
    s.stop().await;
}

/// Fifty tabs of one client refresh with the same token at once: nobody is logged out, and they
/// all get the one successor (the family keeps a single live refresh token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_refreshes_with_one_token_all_succeed() {
    const N: usize = 50;
    let s = TestServer::start().await;
    let (client, body) = s.login(None).await;
    let (at0, rt0) = tokens(&body);

    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..N {
        let (http, url, client, rt0) =
            (s.http.clone(), s.url("/token"), client.clone(), rt0.clone());
        set.spawn(async move {
            let r = http
                .post(url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt0.as_str()),
                    ("client_id", client.as_str()),
                ])
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        });
    }
    let results = set.join_all().await;
    let elapsed = started.elapsed();
    println!("{N} concurrent refreshes with one token took {elapsed:?}");

    let statuses: Vec<u16> = results.iter().map(|(s, _)| *s).collect();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every refresh succeeds: {statuses:?} {:?}",
        results.iter().find(|r| r.0 != 200)
    );
    let successors: Vec<(String, String)> = results.iter().map(|(_, b)| tokens(b)).collect();
    let distinct: HashSet<&str> = successors.iter().map(|(_, rt)| rt.as_str()).collect();
    assert_eq!(distinct.len(), 1, "every caller gets the same successor");
    assert!(!distinct.contains(rt0.as_str()));
    for (at, rt) in &successors {
        assert_eq!(s.introspect(at).await["active"], true);
        assert!(
            s.grpc_introspect(rt, "").await.active,
            "successor is active"
        );
    }
    let children: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE parent_sha256 = $1 AND rotated_at IS NULL",
    )
    .bind(hash(&rt0))
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(children, 1, "exactly one live successor");

    // One tab goes on with its successor; afterwards the original is a replay.
    let (at_next, rt_next) = refresh_ok(&s, &client, &successors[7].1).await;
    assert_oauth_error(&s.refresh(&client, &rt0, &[]).await, 400, "invalid_grant");
    s.assert_inactive(&at0).await;
    s.assert_inactive(&at_next).await;
    for (at, rt) in successors.iter().step_by(7) {
        s.assert_inactive(at).await;
        s.assert_inactive(rt).await;
    }
    assert_oauth_error(
        &s.refresh(&client, &rt_next, &[]).await,
        400,
        "invalid_grant",
    );
    assert_oauth_error(
        &s.refresh(&client, &successors[0].1, &[]).await,
        400,
        "invalid_grant",
    );
    s.stop().await;
}

#[tokio::test]
async fn replay_after_the_grace_period_revokes_the_family() {
    let s = TestServer::start_with(Options {
        env: vec![("MCPAUTH__TOKENS__REFRESH_GRACE_SECS", "1".into())],
        ..Default::default()
    })
    .await;
    let (client, body) = s.login(None).await;
    let (_, rt0) = tokens(&body);
    let (at1, rt1) = refresh_ok(&s, &client, &rt0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // No successor was used, but the grace period is over.
    assert_oauth_error(&s.refresh(&client, &rt0, &[]).await, 400, "invalid_grant");
    s.assert_inactive(&at1).await;
    s.assert_inactive(&rt1).await;
    assert_oauth_error(&s.refresh(&client, &rt1, &[]).await, 400, "invalid_grant");
    assert_eq!(s.audit_events("refresh.reuse_detected", 1).await.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn refresh_can_narrow_the_scope_but_not_widen_it() {
    let s = TestServer::start().await;
    let (client, body) = s.login(Some(READ_WRITE)).await;
    let (_, rt0) = tokens(&body);

    let (status, body, _) = s
        .refresh(&client, &rt0, &[("scope", "mcp:tools.read")])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:tools.read");
    let (at1, rt1) = tokens(&body);
    assert_eq!(s.introspect(&at1).await["scope"], "mcp:tools.read");
    assert_eq!(
        s.grpc_introspect(&at1, "").await.scopes,
        vec!["mcp:tools.read".to_owned()]
    );

    // Beyond the grant: refused, and the refusal does not spend the token.
    for wider in ["mcp:tools.read mcp:admin", "mcp:admin", "api:read"] {
        assert_oauth_error(
            &s.refresh(&client, &rt1, &[("scope", wider)]).await,
            400,
            "invalid_scope",
        );
    }
    s.assert_active(&rt1).await;
    // RFC 6749 §6: a new refresh token has the scope of the one presented. Narrowing one access
    // token does not shrink the grant.
    assert_eq!(
        s.grpc_introspect(&rt1, "").await.scopes.join(" "),
        READ_WRITE
    );
    let (status, body, _) = s.refresh(&client, &rt1, &[("scope", READ_WRITE)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], READ_WRITE);
    let (at2, rt2) = tokens(&body);
    assert_eq!(s.introspect(&at2).await["scope"], READ_WRITE);
    let (status, body, _) = s.refresh(&client, &rt2, &[]).await;
    assert_eq!(
        (status, body["scope"].as_str()),
        (200, Some(READ_WRITE)),
        "{body}"
    );

    // A narrow grant cannot be widened at all.
    let (client, body) = s.login(Some("mcp:tools.read")).await;
    let (_, rt) = tokens(&body);
    assert_oauth_error(
        &s.refresh(&client, &rt, &[("scope", READ_WRITE)]).await,
        400,
        "invalid_scope",
    );
    s.stop().await;
}

#[tokio::test]
async fn refresh_honours_only_the_granted_resource() {
    let s = TestServer::start().await;
    let (client, body) = s.login(None).await;
    let (_, rt0) = tokens(&body);
    assert_oauth_error(
        &s.refresh(
            &client,
            &rt0,
            &[("resource", "https://api.example.com/mcp")],
        )
        .await,
        400,
        "invalid_target",
    );
    assert_oauth_error(
        &s.refresh(
            &client,
            &rt0,
            &[("resource", "https://unknown.example/mcp")],
        )
        .await,
        400,
        "invalid_target",
    );
    s.assert_active(&rt0).await;
    // The SDKs send `resource` on every refresh: the granted one is fine.
    let (status, body, _) = s.refresh(&client, &rt0, &[("resource", RESOURCE)]).await;
    assert_eq!(status, 200, "{body}");
    let (at1, rt1) = tokens(&body);
    assert_eq!(s.introspect(&at1).await["aud"], RESOURCE);
    assert!(s.grpc_introspect(&rt1, RESOURCE).await.active);
    s.stop().await;
}

#[tokio::test]
async fn refresh_token_is_bound_to_its_client() {
    let s = TestServer::start().await;
    let (client, body) = s.login(None).await;
    let (at0, rt0) = tokens(&body);
    let thief = s.public_client().await;
    assert_oauth_error(&s.refresh(&thief, &rt0, &[]).await, 400, "invalid_grant");
    let (cid, secret) = s
        .confidential_client(&["authorization_code", "refresh_token"])
        .await;
    let r = s
        .token_basic(
            &cid,
            &secret,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt0)],
        )
        .await;
    assert_oauth_error(&r, 400, "invalid_grant");
    // The owner is not punished for someone else's attempt.
    s.assert_active(&at0).await;
    let (at1, _) = refresh_ok(&s, &client, &rt0).await;
    s.assert_active(&at1).await;
    let revoked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM grants WHERE revoked_at IS NOT NULL")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(revoked, 0);
    s.stop().await;
}

#[tokio::test]
async fn forged_expired_and_missing_refresh_tokens_are_refused() {
    let s = TestServer::start_with(Options {
        env: vec![("MCPAUTH__TOKENS__REFRESH_TTL_SECS", "1".into())],
        ..Default::default()
    })
    .await;
    let (client, body) = s.login(None).await;
    let (at0, rt0) = tokens(&body);
    let unissued =
        test_key_ring().mint_opaque(auth_service::domain::token::OpaqueKind::RefreshToken);
    for bad in [
        mangle(&rt0),
        unissued,
        at0.clone(),
        "mcprt_k1_x".into(),
        String::new(),
    ] {
        assert_oauth_error(&s.refresh(&client, &bad, &[]).await, 400, "invalid_grant");
    }
    assert_oauth_error(
        &s.token(&[("grant_type", "refresh_token"), ("client_id", &client)])
            .await,
        400,
        "invalid_request",
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.assert_inactive(&rt0).await;
    assert_oauth_error(&s.refresh(&client, &rt0, &[]).await, 400, "invalid_grant");
    s.stop().await;
}

#[tokio::test]
async fn refresh_tokens_are_stored_only_as_digests() {
    let s = TestServer::start().await;
    let (client, body) = s.login(None).await;
    let (at0, rt0) = tokens(&body);
    let (at1, rt1) = refresh_ok(&s, &client, &rt0).await;
    let (at2, rt2) = refresh_ok(&s, &client, &rt1).await;
    // Let the batched audit trail catch up before scanning it.
    s.audit_events("token.refreshed", 2).await;

    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT t::text FROM refresh_tokens t UNION ALL SELECT g::text FROM grants g \
         UNION ALL SELECT a::text FROM audit_events a",
    )
    .fetch_all(&s.pool)
    .await
    .unwrap();
    assert!(rows.len() >= 4);
    for token in [&rt0, &rt1, &rt2, &at0, &at1, &at2] {
        // Neither the token's body (base64url) nor its raw bytes as a bytea column prints them.
        let body = token.splitn(3, '_').nth(2).unwrap();
        let raw = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, body)
            .unwrap();
        let raw_hex = auth_service::domain::token::hex(&raw);
        assert!(body.len() > 40 && raw_hex.len() > 60);
        for row in &rows {
            assert!(!row.contains(body), "a token's plaintext is stored: {row}");
            assert!(
                !row.contains(&raw_hex),
                "a token's raw bytes are stored: {row}"
            );
        }
    }
    for rt in [&rt0, &rt1, &rt2] {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE token_sha256 = $1")
                .bind(hash(rt))
                .fetch_one(&s.pool)
                .await
                .unwrap();
        assert_eq!(n, 1, "the SHA-256 digest is what is stored");
    }
    s.stop().await;
}

/// `POST /token` refresh from a spawned task (no shared borrow of the server).
async fn refresh_raw(
    http: reqwest::Client,
    url: String,
    client: String,
    rt: String,
) -> (u16, Value) {
    let r = http
        .post(url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
            ("client_id", client.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.unwrap_or(Value::Null))
}

/// Refresh tokens of a grant that can still be redeemed as first use (unspent).
async fn live_refresh_tokens(s: &TestServer, grant_id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE grant_id = $1::uuid AND rotated_at IS NULL",
    )
    .bind(grant_id)
    .fetch_one(&s.pool)
    .await
    .unwrap()
}

/// The attack on the grace period: a thief holding a copy of the refresh token races the
/// legitimate client with it. Within the grace window the two must end up with the same
/// successor (or the thief is refused) — never with a second live branch of the family that
/// outlives the legitimate client's rotation. Once the legitimate client has used the
/// successor, the thief's replay revokes the family.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thief_racing_within_the_grace_period_gets_no_branch_of_its_own() {
    let s = TestServer::start().await;
    let (client, body) = s.login(None).await;
    let (at0, rt0) = tokens(&body);
    let grant_id = s.grpc_introspect(&at0, "").await.grant_id;

    let legit = tokio::spawn(refresh_raw(
        s.http.clone(),
        s.url("/token"),
        client.clone(),
        rt0.clone(),
    ));
    let thief = tokio::spawn(refresh_raw(
        s.http.clone(),
        s.url("/token"),
        client.clone(),
        rt0.clone(),
    ));
    let (legit, thief) = (legit.await.unwrap(), thief.await.unwrap());
    assert_eq!(legit.0, 200, "{}", legit.1);
    let (legit_at, legit_rt) = tokens(&legit.1);
    match thief.0 {
        200 => assert_eq!(
            thief.1["refresh_token"].as_str(),
            Some(legit_rt.as_str()),
            "within the grace period a reused token gets the same successor, not a branch"
        ),
        400 => assert_eq!(thief.1["error"], "invalid_grant", "{}", thief.1),
        other => panic!("unexpected status {other}: {}", thief.1),
    }
    assert_eq!(
        live_refresh_tokens(&s, &grant_id).await,
        1,
        "the family keeps a single live refresh token"
    );

    // Even a late thief within the grace period gets nothing new.
    let (status, late) =
        refresh_raw(s.http.clone(), s.url("/token"), client.clone(), rt0.clone()).await;
    assert_eq!(status, 200, "{late}");
    assert_eq!(late["refresh_token"].as_str(), Some(legit_rt.as_str()));
    assert_eq!(live_refresh_tokens(&s, &grant_id).await, 1);

    // The legitimate client moves on; the thief's next use of the old token is a replay.
    let (legit_at2, legit_rt2) = refresh_ok(&s, &client, &legit_rt).await;
    assert_oauth_error(&s.refresh(&client, &rt0, &[]).await, 400, "invalid_grant");
    assert_eq!(
        revoke_reason(&s, &grant_id).await.as_deref(),
        Some("refresh_token_reuse")
    );
    for t in [&legit_at, &legit_at2, &legit_rt2] {
        s.assert_inactive(t).await;
    }
    if thief.0 == 200 {
        let (thief_at, _) = tokens(&thief.1);
        s.assert_inactive(&thief_at).await;
    }
    assert_eq!(s.audit_events("refresh.reuse_detected", 1).await.len(), 1);
    s.stop().await;
}

/// Within the grace period the stored successor is handed out again — but only if it is the one
/// derived now. After a change of the current key (a restart between the two requests) the
/// repeat is refused instead of branching; the family and its live successor are kept.
#[tokio::test]
async fn a_repeat_after_the_current_key_changed_is_refused_not_branched() {
    let s1 = TestServer::start_with(Options {
        env: vec![("MCPAUTH__TOKENS__REFRESH_GRACE_SECS", "300".into())],
        ..Default::default()
    })
    .await;
    let (client, body) = s1.login(None).await;
    let (at0, rt0) = tokens(&body);
    let grant_id = s1.grpc_introspect(&at0, "").await.grant_id;
    let (_, rt1) = refresh_ok(&s1, &client, &rt0).await;
    let prefix = s1.prefix.clone();
    let db = s1.stop_keep_db().await;

    let k2 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [9u8; 32]);
    let s2 = TestServer::start_on(
        db,
        prefix,
        Options {
            toml: format!("\n[[tokens.keys]]\nid = \"k2\"\nsecret = \"{k2}\"\n"),
            env: vec![
                ("MCPAUTH__TOKENS__CURRENT_KEY", "k2".into()),
                ("MCPAUTH__TOKENS__REFRESH_GRACE_SECS", "300".into()),
            ],
        },
    )
    .await;
    assert_oauth_error(&s2.refresh(&client, &rt0, &[]).await, 400, "invalid_grant");
    assert_eq!(live_refresh_tokens(&s2, &grant_id).await, 1);
    assert_eq!(revoke_reason(&s2, &grant_id).await, None);
    let (_, rt2) = refresh_ok(&s2, &client, &rt1).await;
    assert!(rt2.starts_with("mcprt_k2_"), "{rt2}");
    s2.stop().await;
}
