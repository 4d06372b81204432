//! Login delegated to a REAL upstream OpenID provider (oidc-provider) and the connect flow, with
//! a real token-vault: consent before the upstream redirect, the upstream `state` rules (MCP
//! security best practices, all MUST), ID token checks, identity linking, credentials landing in
//! the vault, and `UpstreamConnect.StartConnect`.

use mcpauth_proto::v1::StartConnectRequest;
use mcpauth_proto::v1::upstream_connect_client::UpstreamConnectClient;

use crate::harness::*;
use crate::upstream_harness::*;

/// `/authorize` → the consent page → Allow. Returns the upstream authorization URL.
async fn consent_then_upstream(s: &Stack, b: &mut Browser, client: &str, state: &str) -> String {
    let http = &s.auth.http;
    let r = b.get(http, &authorize_url(&s.auth, client, state)).await;
    assert_eq!(r.status().as_u16(), 200, "the consent page comes first");
    let page = r.text().await.unwrap();
    let r = b
        .post(
            http,
            &s.auth.url("/consent"),
            &[
                ("request", &hidden(&page, "request")),
                ("csrf", &hidden(&page, "csrf")),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 302);
    location(&r).unwrap()
}

/// A whole login as `account`: returns the client's redirect query.
async fn login_as(
    s: &Stack,
    b: &mut Browser,
    client: &str,
    account: &str,
) -> std::collections::HashMap<String, String> {
    let up = consent_then_upstream(s, b, client, "client-state").await;
    let cb = b
        .upstream_login(&s.auth.http, &s.idp.issuer, &up, Some(account))
        .await;
    let r = b.get(&s.auth.http, &cb).await;
    assert_eq!(r.status().as_u16(), 302, "{:?}", r.text().await);
    redirect_query(&r)
}

async fn redeem(s: &Stack, client: &str, code: &str) -> serde_json::Value {
    let (st, body, _) = s
        .auth
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", VERIFIER),
            ("client_id", client),
            ("redirect_uri", REDIRECT),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(st, 200, "{body}");
    body
}

#[tokio::test]
async fn oidc_login_consent_first_links_the_user_and_stores_the_credential() {
    let s = Stack::start(StackOptions::default()).await;
    let http = &s.auth.http;
    let client = s.auth.public_client().await;
    let mut b = Browser::default();

    // 1. The consent page comes before anything goes upstream: no upstream state exists yet.
    let r = b.get(http, &authorize_url(&s.auth, &client, "st-1")).await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(location(&r).is_none());
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let page = r.text().await.unwrap();
    for shown in [
        "Test public client",
        REDIRECT,
        "Corp SSO",
        "openid",
        "profile",
        "email",
    ] {
        assert!(page.contains(shown), "consent page lacks {shown}: {page}");
    }
    assert_eq!(
        s.upstream_states().await,
        0,
        "no upstream state before consent"
    );
    // A forged consent (wrong CSRF token) does not go upstream either.
    let r = b
        .post(
            http,
            &s.auth.url("/consent"),
            &[
                ("request", &hidden(&page, "request")),
                ("csrf", "forged"),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(s.upstream_states().await, 0);

    // 2. Allow: a state is stored and the browser goes to the provider with PKCE and a nonce.
    let r = b
        .post(
            http,
            &s.auth.url("/consent"),
            &[
                ("request", &hidden(&page, "request")),
                ("csrf", &hidden(&page, "csrf")),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 302);
    let up = location(&r).unwrap();
    assert!(up.starts_with(&format!("{}/auth?", s.idp.issuer)), "{up}");
    let q = query_of(&up);
    assert_eq!(q["client_id"], "mcpauth");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["redirect_uri"], s.auth.url("/upstream/callback"));
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 22, "{q:?}");
    assert_ne!(q["state"], "st-1", "the client's state never goes upstream");
    assert!(b.cookies.contains_key("__Host-mcpauth_upstream"));
    assert_eq!(s.upstream_states().await, 1);

    // 3. The provider logs alice in and comes back; the client gets a code, its state and iss.
    let cb = b
        .upstream_login(http, &s.idp.issuer, &up, Some("alice"))
        .await;
    assert!(cb.starts_with(&s.auth.url("/upstream/callback")), "{cb}");
    let r = b.get(http, &cb).await;
    assert_eq!(r.status().as_u16(), 302);
    let q = redirect_query(&r);
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], s.auth.issuer());
    assert!(b.cookies.contains_key("__Host-mcpauth_session"));
    assert!(
        !b.cookies.contains_key("__Host-mcpauth_upstream"),
        "cleared"
    );
    assert_eq!(s.upstream_states().await, 0, "the state was used up");
    let tokens = redeem(&s, &client, &q["code"]).await;
    let access = tokens["access_token"].as_str().unwrap();
    let user = s.auth.introspect(access).await["sub"]
        .as_str()
        .unwrap()
        .to_owned();

    // The upstream identity is linked to that user.
    let (linked, provider): (uuid::Uuid, String) = sqlx::query_as(
        "SELECT user_id, provider FROM upstream_identities WHERE upstream_issuer = $1 AND upstream_subject = 'alice'",
    )
    .bind(&s.idp.issuer)
    .fetch_one(&s.auth.pool)
    .await
    .unwrap();
    assert_eq!(
        (linked.to_string(), provider.as_str()),
        (user.clone(), "corp")
    );
    // Consent given before the login is recorded for the user.
    let consents: i64 =
        sqlx::query_scalar("SELECT count(*) FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(linked)
            .bind(&client)
            .fetch_one(&s.auth.pool)
            .await
            .unwrap();
    assert_eq!(consents, 1);

    // 4. The upstream tokens landed in token-vault under that user: the vault hands the MCP
    // token's owner an upstream token that the provider accepts as alice's.
    let got = s.vault_access_token(access, "corp").await.unwrap();
    assert_eq!(s.upstream_userinfo(&got.access_token).await["sub"], "alice");
    assert!(
        !got.access_token.starts_with("mcpat"),
        "no token passthrough"
    );
    let stored = s.auth.audit_events("vault.credential_stored", 1).await;
    assert_eq!(stored[0].detail["provider"], "corp");
    assert_eq!(stored[0].detail["has_refresh_token"], true);
    assert_eq!(
        s.auth
            .audit_events("upstream.login_succeeded", 1)
            .await
            .len(),
        1
    );

    // 5. Alice again from a fresh browser: the same mcpauth user. Bob: another one.
    let mut b2 = Browser::default();
    let q = login_as(&s, &mut b2, &client, "alice").await;
    let t2 = redeem(&s, &client, &q["code"]).await;
    let again = s
        .auth
        .introspect(t2["access_token"].as_str().unwrap())
        .await;
    assert_eq!(again["sub"], user.as_str());
    let mut b3 = Browser::default();
    let q = login_as(&s, &mut b3, &client, "bob").await;
    let t3 = redeem(&s, &client, &q["code"]).await;
    let bob = s
        .auth
        .introspect(t3["access_token"].as_str().unwrap())
        .await;
    assert_ne!(bob["sub"], user.as_str());
    let links: i64 = sqlx::query_scalar("SELECT count(*) FROM upstream_identities")
        .fetch_one(&s.auth.pool)
        .await
        .unwrap();
    assert_eq!(links, 2);
    s.stop().await;
}

#[tokio::test]
async fn upstream_state_must_be_present_fresh_unused_and_from_the_same_browser() {
    let s = Stack::start(StackOptions {
        extra_env: vec![("MCPAUTH__UPSTREAM__STATE_TTL_SECS", "2".into())],
        ..Default::default()
    })
    .await;
    let http = &s.auth.http;
    let client = s.auth.public_client().await;

    // Missing state.
    let mut b = Browser::default();
    let r = b
        .get(http, &s.auth.url("/upstream/callback?code=abc"))
        .await;
    assert_eq!(r.status().as_u16(), 400);
    assert!(location(&r).is_none());
    // Unknown state.
    let r = b
        .get(
            http,
            &s.auth.url("/upstream/callback?code=abc&state=made-up"),
        )
        .await;
    assert_eq!(r.status().as_u16(), 400);
    assert!(location(&r).is_none());

    // A callback delivered to another browser (no binding cookie) is refused, and the state
    // is spent: the right browser cannot use it afterwards either.
    let up = consent_then_upstream(&s, &mut b, &client, "st").await;
    let cb = b
        .upstream_login(http, &s.idp.issuer, &up, Some("alice"))
        .await;
    let mut attacker = Browser::default();
    let r = attacker.get(http, &cb).await;
    assert_eq!(r.status().as_u16(), 403);
    assert!(location(&r).is_none());
    let r = b.get(http, &cb).await;
    assert_eq!(r.status().as_u16(), 400, "single use");

    // A browser cookie from another flow does not match either.
    let mut b1 = Browser::default();
    let up1 = consent_then_upstream(&s, &mut b1, &client, "st").await;
    let mut b2 = Browser::default();
    let _ = consent_then_upstream(&s, &mut b2, &client, "st").await;
    let cb1 = b1
        .upstream_login(http, &s.idp.issuer, &up1, Some("alice"))
        .await;
    let r = b2.get(http, &cb1).await;
    assert_eq!(r.status().as_u16(), 403);

    // Replay: the first use succeeds, the second finds nothing.
    let mut b = Browser::default();
    let up = consent_then_upstream(&s, &mut b, &client, "st").await;
    let cb = b
        .upstream_login(http, &s.idp.issuer, &up, Some("alice"))
        .await;
    let r = b.get(http, &cb).await;
    assert_eq!(r.status().as_u16(), 302);
    assert!(redirect_query(&r).contains_key("code"));
    let mut b_again = b.clone();
    b_again.cookies.insert(
        "__Host-mcpauth_upstream".into(),
        "whatever-was-there".into(),
    );
    let r = b_again.get(http, &cb).await;
    assert_eq!(r.status().as_u16(), 400);

    // Expired: the state lives state_ttl_secs (2 s here).
    let mut b = Browser::default();
    let up = consent_then_upstream(&s, &mut b, &client, "st").await;
    let cb = b
        .upstream_login(http, &s.idp.issuer, &up, Some("alice"))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let r = b.get(http, &cb).await;
    assert_eq!(r.status().as_u16(), 400);
    assert!(location(&r).is_none());
    let codes = s.auth.audit_events("code.issued", 1).await;
    assert_eq!(
        codes.len(),
        1,
        "only the one legitimate callback issued a code"
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_id_tokens_and_upstream_errors_go_back_to_the_client_as_errors() {
    let s = Stack::start(StackOptions::default()).await;
    let http = &s.auth.http;
    let client = s.auth.public_client().await;
    for mode in ["nonce", "iss", "aud", "sig"] {
        s.idp.tamper(http, mode).await;
        let mut b = Browser::default();
        let up = consent_then_upstream(&s, &mut b, &client, "st-bad").await;
        let cb = b
            .upstream_login(http, &s.idp.issuer, &up, Some("mallory"))
            .await;
        let r = b.get(http, &cb).await;
        assert_eq!(r.status().as_u16(), 302, "{mode}");
        let q = redirect_query(&r);
        assert_eq!(
            q.get("error").map(String::as_str),
            Some("server_error"),
            "{mode}: {q:?}"
        );
        assert_eq!(q["state"], "st-bad");
        assert_eq!(q["iss"], s.auth.issuer());
        assert!(!q.contains_key("code"));
        assert!(
            !q.get("error_description").unwrap().contains("nonce"),
            "no upstream details leak to the client"
        );
    }
    s.idp.tamper(http, "none").await;
    let linked: i64 = sqlx::query_scalar("SELECT count(*) FROM upstream_identities")
        .fetch_one(&s.auth.pool)
        .await
        .unwrap();
    assert_eq!(linked, 0, "no identity from a refused ID token");
    let failed = s.auth.audit_events("upstream.login_failed", 4).await;
    assert_eq!(failed.len(), 4);
    assert!(failed.iter().all(|e| e.detail["reason"] == "identity"));

    // The user denies at the provider: access_denied with the client's state and iss.
    let mut b = Browser::default();
    let up = consent_then_upstream(&s, &mut b, &client, "st-deny").await;
    let cb = b.upstream_login(http, &s.idp.issuer, &up, None).await;
    assert!(query_of(&cb).contains_key("error"), "{cb}");
    let r = b.get(http, &cb).await;
    assert_eq!(r.status().as_u16(), 302);
    let q = redirect_query(&r);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st-deny");
    assert_eq!(q["iss"], s.auth.issuer());

    // Nothing was stored in the vault for any of these.
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE kind = 'vault.credential_stored'",
    )
    .fetch_one(&s.auth.pool)
    .await
    .unwrap();
    assert_eq!(stored, 0);
    s.stop().await;
}

#[tokio::test]
async fn oauth2_provider_identity_comes_from_userinfo_and_subject_claim() {
    let s = Stack::start(StackOptions {
        login_provider: "crm",
        ..Default::default()
    })
    .await;
    let client = s.auth.public_client().await;
    let mut b = Browser::default();
    let up = consent_then_upstream(&s, &mut b, &client, "st-crm").await;
    let q = query_of(&up);
    assert!(!q.contains_key("nonce"), "plain OAuth 2.0: no nonce");
    assert_eq!(q["scope"], "openid servicenow");
    let cb = b
        .upstream_login(&s.auth.http, &s.idp.issuer, &up, Some("carol"))
        .await;
    let r = b.get(&s.auth.http, &cb).await;
    assert_eq!(r.status().as_u16(), 302);
    let q = redirect_query(&r);
    let tokens = redeem(&s, &client, &q["code"]).await;
    let access = tokens["access_token"].as_str().unwrap();
    let sub = s.auth.introspect(access).await["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    // No issuer configured: the namespace is the authorization endpoint's origin.
    let (user, username): (uuid::Uuid, String) = sqlx::query_as(
        "SELECT user_id, username FROM upstream_identities WHERE upstream_issuer = $1 AND upstream_subject = 'sys-carol'",
    )
    .bind(&s.idp.issuer)
    .fetch_one(&s.auth.pool)
    .await
    .unwrap();
    assert_eq!((user.to_string(), username.as_str()), (sub, "carol"));
    let got = s.vault_access_token(access, "crm").await.unwrap();
    assert_eq!(s.upstream_userinfo(&got.access_token).await["sub"], "carol");
    s.stop().await;
}

async fn start_connect(
    s: &Stack,
    credential: &str,
    access_token: &str,
    provider: &str,
) -> Result<mcpauth_proto::v1::StartConnectResponse, tonic::Status> {
    let mut c = UpstreamConnectClient::connect(format!("http://{}", s.auth.grpc))
        .await
        .unwrap();
    let mut req = tonic::Request::new(StartConnectRequest {
        access_token: access_token.into(),
        provider: provider.into(),
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {credential}").parse().unwrap(),
    );
    c.start_connect(req).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn connect_flow_binds_the_link_to_its_user_and_stores_the_credential() {
    let s = Stack::start(StackOptions::default()).await;
    let http = &s.auth.http;
    let client = s.auth.public_client().await;
    let mut alice = Browser::default();
    let q = login_as(&s, &mut alice, &client, "alice").await;
    let alice_token = redeem(&s, &client, &q["code"]).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bob = Browser::default();
    let q = login_as(&s, &mut bob, &client, "bob").await;
    let bob_token = redeem(&s, &client, &q["code"]).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Not connected yet.
    let e = s.vault_access_token(&alice_token, "crm").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // StartConnect: service credential, an active user token, a known provider.
    let e = start_connect(&s, "wrong-credential", &alice_token, "crm")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = start_connect(&s, GRPC_CREDENTIAL, &mangle(&alice_token), "crm")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = start_connect(&s, GRPC_CREDENTIAL, &alice_token, "nope")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let link = start_connect(&s, GRPC_CREDENTIAL, &alice_token, "crm")
        .await
        .unwrap();
    assert!(
        link.connect_url.starts_with(&s.auth.url("/connect/")),
        "{}",
        link.connect_url
    );
    let now = chrono::Utc::now().timestamp();
    assert!(link.expires_at > now && link.expires_at <= now + 600);

    // Phished: bob's browser opens alice's link. Refused, nothing stored for either.
    let mut bob_tab = bob.clone();
    let r = bob_tab.get(http, &link.connect_url).await;
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let refused = s.auth.audit_events("connect.refused", 1).await;
    assert_eq!(refused[0].detail["reason"], "different_user");
    // The link is bound to the browser that opened it first: alice needs a new one.
    let r = alice.get(http, &link.connect_url).await;
    assert_eq!(r.status().as_u16(), 403);
    let link = start_connect(&s, GRPC_CREDENTIAL, &alice_token, "crm")
        .await
        .unwrap();

    // Alice signs in at the provider afresh for the connection (another upstream account).
    alice.cookies.retain(|k, _| k.starts_with("__Host-"));
    // Alice opens it: the confirmation names the provider, the scopes and her account.
    let r = alice.get(http, &link.connect_url).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let page = r.text().await.unwrap();
    for shown in ["CRM", "servicenow", "alice"] {
        assert!(page.contains(shown), "confirmation lacks {shown}: {page}");
    }
    let csrf = hidden(&page, "csrf");
    // Wrong CSRF token, or the form replayed from bob's browser: refused.
    let r = alice
        .post(
            http,
            &link.connect_url,
            &[("csrf", "forged"), ("step", "confirm")],
        )
        .await;
    assert_eq!(r.status().as_u16(), 403);
    let r = bob
        .post(
            http,
            &link.connect_url,
            &[("csrf", &csrf), ("step", "confirm")],
        )
        .await;
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(s.upstream_states().await, 0, "nothing went upstream");

    // Confirm: to the provider with state + PKCE bound to this browser.
    let r = alice
        .post(
            http,
            &link.connect_url,
            &[("csrf", &csrf), ("step", "confirm")],
        )
        .await;
    assert_eq!(r.status().as_u16(), 302);
    let up = location(&r).unwrap();
    let q = query_of(&up);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["scope"], "openid servicenow");
    assert_eq!(s.upstream_states().await, 1);
    // The ticket is single use.
    let r = alice.get(http, &link.connect_url).await;
    assert_eq!(r.status().as_u16(), 404);
    let cb = alice
        .upstream_login(http, &s.idp.issuer, &up, Some("alice-crm"))
        .await;
    let r = alice.get(http, &cb).await;
    assert_eq!(r.status().as_u16(), 200, "{cb} -> {:?}", location(&r));
    let page = r.text().await.unwrap();
    assert!(page.contains("CRM is connected"), "{page}");

    // The credential landed in the vault for alice (and not for bob).
    let got = s.vault_access_token(&alice_token, "crm").await.unwrap();
    assert_eq!(
        s.upstream_userinfo(&got.access_token).await["sub"],
        "alice-crm"
    );
    let e = s.vault_access_token(&bob_token, "crm").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert_eq!(s.auth.audit_events("connect.completed", 1).await.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn connect_link_in_a_fresh_browser_logs_in_upstream_first() {
    let s = Stack::start(StackOptions::default()).await;
    let http = &s.auth.http;
    let client = s.auth.public_client().await;
    let mut first = Browser::default();
    let q = login_as(&s, &mut first, &client, "alice").await;
    let alice_token = redeem(&s, &client, &q["code"]).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Someone else (dave at the provider) opens alice's link in a fresh browser: they must log
    // in, and logging in as dave does not make them alice.
    let link = start_connect(&s, GRPC_CREDENTIAL, &alice_token, "crm")
        .await
        .unwrap();
    let mut dave = Browser::default();
    let r = dave.get(http, &link.connect_url).await;
    assert_eq!(r.status().as_u16(), 302, "login at the provider first");
    let up = location(&r).unwrap();
    let cb = dave
        .upstream_login(http, &s.idp.issuer, &up, Some("dave"))
        .await;
    let r = dave.get(http, &cb).await;
    assert_eq!(r.status().as_u16(), 302);
    let back = location(&r).unwrap();
    assert_eq!(back, link.connect_url);
    let r = dave.get(http, &back).await;
    assert_eq!(r.status().as_u16(), 403);

    // Alice in a fresh browser: log in upstream, back to the link, confirm page.
    let link = start_connect(&s, GRPC_CREDENTIAL, &alice_token, "crm")
        .await
        .unwrap();
    let mut fresh = Browser::default();
    let r = fresh.get(http, &link.connect_url).await;
    let up = location(&r).unwrap();
    let cb = fresh
        .upstream_login(http, &s.idp.issuer, &up, Some("alice"))
        .await;
    let r = fresh.get(http, &cb).await;
    let r = fresh.get(http, &location(&r).unwrap()).await;
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Connect <strong>CRM</strong>"), "{page}");
    s.stop().await;
}

/// Issue 12 review: a connect flow under way while the operator runs `revoke-user` (here: the
/// user has confirmed the link and is at the provider) stores nothing when the provider sends
/// the user back — the link predates the revocation.
#[tokio::test]
async fn a_connect_flow_under_way_across_revoke_user_stores_nothing() {
    let s = Stack::start(StackOptions::default()).await;
    let http = &s.auth.http;
    let client = s.auth.public_client().await;
    let mut alice = Browser::default();
    let q = login_as(&s, &mut alice, &client, "alice").await;
    let alice_token = redeem(&s, &client, &q["code"]).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let user_id: uuid::Uuid = s.auth.introspect(&alice_token).await["sub"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let link = start_connect(&s, GRPC_CREDENTIAL, &alice_token, "crm")
        .await
        .unwrap();
    let page = alice
        .get(http, &link.connect_url)
        .await
        .text()
        .await
        .unwrap();
    let r = alice
        .post(
            http,
            &link.connect_url,
            &[("csrf", &hidden(&page, "csrf")), ("step", "confirm")],
        )
        .await;
    assert_eq!(r.status().as_u16(), 302);
    let up = location(&r).unwrap();

    // Meanwhile the operator revokes alice.
    let state = &s.auth.running.as_ref().unwrap().state;
    let actor = auth_service::user_admin::Actor {
        name: "cli".into(),
        reason: "INC-9".into(),
    };
    auth_service::user_admin::revoke_user(state, user_id, false, &actor)
        .await
        .unwrap();

    let cb = alice
        .upstream_login(http, &s.idp.issuer, &up, Some("alice-crm"))
        .await;
    let r = alice.get(http, &cb).await;
    assert_eq!(r.status().as_u16(), 400, "{cb} -> {:?}", location(&r));
    let page = r.text().await.unwrap();
    assert!(page.contains("access_denied"), "{page}");

    // Nothing landed in the vault: alice, signed in again, has no CRM connection. (A sign-in in
    // the second of the revocation counts as before it: revocations are in whole seconds, so
    // step past it.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut again = Browser::default();
    let q = login_as(&s, &mut again, &client, "alice").await;
    let fresh = redeem(&s, &client, &q["code"]).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let e = s.vault_access_token(&fresh, "crm").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    s.stop().await;
}
