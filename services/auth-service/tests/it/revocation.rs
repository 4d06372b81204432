//! Revocation (RFC 7009) and introspection (RFC 7662) over HTTP, and revocation across replicas:
//! Redis fan-out, and the periodic re-sync from Postgres when a message is lost.

use std::time::{Duration, Instant};

use auth_service::domain::token::{AccessClaims, OpaqueKind};
use serde_json::{Value, json};

use crate::harness::*;

fn tokens(body: &Value) -> (String, String) {
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn count(s: &TestServer, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&s.pool).await.unwrap()
}

/// An access token sealed with the test key, with the given claims.
fn sealed(claims: AccessClaims) -> String {
    test_key_ring().seal_access(&claims)
}

fn claims(exp_offset: i64) -> AccessClaims {
    let now = chrono::Utc::now().timestamp();
    AccessClaims {
        jti: "0123456789abcdef0123456789abcdef".into(),
        sub: "someone".into(),
        client_id: STATIC_CLIENT.into(),
        grant_id: None,
        aud: RESOURCE.into(),
        scope: "mcp:tools.read".into(),
        iat: now - 7200,
        exp: now + exp_offset,
        act: None,
    }
}

#[tokio::test]
async fn revoking_an_access_token() {
    let s = TestServer::start().await;
    let (client, body) = s.login(None).await;
    let (at, rt) = tokens(&body);
    let jti = s.assert_active(&at).await["jti"]
        .as_str()
        .unwrap()
        .to_owned();

    let r = s.revoke_as(&client, &at).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.text().await.unwrap(), "");
    s.assert_inactive(&at).await;
    // Revoking it again is just as fine.
    assert_eq!(s.revoke_as(&client, &at).await.status().as_u16(), 200);

    // Only that token: the grant and its refresh token stand.
    s.assert_active(&rt).await;
    let (status, body, _) = s.refresh(&client, &rt, &[]).await;
    assert_eq!(status, 200, "{body}");
    s.assert_active(body["access_token"].as_str().unwrap())
        .await;
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT kind, id FROM revocations")
        .fetch_all(&s.pool)
        .await
        .unwrap();
    assert_eq!(rows, vec![("token".to_owned(), jti.clone())]);
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM grants WHERE revoked_at IS NOT NULL"
        )
        .await,
        0
    );
    let revoked = s.audit_events("token.revoked", 1).await;
    assert_eq!(revoked[0].detail["jti"], jti.as_str());
    assert_eq!(revoked[0].detail["token_type"], "access_token");
    s.stop().await;
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_grant() {
    let s = TestServer::start().await;
    let (client, body) = s.login(None).await;
    let (at0, rt0) = tokens(&body);
    let (status, body, _) = s.refresh(&client, &rt0, &[]).await;
    assert_eq!(status, 200, "{body}");
    let (at1, rt1) = tokens(&body);
    let grant_id = s.grpc_introspect(&at1, "").await.grant_id;

    // With the (advisory) RFC 7009 hint, authenticated as a public client.
    let r = s
        .http
        .post(s.url("/revoke"))
        .form(&[
            ("token", rt1.as_str()),
            ("token_type_hint", "refresh_token"),
            ("client_id", client.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for t in [&at0, &at1, &rt1] {
        s.assert_inactive(t).await;
    }
    assert_oauth_error(&s.refresh(&client, &rt1, &[]).await, 400, "invalid_grant");
    let (reason,): (Option<String>,) =
        sqlx::query_as("SELECT revoke_reason FROM grants WHERE grant_id = $1::uuid")
            .bind(&grant_id)
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(reason.as_deref(), Some("revoked_by_client"));
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT kind, id FROM revocations")
        .fetch_all(&s.pool)
        .await
        .unwrap();
    assert_eq!(rows, vec![("grant".to_owned(), grant_id.clone())]);

    // A spent refresh token still names its grant: revoking it ends the family too.
    let (client, body) = s.login(None).await;
    let (_, rt0) = tokens(&body);
    let (_, body, _) = s.refresh(&client, &rt0, &[]).await;
    let (at1, rt1) = tokens(&body);
    assert_eq!(s.revoke_as(&client, &rt0).await.status().as_u16(), 200);
    s.assert_inactive(&at1).await;
    assert_oauth_error(&s.refresh(&client, &rt1, &[]).await, 400, "invalid_grant");
    assert_eq!(s.audit_events("token.revoked", 2).await.len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn revoking_another_clients_token_changes_nothing() {
    let s = TestServer::start().await;
    let (owner, body) = s.login(None).await;
    let (at, rt) = tokens(&body);
    let other = s.public_client().await;

    for token in [&at, &rt] {
        let r = s.revoke_as(&other, token).await;
        assert_eq!(
            r.status().as_u16(),
            200,
            "RFC 7009 §2.2: no hint that the token exists"
        );
        let r = s
            .http
            .post(s.url("/revoke"))
            .basic_auth(STATIC_CLIENT, Some(STATIC_SECRET))
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    s.assert_active(&at).await;
    s.assert_active(&rt).await;
    let (status, body, _) = s.refresh(&owner, &rt, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(&s, "SELECT count(*) FROM revocations").await, 0);
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM grants WHERE revoked_at IS NOT NULL"
        )
        .await,
        0
    );
    s.stop().await;
}

#[tokio::test]
async fn revoking_unknown_tokens_and_bad_revocation_requests() {
    let s = TestServer::start().await;
    let client = s.public_client().await;
    let unissued_refresh = test_key_ring().mint_opaque(OpaqueKind::RefreshToken);
    let expired = sealed(claims(-10));
    for t in [
        "garbage",
        "",
        "mcpat_k1_AAAA",
        "mcprt_k9_AAAA",
        unissued_refresh.as_str(),
        expired.as_str(),
    ] {
        assert_eq!(s.revoke_as(&client, t).await.status().as_u16(), 200, "{t}");
    }
    assert_eq!(count(&s, "SELECT count(*) FROM revocations").await, 0);

    let r = s
        .http
        .post(s.url("/revoke"))
        .form(&[("client_id", client.as_str())])
        .send()
        .await
        .unwrap();
    let (st, h) = (r.status().as_u16(), r.headers().clone());
    assert_oauth_error(&(st, r.json().await.unwrap(), h), 400, "invalid_request");
    let r = s
        .http
        .post(s.url("/revoke"))
        .basic_auth(STATIC_CLIENT, Some("wrong"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    let (st, h) = (r.status().as_u16(), r.headers().clone());
    assert!(h["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    assert_oauth_error(&(st, r.json().await.unwrap(), h), 401, "invalid_client");
    let r = s
        .http
        .post(s.url("/revoke"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    let (st, h) = (r.status().as_u16(), r.headers().clone());
    assert_oauth_error(&(st, r.json().await.unwrap(), h), 401, "invalid_client");
    s.stop().await;
}

#[tokio::test]
async fn introspection_requires_a_confidential_client() {
    let s = TestServer::start().await;
    let (client, body) = s.login(None).await;
    let (at, _) = tokens(&body);
    let post = |form: Vec<(&'static str, String)>, basic: Option<(&'static str, &'static str)>| {
        let s = &s;
        async move {
            let mut req = s.http.post(s.url("/introspect")).form(&form);
            if let Some((id, secret)) = basic {
                req = req.basic_auth(id, Some(secret));
            }
            let r = req.send().await.unwrap();
            let (st, h) = (r.status().as_u16(), r.headers().clone());
            (st, r.json::<Value>().await.unwrap_or(Value::Null), h)
        }
    };
    // The token's own public client may not introspect (it would learn nothing it may know).
    let r = post(
        vec![("token", at.clone()), ("client_id", client.clone())],
        None,
    )
    .await;
    assert_oauth_error(&r, 401, "invalid_client");
    let r = post(vec![("token", at.clone())], None).await;
    assert_oauth_error(&r, 401, "invalid_client");
    let r = post(vec![("token", at.clone())], Some((STATIC_CLIENT, "wrong"))).await;
    assert_oauth_error(&r, 401, "invalid_client");
    assert!(
        r.2["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let r = post(vec![], Some((STATIC_CLIENT, STATIC_SECRET))).await;
    assert_oauth_error(&r, 400, "invalid_request");

    // client_secret_post works; a dynamically registered confidential client authenticates
    // but may not see another client's token (RFC 7662 §4, introspection.rs).
    let r = post(
        vec![
            ("token", at.clone()),
            ("client_id", STATIC_CLIENT.into()),
            ("client_secret", STATIC_SECRET.into()),
        ],
        None,
    )
    .await;
    assert_eq!((r.0, &r.1["active"]), (200, &json!(true)), "{}", r.1);
    let (cid, secret) = s.confidential_client(&["client_credentials"]).await;
    let r = s
        .http
        .post(s.url("/introspect"))
        .basic_auth(&cid, Some(&secret))
        .form(&[("token", at.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"active": false}));
    s.stop().await;
}

#[tokio::test]
async fn introspection_describes_active_tokens() {
    let s = TestServer::start().await;
    let (client, body) = s.login(Some("mcp:tools.read mcp:tools.write")).await;
    let (at, rt) = tokens(&body);
    let (user, grant): (uuid::Uuid, uuid::Uuid) =
        sqlx::query_as("SELECT user_id, grant_id FROM grants")
            .fetch_one(&s.pool)
            .await
            .unwrap();

    let a = s.introspect(&at).await;
    assert_eq!(a["active"], true);
    assert_eq!(a["token_type"], "Bearer");
    assert_eq!(a["token_use"], "access_token");
    assert_eq!(a["scope"], "mcp:tools.read mcp:tools.write");
    assert_eq!(a["client_id"], client.as_str());
    assert_eq!(a["sub"], user.to_string());
    assert_eq!(a["aud"], RESOURCE);
    assert_eq!(a["iss"], s.base.as_str());
    assert_eq!(
        a["exp"].as_i64().unwrap() - a["iat"].as_i64().unwrap(),
        3600
    );
    assert_eq!(a["jti"].as_str().unwrap().len(), 32);

    // A refresh token is described to its own client only (introspection.rs), never to a
    // resource server or an introspection client.
    assert_eq!(s.introspect(&rt).await, json!({"active": false}));

    // The gRPC twin says the same.
    let g = s.grpc_introspect(&at, RESOURCE).await;
    assert!(g.active);
    assert_eq!(g.subject, user.to_string());
    assert_eq!(g.client_id, client);
    assert_eq!(
        g.scopes,
        vec!["mcp:tools.read".to_owned(), "mcp:tools.write".to_owned()]
    );
    assert_eq!(g.audience, vec![RESOURCE.to_owned()]);
    assert_eq!(g.issuer, s.base);
    assert_eq!(g.token_kind, mcpauth_proto::v1::TokenKind::Access as i32);
    assert_eq!(g.grant_id, grant.to_string());
    assert_eq!(g.token_id, a["jti"].as_str().unwrap());
    assert_eq!(
        (g.expires_at, g.issued_at),
        (a["exp"].as_i64().unwrap(), a["iat"].as_i64().unwrap())
    );
    let g = s.grpc_introspect(&rt, RESOURCE).await;
    assert_eq!(g.token_kind, mcpauth_proto::v1::TokenKind::Refresh as i32);
    assert_eq!(g.grant_id, grant.to_string());
    s.stop().await;
}

#[tokio::test]
async fn introspection_answers_only_active_false_for_unusable_tokens() {
    let s = TestServer::start().await;
    let (client, body) = s.login(None).await;
    let (at, rt) = tokens(&body);
    let (_, body, _) = s.refresh(&client, &rt, &[]).await;
    let (_, rt1) = tokens(&body);

    let other_key = auth_service::domain::token::KeyRing::new(
        &[(
            "k9".to_owned(),
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [1u8; 32]),
        )],
        "k9",
    )
    .unwrap();
    let mut k1_as_k9 = test_key_ring().seal_access(&claims(3600));
    k1_as_k9 = k1_as_k9.replacen("mcpat_k1_", "mcpat_k9_", 1);
    let cases = [
        ("garbage", "garbage".to_owned()),
        ("empty", String::new()),
        ("mangled access token", mangle(&at)),
        ("mangled refresh token", mangle(&rt1)),
        ("expired access token", sealed(claims(-1))),
        (
            "sealed under an unknown key",
            other_key.seal_access(&claims(3600)),
        ),
        ("key id swapped", k1_as_k9),
        (
            "never issued refresh token",
            test_key_ring().mint_opaque(OpaqueKind::RefreshToken),
        ),
        ("spent refresh token", rt.clone()),
        (
            "authorization code",
            test_key_ring().mint_opaque(OpaqueKind::AuthorizationCode),
        ),
    ];
    for (what, token) in &cases {
        let body = s.introspect(token).await;
        assert_eq!(body, json!({"active": false}), "{what}");
        assert_eq!(body.as_object().unwrap().len(), 1, "{what}");
        let g = s.grpc_introspect(token, "").await;
        assert_eq!(
            g,
            mcpauth_proto::v1::IntrospectResponse::default(),
            "{what}"
        );
    }
    // A minted token with valid claims is active: the cases above fail for the reason named.
    assert_eq!(s.introspect(&sealed(claims(3600))).await["active"], true);

    // Audience: a token for one resource is inactive for another.
    for other in ["https://api.example.com/mcp", OTHER_RESOURCE] {
        assert_eq!(
            s.introspect_with(&at, &[("resource", other)]).await,
            json!({"active": false})
        );
        assert_eq!(
            s.introspect_with(&rt1, &[("resource", other)]).await,
            json!({"active": false})
        );
        assert_eq!(
            s.grpc_introspect(&at, other).await,
            mcpauth_proto::v1::IntrospectResponse::default()
        );
    }
    assert_eq!(
        s.introspect_with(&at, &[("resource", RESOURCE)]).await["active"],
        true
    );
    assert!(s.grpc_introspect(&at, RESOURCE).await.active);
    s.stop().await;
}

#[tokio::test]
async fn issued_tokens_expire() {
    // Two seconds, not one: expiry is in whole seconds, so a one-second token may already be
    // expired when introspected a few milliseconds after it was issued.
    let s = TestServer::start_with(Options {
        env: vec![
            ("MCPAUTH__TOKENS__ACCESS_TTL_SECS", "2".into()),
            ("MCPAUTH__TOKENS__REFRESH_TTL_SECS", "2".into()),
        ],
        ..Default::default()
    })
    .await;
    let (client, body) = s.login(None).await;
    assert_eq!(body["expires_in"], 2);
    let (at, rt) = tokens(&body);
    s.assert_active(&at).await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    s.assert_inactive(&at).await;
    s.assert_inactive(&rt).await;
    assert_oauth_error(&s.refresh(&client, &rt, &[]).await, 400, "invalid_grant");
    s.stop().await;
}

/// Polls `token` on `s` every 50 ms until introspection says inactive; returns how long it took.
async fn time_until_inactive(s: &TestServer, token: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if s.introspect(token).await["active"] == false {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "still active after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn revocation_on_one_replica_is_enforced_by_another_within_a_second() {
    let a = TestServer::start().await;
    let b = TestServer::start_on(a.shared_db(), a.prefix.clone(), Options::default()).await;
    let (client, body) = a.login(None).await;
    let (at, rt) = tokens(&body);
    b.assert_active(&at).await;

    assert_eq!(a.revoke_as(&client, &at).await.status().as_u16(), 200);
    let took = time_until_inactive(&b, &at, Duration::from_secs(3)).await;
    println!("access-token revocation reached replica B after {took:?}");
    assert!(took < Duration::from_secs(1), "replica B took {took:?}");
    b.assert_inactive(&at).await;

    // A whole grant, revoked on B, is enforced on A: access tokens and refresh.
    let (status, body, _) = b.refresh(&client, &rt, &[]).await;
    assert_eq!(status, 200, "{body}");
    let (at1, rt1) = tokens(&body);
    a.assert_active(&at1).await;
    assert_eq!(b.revoke_as(&client, &rt1).await.status().as_u16(), 200);
    let took = time_until_inactive(&a, &at1, Duration::from_secs(3)).await;
    println!("grant revocation reached replica A after {took:?}");
    assert!(took < Duration::from_secs(1), "replica A took {took:?}");
    assert_oauth_error(&a.refresh(&client, &rt1, &[]).await, 400, "invalid_grant");

    let _ = b.stop_keep_db().await;
    a.stop().await;
}

#[tokio::test]
async fn periodic_resync_enforces_revocations_that_were_never_fanned_out() {
    let a = TestServer::start().await;
    let b = TestServer::start_on(a.shared_db(), a.prefix.clone(), Options::default()).await;
    let (_, body) = a.login(None).await;
    let (at, _) = tokens(&body);
    let (_, body) = a.login(None).await;
    let (at_other_grant, _) = tokens(&body);
    let jti = a.assert_active(&at).await["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let grant = a.grpc_introspect(&at_other_grant, "").await.grant_id;

    // A revocation another replica wrote while pub/sub was down: only Postgres knows.
    sqlx::query(
        "INSERT INTO revocations (kind, id, expires_at) VALUES ('token', $1, now() + interval '1 hour'), \
         ('grant', $2, now() + interval '1 hour')",
    )
    .bind(&jti)
    .bind(&grant)
    .execute(&a.pool)
    .await
    .unwrap();
    let started = Instant::now();
    for (s, name) in [(&b, "B"), (&a, "A")] {
        for t in [&at, &at_other_grant] {
            let limit = Duration::from_millis(1500).saturating_sub(started.elapsed());
            time_until_inactive(s, t, limit).await;
        }
        println!("replica {name} re-synced after {:?}", started.elapsed());
    }
    assert!(started.elapsed() < Duration::from_millis(1500));
    let _ = b.stop_keep_db().await;
    a.stop().await;
}
