//! `POST /token`: the response shape of RFC 6749 §5.1/§5.2, the `authorization_code` grant with
//! PKCE (single use, binding to client, redirect URI, verifier and resource, expiry), client
//! authentication, and the `client_credentials` grant.

use serde_json::{Value, json};

use crate::harness::*;

/// The form of a correct code redemption by a public client.
fn redeem<'a>(client: &'a str, code: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", VERIFIER),
        ("client_id", client),
        ("redirect_uri", REDIRECT),
        ("resource", RESOURCE),
    ]
}

/// `form` with `key` replaced by `value`, or removed when `value` is `None`.
fn with<'a>(
    form: &[(&'a str, &'a str)],
    key: &str,
    value: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut out: Vec<_> = form.iter().copied().filter(|(k, _)| *k != key).collect();
    if let Some(v) = value {
        let k = form
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(k, _)| *k)
            .expect("key in form");
        out.push((k, v));
    }
    out
}

#[tokio::test]
async fn code_redemption_answers_a_bearer_token_response() {
    let s = TestServer::start().await;
    let client = s.public_client().await;
    let code = s
        .code_for(&client, Some("mcp:tools.read mcp:tools.write"))
        .await;
    let (status, body, headers) = s.token(&redeem(&client, &code)).await;

    assert_eq!(status, 200, "{body}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        body["expires_in"],
        json!(3600),
        "expires_in is a number: the configured access TTL"
    );
    assert_eq!(body["scope"], "mcp:tools.read mcp:tools.write");
    let access = body["access_token"].as_str().unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    assert!(access.starts_with("mcpat_k1_"), "{access}");
    assert!(refresh.starts_with("mcprt_k1_"), "{refresh}");

    // One grant, bound to the client and resource, holding the refresh token's digest only.
    let (grant_id, user_id, grant_client, scope, resource): (
        uuid::Uuid,
        uuid::Uuid,
        String,
        String,
        String,
    ) = sqlx::query_as(
        "SELECT grant_id, user_id, client_id, scope, resource FROM grants WHERE revoked_at IS NULL",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(
        (grant_client.as_str(), scope.as_str(), resource.as_str()),
        (client.as_str(), "mcp:tools.read mcp:tools.write", RESOURCE)
    );
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE token_sha256 = $1 AND grant_id = $2",
    )
    .bind(auth_service::domain::token::hash(refresh))
    .bind(grant_id)
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(stored, 1);

    // The access token is what the response said it is.
    let intro = s.assert_active(access).await;
    assert_eq!(intro["aud"], RESOURCE);
    assert_eq!(intro["client_id"], client.as_str());
    assert_eq!(intro["sub"], user_id.to_string());
    assert_eq!(intro["scope"], "mcp:tools.read mcp:tools.write");
    assert_eq!(intro["iss"], s.base.as_str());
    let redeemed = s.audit_events("code.redeemed", 1).await;
    assert_eq!(redeemed.len(), 1);
    assert_eq!(redeemed[0].grant_id, Some(grant_id));
    s.stop().await;
}

#[tokio::test]
async fn replayed_code_is_refused_and_revokes_what_it_issued() {
    let s = TestServer::start().await;
    let client = s.public_client().await;
    let code = s.code_for(&client, None).await;
    let first = s.token(&redeem(&client, &code)).await;
    assert_eq!(first.0, 200, "{}", first.1);
    let access = first.1["access_token"].as_str().unwrap();
    let refresh = first.1["refresh_token"].as_str().unwrap();
    s.assert_active(access).await;

    let replay = s.token(&redeem(&client, &code)).await;
    assert_oauth_error(&replay, 400, "invalid_grant");

    // Everything the first redemption issued is dead (OAuth 2.1 §4.1.3).
    s.assert_inactive(access).await;
    s.assert_inactive(refresh).await;
    assert_oauth_error(
        &s.refresh(&client, refresh, &[]).await,
        400,
        "invalid_grant",
    );
    let (reason,): (Option<String>,) = sqlx::query_as("SELECT revoke_reason FROM grants")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(reason.as_deref(), Some("authorization_code_replay"));
    let replayed = s.audit_events("code.replayed", 1).await;
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].client_id.as_deref(), Some(client.as_str()));
    s.stop().await;
}

#[tokio::test]
async fn concurrent_redemptions_of_one_code_leave_nothing_usable() {
    // A replay that races the first redemption (before it has recorded its grant) must still
    // revoke whatever the first redemption issued.
    let s = TestServer::start().await;
    for _ in 0..5 {
        let client = s.public_client().await;
        let code = s.code_for(&client, None).await;
        let form = redeem(&client, &code);
        let attempts = (0..8).map(|_| s.token(&form));
        let results = futures_util::future::join_all(attempts).await;
        let ok: Vec<_> = results.iter().filter(|r| r.0 == 200).collect();
        assert!(ok.len() <= 1, "a code was redeemed {} times", ok.len());
        for r in &results {
            assert!(
                r.0 == 200 || r.1["error"] == "invalid_grant",
                "{} {}",
                r.0,
                r.1
            );
        }
        for r in ok {
            s.assert_inactive(r.1["access_token"].as_str().unwrap())
                .await;
            s.assert_inactive(r.1["refresh_token"].as_str().unwrap())
                .await;
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn pkce_verifier_is_required_and_must_match() {
    let s = TestServer::start().await;
    let client = s.public_client().await;

    let code = s.code_for(&client, None).await;
    let form = redeem(&client, &code);
    assert_oauth_error(
        &s.token(&with(&form, "code_verifier", None)).await,
        400,
        "invalid_request",
    );
    let wrong = "a-different-verifier-of-sufficient-length-0123456789";
    assert_oauth_error(
        &s.token(&with(&form, "code_verifier", Some(wrong))).await,
        400,
        "invalid_grant",
    );
    // A failed verification uses the code up: the verifier cannot be guessed at leisure.
    assert_oauth_error(&s.token(&form).await, 400, "invalid_grant");
    let grants: i64 = sqlx::query_scalar("SELECT count(*) FROM grants")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(grants, 0, "no grant is created by a failed redemption");
    s.stop().await;
}

#[tokio::test]
async fn redirect_uri_must_repeat_the_authorization_requests() {
    let s = TestServer::start().await;
    // A client with two registered redirect URIs: the other one is legitimate, but not the one used.
    let other = "http://127.0.0.1:3000/other-callback";
    let (st, reg) = s
        .register(json!({
            "client_name": "two redirect URIs",
            "redirect_uris": [REDIRECT, other],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        }))
        .await;
    assert_eq!(st, 201, "{reg}");
    let client = reg["client_id"].as_str().unwrap().to_owned();

    let code = s.code_for(&client, None).await;
    let form = redeem(&client, &code);
    assert_oauth_error(
        &s.token(&with(&form, "redirect_uri", Some(other))).await,
        400,
        "invalid_grant",
    );

    let code = s.code_for(&client, None).await;
    let form = redeem(&client, &code);
    assert_oauth_error(
        &s.token(&with(&form, "redirect_uri", None)).await,
        400,
        "invalid_request",
    );

    // Authorization request without redirect_uri (single registered URI): none needed at /token.
    let single = s.public_client().await;
    let r = s
        .authorize(&[
            ("response_type", "code"),
            ("client_id", &single),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(r.status().as_u16(), 302);
    let code = redirect_query(&r)["code"].clone();
    let ok = s
        .token(&with(&redeem(&single, &code), "redirect_uri", None))
        .await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    s.stop().await;
}

#[tokio::test]
async fn code_is_bound_to_its_client() {
    let s = TestServer::start().await;
    let victim = s.public_client().await;
    let attacker = s.public_client().await;
    let code = s.code_for(&victim, None).await;
    assert_oauth_error(
        &s.token(&redeem(&attacker, &code)).await,
        400,
        "invalid_grant",
    );
    // A confidential client authenticating properly gets no further.
    let (cid, secret) = s.confidential_client(&["authorization_code"]).await;
    let code = s.code_for(&victim, None).await;
    let mut form = redeem(&victim, &code);
    form.retain(|(k, _)| *k != "client_id");
    assert_oauth_error(
        &s.token_basic(&cid, &secret, &form).await,
        400,
        "invalid_grant",
    );
    let grants: i64 = sqlx::query_scalar("SELECT count(*) FROM grants")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(grants, 0);
    s.stop().await;
}

#[tokio::test]
async fn resource_must_be_the_authorized_one() {
    let s = TestServer::start().await;
    let client = s.public_client().await;

    // Another configured resource than the authorized one.
    let code = s.code_for(&client, None).await;
    let form = redeem(&client, &code);
    assert_oauth_error(
        &s.token(&with(
            &form,
            "resource",
            Some("https://api.example.com/mcp"),
        ))
        .await,
        400,
        "invalid_target",
    );
    // A resource this server does not know.
    let code = s.code_for(&client, None).await;
    let form = redeem(&client, &code);
    assert_oauth_error(
        &s.token(&with(
            &form,
            "resource",
            Some("https://unknown.example/mcp"),
        ))
        .await,
        400,
        "invalid_target",
    );

    // The same resource in another spelling (RFC 8707 canonical form) is the same resource.
    let code = s.code_for(&client, None).await;
    let form = redeem(&client, &code);
    let ok = s
        .token(&with(&form, "resource", Some("HTTP://127.0.0.1:8081/mcp")))
        .await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    assert_eq!(
        s.introspect(ok.1["access_token"].as_str().unwrap()).await["aud"],
        RESOURCE
    );
    // Without `resource` at /token, the token is for the authorized one.
    let code = s.code_for(&client, None).await;
    let form = redeem(&client, &code);
    let ok = s.token(&with(&form, "resource", None)).await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    assert_eq!(
        s.introspect(ok.1["access_token"].as_str().unwrap()).await["aud"],
        RESOURCE
    );
    s.stop().await;
}

#[tokio::test]
async fn forged_and_mangled_codes_are_refused() {
    let s = TestServer::start().await;
    let client = s.public_client().await;
    let code = s.code_for(&client, None).await;
    let form = redeem(&client, &code);
    let mangled = mangle(&code);
    let unissued =
        test_key_ring().mint_opaque(auth_service::domain::token::OpaqueKind::AuthorizationCode);
    let refresh_as_code =
        test_key_ring().mint_opaque(auth_service::domain::token::OpaqueKind::RefreshToken);
    for bad in [
        mangled.as_str(),
        unissued.as_str(),
        refresh_as_code.as_str(),
        "garbage",
        "",
    ] {
        assert_oauth_error(
            &s.token(&with(&form, "code", Some(bad))).await,
            400,
            "invalid_grant",
        );
    }
    assert_oauth_error(
        &s.token(&with(&form, "code", None)).await,
        400,
        "invalid_request",
    );
    // None of this touched the real code.
    let ok = s.token(&form).await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    s.stop().await;
}

#[tokio::test]
async fn expired_code_is_refused() {
    let s = TestServer::start_with(Options {
        env: vec![("MCPAUTH__TOKENS__CODE_TTL_SECS", "1".into())],
        ..Default::default()
    })
    .await;
    let client = s.public_client().await;
    let code = s.code_for(&client, None).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_oauth_error(
        &s.token(&redeem(&client, &code)).await,
        400,
        "invalid_grant",
    );
    let grants: i64 = sqlx::query_scalar("SELECT count(*) FROM grants")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(grants, 0);
    s.stop().await;
}

#[tokio::test]
async fn client_authentication() {
    let s = TestServer::start().await;
    let cc = [("grant_type", "client_credentials"), ("resource", RESOURCE)];

    // Wrong secret over Basic: 401 with a Basic challenge (RFC 6749 §5.2).
    let r = s.token_basic(STATIC_CLIENT, "not-the-secret", &cc).await;
    assert_oauth_error(&r, 401, "invalid_client");
    assert!(
        r.2["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic"),
        "{:?}",
        r.2
    );
    // Unknown client over Basic: the same answer.
    let r = s.token_basic("no-such-client", "x", &cc).await;
    assert_oauth_error(&r, 401, "invalid_client");
    assert!(
        r.2["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    // Wrong secret in the form: 401, no Basic challenge since Basic was not used.
    let mut post = cc.to_vec();
    post.extend([
        ("client_id", STATIC_CLIENT),
        ("client_secret", "not-the-secret"),
    ]);
    let r = s.token(&post).await;
    assert_oauth_error(&r, 401, "invalid_client");
    assert!(r.2.get("www-authenticate").is_none());
    // No credentials at all for a confidential client.
    let mut bare = cc.to_vec();
    bare.push(("client_id", STATIC_CLIENT));
    assert_oauth_error(&s.token(&bare).await, 401, "invalid_client");

    // client_secret_post works.
    let mut post = cc.to_vec();
    post.extend([
        ("client_id", STATIC_CLIENT),
        ("client_secret", STATIC_SECRET),
    ]);
    let ok = s.token(&post).await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    assert_eq!(
        s.introspect(ok.1["access_token"].as_str().unwrap()).await["client_id"],
        STATIC_CLIENT
    );

    // Both methods at once (RFC 6749 §2.3: exactly one).
    let mut both = cc.to_vec();
    both.push(("client_secret", STATIC_SECRET));
    assert_oauth_error(
        &s.token_basic(STATIC_CLIENT, STATIC_SECRET, &both).await,
        400,
        "invalid_request",
    );

    // A public client presenting a secret is not authenticated.
    let public = s.public_client().await;
    let code = s.code_for(&public, None).await;
    let mut form = redeem(&public, &code);
    form.push(("client_secret", "anything"));
    assert_oauth_error(&s.token(&form).await, 401, "invalid_client");
    let r = s
        .token_basic(&public, "anything", &redeem(&public, &code)[..5])
        .await;
    assert_oauth_error(&r, 401, "invalid_client");

    let failures = s.audit_events("client.auth_failed", 6).await;
    assert!(failures.len() >= 6, "{failures:?}");
    assert!(
        failures
            .iter()
            .any(|e| e.client_id.as_deref() == Some(STATIC_CLIENT))
    );
    s.stop().await;
}

#[tokio::test]
async fn malformed_token_requests() {
    let s = TestServer::start().await;
    let client = s.public_client().await;
    let unsupported = s
        .token(&[
            ("grant_type", "password"),
            ("client_id", &client),
            ("username", "u"),
            ("password", "p"),
        ])
        .await;
    assert_oauth_error(&unsupported, 400, "unsupported_grant_type");
    assert_oauth_error(
        &s.token(&[("client_id", client.as_str())]).await,
        400,
        "invalid_request",
    );
    // Parameters must not repeat (RFC 6749 §3.1).
    let dup = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("grant_type", "refresh_token"),
            ("client_id", &client),
        ])
        .await;
    assert_oauth_error(&dup, 400, "invalid_request");
    // Not a form.
    let r = s
        .http
        .post(s.url("/token"))
        .json(&json!({"grant_type": "client_credentials", "client_id": STATIC_CLIENT, "client_secret": STATIC_SECRET}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body: Value = r.json().await.unwrap();
    assert_oauth_error(&(status, body, headers), 400, "invalid_request");
    s.stop().await;
}

#[tokio::test]
async fn client_credentials_gives_an_audience_bound_token() {
    let s = TestServer::start().await;
    let (status, body, headers) = s
        .token_basic(
            STATIC_CLIENT,
            STATIC_SECRET,
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], json!(3600));
    assert_eq!(
        body["scope"], "mcp:tools.read",
        "the resource's default scope"
    );
    assert!(body.get("refresh_token").is_none(), "{body}");
    let access = body["access_token"].as_str().unwrap();
    let intro = s.assert_active(access).await;
    assert_eq!(intro["aud"], RESOURCE);
    assert_eq!(intro["sub"], STATIC_CLIENT);
    assert_eq!(intro["client_id"], STATIC_CLIENT);
    let g = s.grpc_introspect(access, RESOURCE).await;
    assert!(g.active);
    assert_eq!(
        g.grant_id, "",
        "client_credentials tokens belong to no grant"
    );
    assert_eq!(g.audience, vec![RESOURCE.to_owned()]);

    // Another configured resource gives that audience and its scopes.
    let (status, body, _) = s
        .token_basic(
            STATIC_CLIENT,
            STATIC_SECRET,
            &[
                ("grant_type", "client_credentials"),
                ("resource", "https://api.example.com/mcp"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "api:read");
    let intro = s.introspect(body["access_token"].as_str().unwrap()).await;
    assert_eq!(intro["aud"], "https://api.example.com/mcp");
    // An explicit scope of the resource.
    let (status, body, _) = s
        .token_basic(
            STATIC_CLIENT,
            STATIC_SECRET,
            &[
                ("grant_type", "client_credentials"),
                ("resource", RESOURCE),
                ("scope", "mcp:tools.write"),
            ],
        )
        .await;
    assert_eq!(
        (status, body["scope"].as_str()),
        (200, Some("mcp:tools.write")),
        "{body}"
    );

    // Issuing writes no grant: nothing on the hot path but the (batched) audit event.
    let grants: i64 = sqlx::query_scalar("SELECT count(*) FROM grants")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(grants, 0);
    let issued = s.audit_events("token.issued", 3).await;
    assert_eq!(issued.len(), 3, "{issued:?}");
    assert_eq!(issued[0].client_id.as_deref(), Some(STATIC_CLIENT));
    assert_eq!(issued[0].detail["grant_type"], "client_credentials");
    assert_eq!(issued[0].detail["resource"], RESOURCE);
    assert!(
        !issued[0].detail.to_string().contains(access),
        "no token in the audit trail"
    );
    s.stop().await;
}

#[tokio::test]
async fn client_credentials_refusals() {
    let s = TestServer::start().await;
    let basic = |form: Vec<(&'static str, &'static str)>| {
        let s = &s;
        async move { s.token_basic(STATIC_CLIENT, STATIC_SECRET, &form).await }
    };
    let unknown = basic(vec![
        ("grant_type", "client_credentials"),
        ("resource", "https://unknown.example/mcp"),
    ])
    .await;
    assert_oauth_error(&unknown, 400, "invalid_target");
    // Several resources are configured: the client must say which one.
    assert_oauth_error(
        &basic(vec![("grant_type", "client_credentials")]).await,
        400,
        "invalid_target",
    );
    let foreign_scope = basic(vec![
        ("grant_type", "client_credentials"),
        ("resource", RESOURCE),
        ("scope", "api:read"),
    ])
    .await;
    assert_oauth_error(&foreign_scope, 400, "invalid_scope");
    // The static client may not use grants it is not registered for.
    let code = basic(vec![
        ("grant_type", "authorization_code"),
        ("code", "x"),
        ("code_verifier", VERIFIER),
    ])
    .await;
    assert_oauth_error(&code, 400, "unauthorized_client");

    let public = s.public_client().await;
    let r = s
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &public),
            ("resource", RESOURCE),
        ])
        .await;
    assert_oauth_error(&r, 400, "unauthorized_client");

    // A dynamically registered confidential client with the grant does get a token.
    let (cid, secret) = s.confidential_client(&["client_credentials"]).await;
    let ok = s
        .token_basic(
            &cid,
            &secret,
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
        )
        .await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    assert_eq!(
        s.introspect(ok.1["access_token"].as_str().unwrap()).await["sub"],
        cid.as_str()
    );
    assert_eq!(
        s.audit_events("token.issued", 1).await.len(),
        1,
        "refusals issue nothing"
    );
    s.stop().await;
}
