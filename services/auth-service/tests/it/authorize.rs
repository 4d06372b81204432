//! `GET /authorize` (OAuth 2.1 §4.1.1, RFC 7636, RFC 8252, RFC 8707, RFC 9207) with the dev
//! login: what is refused with an error page (never redirected), what is refused with an error
//! redirect, and what a successful redirect carries.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::harness::*;

/// A valid request for `client`, with `changes` applied: `(name, Some(v))` sets, `(name, None)`
/// removes.
fn request<'a>(client: &'a str, changes: &[(&'a str, Option<&'a str>)]) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", REDIRECT),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", "st-1"),
        ("resource", RESOURCE),
    ];
    for (k, v) in changes {
        p.retain(|(pk, _)| pk != k);
        if let Some(v) = v {
            p.push((k, v));
        }
    }
    p
}

/// Asserts an error redirect to the client (RFC 6749 §4.1.2.1, RFC 9207): 302 to the
/// registered redirect URI with exactly one `error`, one `iss` equal to the issuer, `state` once
/// when the request had one, and no code. Returns the query.
fn assert_error_redirect(
    s: &TestServer,
    r: &reqwest::Response,
    error: &str,
    state: Option<&str>,
) -> HashMap<String, String> {
    assert_eq!(r.status().as_u16(), 302, "expected an error redirect");
    let loc = location(r).unwrap();
    assert!(loc.starts_with(&format!("{REDIRECT}?")), "{loc}");
    let q = redirect_query(r);
    let counts = redirect_param_counts(r);
    assert_eq!(q.get("error").map(String::as_str), Some(error), "{loc}");
    assert_eq!(counts["error"], 1, "{loc}");
    assert_eq!(counts["iss"], 1, "{loc}");
    assert_eq!(q["iss"], s.issuer(), "{loc}");
    match state {
        Some(st) => {
            assert_eq!(counts["state"], 1, "{loc}");
            assert_eq!(q["state"], st);
        }
        None => assert!(!q.contains_key("state"), "{loc}"),
    }
    assert!(!q.contains_key("code"), "{loc}");
    assert!(
        counts.get("error_description").is_none_or(|n| *n == 1),
        "{loc}"
    );
    q
}

async fn register(s: &TestServer, body: Value) -> String {
    let (status, body) = s.register(body).await;
    assert_eq!(status, 201, "{body}");
    body["client_id"].as_str().unwrap().to_owned()
}

async fn redeem(
    s: &TestServer,
    client: &str,
    code: &str,
    redirect_uri: &str,
) -> (u16, Value, reqwest::header::HeaderMap) {
    s.token(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", VERIFIER),
        ("client_id", client),
        ("redirect_uri", redirect_uri),
        ("resource", RESOURCE),
    ])
    .await
}

// --- refused without a redirect -----------------------------------------------------------------

#[tokio::test]
async fn unknown_or_missing_client_gets_an_error_page() {
    let s = TestServer::start().await;
    let page = assert_error_page(s.authorize(&request("mcpc_does_not_exist", &[])).await).await;
    assert!(page.contains("invalid_client"), "{page}");
    // Even with a redirect URI that looks legitimate, nothing is redirected.
    let page = assert_error_page(s.authorize(&request("", &[])).await).await;
    assert!(page.contains("invalid_request"), "{page}");
    let page = assert_error_page(s.authorize(&request("x", &[("client_id", None)])).await).await;
    assert!(page.contains("client_id"), "{page}");
    s.stop().await;
}

#[tokio::test]
async fn unregistered_redirect_uri_gets_an_error_page() {
    let s = TestServer::start().await;
    let client = s.public_client().await;
    for uri in [
        "https://evil.example/callback",
        "http://127.0.0.1:3000/evil",
        "not a uri",
        "",
    ] {
        let page = assert_error_page(
            s.authorize(&request(&client, &[("redirect_uri", Some(uri))]))
                .await,
        )
        .await;
        assert!(page.contains("redirect_uri"), "{page}");
    }
    // The redirect URI is checked before anything else: an otherwise broken request with an
    // attacker's redirect URI still gets the page, not a redirect to the attacker.
    let r = s
        .authorize(&request(
            &client,
            &[
                ("redirect_uri", Some("https://evil.example/callback")),
                ("response_type", Some("token")),
                ("code_challenge", None),
                ("resource", Some("https://unknown.example/mcp")),
            ],
        ))
        .await;
    assert_error_page(r).await;
    s.stop().await;
}

#[tokio::test]
async fn redirect_uri_is_required_when_several_are_registered() {
    let s = TestServer::start().await;
    let two = register(
        &s,
        json!({"redirect_uris": [REDIRECT, "https://app.example.com/cb"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    let page =
        assert_error_page(s.authorize(&request(&two, &[("redirect_uri", None)])).await).await;
    assert!(page.contains("redirect_uri"), "{page}");
    // With a single registered URI it may be omitted; the code is then bound to that URI.
    let one = s.public_client().await;
    let r = s.authorize(&request(&one, &[("redirect_uri", None)])).await;
    assert_eq!(r.status().as_u16(), 302);
    assert!(location(&r).unwrap().starts_with(&format!("{REDIRECT}?")));
    let code = redirect_query(&r)["code"].clone();
    let (status, body, _) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("client_id", &one),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    s.stop().await;
}

#[tokio::test]
async fn redirect_uri_must_match_exactly() {
    let s = TestServer::start().await;
    let client = register(
        &s,
        json!({
            "redirect_uris": ["https://app.example.com/cb", REDIRECT],
            "token_endpoint_auth_method": "none",
        }),
    )
    .await;
    for uri in [
        "https://app.example.com/cb/",
        "https://app.example.com/cb2",
        "https://app.example.com/CB",
        "https://app.example.com/",
        "https://APP.example.com/cb",
        "https://app.example.com:443/cb",
        "https://app.example.com/cb?x=1",
        "https://app.example.com/cb#",
        "https://app.example.com.evil.example/cb",
        "http://app.example.com/cb",
        "http://127.0.0.1:3000/callback/",
        "http://127.0.0.1:3000/Callback",
        "http://127.0.0.1:3000/callback?x=1",
        "http://127.0.0.1:3000/callback#x",
        "https://127.0.0.1:3000/callback",
        "http://localhost:3000/callback",
        "http://127.0.0.2:3000/callback",
        "http://user@127.0.0.1:3000/callback",
    ] {
        let r = s
            .authorize(&request(&client, &[("redirect_uri", Some(uri))]))
            .await;
        assert_eq!(r.status().as_u16(), 400, "{uri} must be refused");
        assert_error_page(r).await;
    }
    // The exact strings work.
    let r = s
        .authorize(&request(
            &client,
            &[("redirect_uri", Some("https://app.example.com/cb"))],
        ))
        .await;
    assert_eq!(r.status().as_u16(), 302);
    assert!(
        location(&r)
            .unwrap()
            .starts_with("https://app.example.com/cb?")
    );
    let r = s.authorize(&request(&client, &[])).await;
    assert_eq!(r.status().as_u16(), 302);
    s.stop().await;
}

#[tokio::test]
async fn loopback_redirect_without_port_accepts_any_port_but_not_another_path() {
    let s = TestServer::start().await;
    let registered = "http://127.0.0.1/callback";
    let client = register(
        &s,
        json!({"redirect_uris": [registered], "token_endpoint_auth_method": "none"}),
    )
    .await;
    // RFC 8252 §7.3: the native app binds an ephemeral port.
    let used = "http://127.0.0.1:54321/callback";
    let r = s
        .authorize(&request(&client, &[("redirect_uri", Some(used))]))
        .await;
    assert_eq!(r.status().as_u16(), 302);
    assert!(
        location(&r).unwrap().starts_with(&format!("{used}?")),
        "{:?}",
        location(&r)
    );
    let code = redirect_query(&r)["code"].clone();
    // The code is bound to the URI actually used.
    let (status, body, _) = redeem(&s, &client, &code, registered).await;
    assert_eq!(status, 400, "{body}");
    let r = s
        .authorize(&request(&client, &[("redirect_uri", Some(used))]))
        .await;
    let code = redirect_query(&r)["code"].clone();
    let (status, body, _) = redeem(&s, &client, &code, used).await;
    assert_eq!(status, 200, "{body}");
    // Only the port may vary.
    for uri in [
        "http://127.0.0.1:54321/other",
        "http://127.0.0.1:54321/callback/",
        "http://127.0.0.1:54321/callback?x=1",
        "http://localhost:54321/callback",
        "http://[::1]:54321/callback",
        "https://127.0.0.1:54321/callback",
        "http://127.0.0.1.evil.example:54321/callback",
    ] {
        let r = s
            .authorize(&request(&client, &[("redirect_uri", Some(uri))]))
            .await;
        assert_eq!(r.status().as_u16(), 400, "{uri} must be refused");
        assert_error_page(r).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn duplicate_parameters_get_an_error_page() {
    // RFC 6749 §3.1: request parameters MUST NOT be included more than once.
    let s = TestServer::start().await;
    let client = s.public_client().await;
    for dup in [
        ("client_id", client.as_str()),
        ("redirect_uri", REDIRECT),
        ("state", "other"),
        ("code_challenge", CHALLENGE),
        ("resource", RESOURCE),
        ("response_type", "code"),
    ] {
        let mut p = request(&client, &[]);
        p.push(dup);
        let page = assert_error_page(s.authorize(&p).await).await;
        assert!(page.contains("more than once"), "{page}");
    }
    s.stop().await;
}

// --- refused with an error redirect ---------------------------------------------------------

#[tokio::test]
async fn pkce_s256_is_required() {
    let s = TestServer::start().await;
    let client = s.public_client().await;
    let cases: [&[(&str, Option<&str>)]; 6] = [
        &[("code_challenge", None)],
        &[("code_challenge", None), ("code_challenge_method", None)],
        &[("code_challenge_method", Some("plain"))],
        &[
            ("code_challenge_method", Some("plain")),
            ("code_challenge", Some(VERIFIER)),
        ],
        &[("code_challenge_method", None)],
        &[("code_challenge_method", Some("s256"))],
    ];
    for changes in cases {
        let r = s.authorize(&request(&client, changes)).await;
        let q = assert_error_redirect(&s, &r, "invalid_request", Some("st-1"));
        assert!(q.contains_key("error_description"), "{changes:?}");
    }
    // A challenge that cannot be an S256 digest.
    for bad in [
        "short",
        "",
        &format!("{CHALLENGE}A"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c+",
    ] {
        let r = s
            .authorize(&request(&client, &[("code_challenge", Some(bad))]))
            .await;
        assert_error_redirect(&s, &r, "invalid_request", Some("st-1"));
    }
    s.stop().await;
}

#[tokio::test]
async fn a_request_that_is_not_an_authorization_request_gets_an_error_page() {
    // The attack (RFC 9700 §4.11.2): anyone registers a client with their own redirect URI,
    // then hands out links to this server that bounce straight to it.
    let s = TestServer::start().await;
    let client = register(
        &s,
        json!({"redirect_uris": ["https://evil.example/landing"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    for params in [
        vec![("client_id", client.as_str())],
        vec![("client_id", client.as_str()), ("state", "x")],
        vec![("client_id", client.as_str()), ("response_type", "token")],
    ] {
        let page = assert_error_page(s.authorize(&params).await).await;
        assert!(page.contains("response_type"), "{page}");
    }
    s.stop().await;
}

#[tokio::test]
async fn response_type_must_be_code() {
    let s = TestServer::start().await;
    let client = s.public_client().await;
    for rt in ["token", "code id_token", "id_token", "code token", "CODE"] {
        let page = assert_error_page(
            s.authorize(&request(&client, &[("response_type", Some(rt))]))
                .await,
        )
        .await;
        assert!(page.contains("unsupported_response_type"), "{rt}: {page}");
    }
    let page = assert_error_page(
        s.authorize(&request(&client, &[("response_type", None)]))
            .await,
    )
    .await;
    assert!(page.contains("invalid_request"), "{page}");
    s.stop().await;
}

#[tokio::test]
async fn state_is_bounded() {
    let s = TestServer::start().await;
    let client = s.public_client().await;
    let long = "s".repeat(1025);
    let page = assert_error_page(
        s.authorize(&request(&client, &[("state", Some(&long))]))
            .await,
    )
    .await;
    assert!(page.contains("state must be at most 1024 bytes"), "{page}");
    let most = "s".repeat(1024);
    let r = s
        .authorize(&request(&client, &[("state", Some(&most))]))
        .await;
    assert_eq!(r.status().as_u16(), 302);
    let q = redirect_query(&r);
    assert!(q.contains_key("code"), "{q:?}");
    assert_eq!(q["state"], most);
    s.stop().await;
}

#[tokio::test]
async fn unknown_resource_is_invalid_target() {
    let s = TestServer::start().await;
    let client = s.public_client().await;
    for res in [
        OTHER_RESOURCE,
        "http://127.0.0.1:8081/mcp/other",
        "http://127.0.0.1:8082/mcp",
        "https://127.0.0.1:8081/mcp",
        "http://127.0.0.1:8081/mcp#frag",
        "mcp",
    ] {
        let r = s
            .authorize(&request(&client, &[("resource", Some(res))]))
            .await;
        assert_error_redirect(&s, &r, "invalid_target", Some("st-1"));
    }
    // This server protects two resources: the client has to say which one.
    let r = s.authorize(&request(&client, &[("resource", None)])).await;
    assert_error_redirect(&s, &r, "invalid_target", Some("st-1"));
    // RFC 8707 canonical comparison: scheme and host case do not matter, and the token's audience
    // is the configured identifier byte for byte.
    let r = s
        .authorize(&request(
            &client,
            &[("resource", Some("HTTP://127.0.0.1:8081/mcp"))],
        ))
        .await;
    assert_eq!(r.status().as_u16(), 302);
    let code = redirect_query(&r)["code"].clone();
    let (status, body, _) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("client_id", &client),
            ("redirect_uri", REDIRECT),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    let intro = s.introspect(body["access_token"].as_str().unwrap()).await;
    assert_eq!(intro["aud"], RESOURCE);
    s.stop().await;
}

#[tokio::test]
async fn unknown_scope_is_invalid_scope() {
    let s = TestServer::start().await;
    let client = s.public_client().await;
    for scope in [
        "not:a-scope",
        "mcp:tools.read not:a-scope",
        "api:read",
        "mcp:tools.read \"x\"",
    ] {
        let r = s
            .authorize(&request(&client, &[("scope", Some(scope))]))
            .await;
        assert_error_redirect(&s, &r, "invalid_scope", Some("st-1"));
    }
    s.stop().await;
}

#[tokio::test]
async fn request_objects_are_refused() {
    let s = TestServer::start().await;
    let client = s.public_client().await;
    let r = s
        .authorize(&request(
            &client,
            &[("request", Some("eyJhbGciOiJub25lIn0.e30."))],
        ))
        .await;
    assert_error_redirect(&s, &r, "request_not_supported", Some("st-1"));
    let r = s
        .authorize(&request(
            &client,
            &[("request_uri", Some("https://evil.example/req"))],
        ))
        .await;
    assert_error_redirect(&s, &r, "request_not_supported", Some("st-1"));
    s.stop().await;
}

#[tokio::test]
async fn client_without_code_grant_gets_an_error_page() {
    let s = TestServer::start().await;
    // A confidential client registered for client_credentials and, oddly, a redirect URI: it
    // has no business at the authorization endpoint, so nothing is redirected for it.
    let (status, body) = s
        .register_with(
            json!({
                "redirect_uris": [REDIRECT],
                "grant_types": ["client_credentials"],
                "response_types": [],
                "token_endpoint_auth_method": "client_secret_basic",
            }),
            Some(INITIAL_ACCESS_TOKEN),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let client = body["client_id"].as_str().unwrap();
    let page = assert_error_page(s.authorize(&request(client, &[])).await).await;
    assert!(page.contains("unauthorized_client"), "{page}");
    s.stop().await;
}

// --- tolerated and successful requests ------------------------------------------------------

#[tokio::test]
async fn offline_access_and_prompt_consent_are_tolerated() {
    // Both SDKs add these when the metadata lists offline_access.
    let s = TestServer::start().await;
    let client = s.public_client().await;
    let r = s
        .authorize(&request(
            &client,
            &[
                ("scope", Some("mcp:tools.read offline_access")),
                ("prompt", Some("consent")),
            ],
        ))
        .await;
    assert_eq!(r.status().as_u16(), 302);
    let q = redirect_query(&r);
    assert!(!q.contains_key("error"), "{q:?}");
    let (status, body, _) = redeem(&s, &client, &q["code"], REDIRECT).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:tools.read");
    assert!(
        body["refresh_token"].is_string(),
        "the client has the refresh_token grant: {body}"
    );
    // offline_access alone means the default scopes.
    let r = s
        .authorize(&request(&client, &[("scope", Some("offline_access"))]))
        .await;
    let q = redirect_query(&r);
    let (status, body, _) = redeem(&s, &client, &q["code"], REDIRECT).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:tools.read");
    s.stop().await;
}

#[tokio::test]
async fn missing_state_is_tolerated() {
    let s = TestServer::start().await;
    let client = s.public_client().await;
    let r = s.authorize(&request(&client, &[("state", None)])).await;
    assert_eq!(r.status().as_u16(), 302);
    let q = redirect_query(&r);
    assert!(q.contains_key("code"), "{q:?}");
    assert!(!q.contains_key("state"), "{q:?}");
    assert_eq!(q["iss"], s.issuer());
    // An error without state has no state either.
    let r = s
        .authorize(&request(
            &client,
            &[("state", None), ("code_challenge", None)],
        ))
        .await;
    assert_error_redirect(&s, &r, "invalid_request", None);
    s.stop().await;
}

#[tokio::test]
async fn success_redirect_carries_code_state_and_iss_once() {
    let s = TestServer::start().await;
    let client = s.public_client().await;
    let state = "a b&c=d/é?#%+";
    let r = s
        .authorize(&request(
            &client,
            &[
                ("state", Some(state)),
                ("scope", Some("mcp:tools.read mcp:tools.write")),
            ],
        ))
        .await;
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let loc = location(&r).unwrap();
    assert_eq!(loc.split_once('?').unwrap().0, REDIRECT, "{loc}");
    let counts = redirect_param_counts(&r);
    let mut keys: Vec<_> = counts.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["code", "iss", "state"], "{loc}");
    assert!(counts.values().all(|n| *n == 1), "{loc}");
    let q = redirect_query(&r);
    assert_eq!(q["state"], state, "state comes back byte for byte");
    // RFC 9207: iss is the metadata issuer, byte for byte.
    assert_eq!(q["iss"], s.issuer());
    assert_eq!(q["iss"], s.base);
    assert!(q["code"].starts_with("mcpac_"), "{loc}");
    let (status, body, _) = redeem(&s, &client, &q["code"], REDIRECT).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "mcp:tools.read mcp:tools.write");
    let codes = s.audit_events("code.issued", 1).await;
    assert!(
        codes
            .iter()
            .any(|e| e.client_id.as_deref() == Some(client.as_str())),
        "{codes:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn registered_redirect_query_is_kept() {
    let s = TestServer::start().await;
    let registered = "https://app.example.com/cb?tenant=acme";
    let client = register(
        &s,
        json!({"redirect_uris": [registered], "token_endpoint_auth_method": "none"}),
    )
    .await;
    let r = s
        .authorize(&request(&client, &[("redirect_uri", Some(registered))]))
        .await;
    assert_eq!(r.status().as_u16(), 302);
    let q = redirect_query(&r);
    assert_eq!(q["tenant"], "acme");
    assert!(q.contains_key("code"));
    let counts = redirect_param_counts(&r);
    assert_eq!((counts["code"], counts["state"], counts["iss"]), (1, 1, 1));
    s.stop().await;
}

#[tokio::test]
async fn code_is_bound_to_its_client() {
    let s = TestServer::start().await;
    let a = s.public_client().await;
    let b = s.public_client().await;
    let code = s.code_for(&a, None).await;
    let (status, body, _) = redeem(&s, &b, &code, REDIRECT).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
    // A confidential client authenticating properly cannot take it either.
    let (c, secret) = s.confidential_client(&["authorization_code"]).await;
    let code = s.code_for(&a, None).await;
    let resp = s
        .token_basic(
            &c,
            &secret,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", VERIFIER),
                ("redirect_uri", REDIRECT),
                ("resource", RESOURCE),
            ],
        )
        .await;
    assert_oauth_error(&resp, 400, "invalid_grant");
    // The rightful client redeems a fresh code.
    let code = s.code_for(&a, None).await;
    let (status, body, _) = redeem(&s, &a, &code, REDIRECT).await;
    assert_eq!(status, 200, "{body}");
    s.stop().await;
}
