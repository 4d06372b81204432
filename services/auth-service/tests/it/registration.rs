//! Dynamic client registration (RFC 7591), its management protocol (RFC 7592), the registration
//! policy knobs and the unused-client sweeper, against the real Postgres and Redis.

use serde_json::{Value, json};

use crate::harness::*;

/// What the TypeScript SDK sends for a public client.
fn public_metadata() -> Value {
    json!({
        "client_name": "Registration test client",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
}

async fn post_register(s: &TestServer, body: &Value) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = s
        .http
        .post(s.url("/register"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().await.unwrap_or(Value::Null), headers)
}

async fn dynamic_client_count(s: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM clients WHERE source = 'dynamic'")
        .fetch_one(&s.pool)
        .await
        .unwrap()
}

async fn client_exists(s: &TestServer, client_id: &str) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM clients WHERE client_id = $1")
        .bind(client_id)
        .fetch_one(&s.pool)
        .await
        .unwrap()
        == 1
}

/// The whole `clients` row as JSON text (every column, bytea in hex).
async fn client_row_text(s: &TestServer, client_id: &str) -> String {
    sqlx::query_scalar("SELECT row_to_json(c)::text FROM clients c WHERE client_id = $1")
        .bind(client_id)
        .fetch_one(&s.pool)
        .await
        .unwrap()
}

/// Asserts that a refused registration did not leave a client behind.
async fn assert_no_dynamic_clients(s: &TestServer) {
    assert_eq!(
        dynamic_client_count(s).await,
        0,
        "a refused registration stored a client"
    );
}

/// Asserts that `kind` was audited for `client_id` (the writer is batched: waits up to 2 s).
async fn assert_audited(s: &TestServer, kind: &str, client_id: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let rows = s.audit_events(kind, 1).await;
        if rows
            .iter()
            .any(|r| r.client_id.as_deref() == Some(client_id))
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {kind} audit event for {client_id}: {rows:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A public client with its registration access token: (client_id, registration_access_token).
async fn register_managed(s: &TestServer) -> (String, String) {
    let (status, body, _) = post_register(s, &public_metadata()).await;
    assert_eq!(status, 201, "{body}");
    (
        body["client_id"].as_str().unwrap().to_owned(),
        body["registration_access_token"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

/// A code and tokens for `client` through the dev login.
async fn tokens_for(s: &TestServer, client: &str) -> Value {
    let code = s.code_for(client, None).await;
    let (status, body, _) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("client_id", client),
            ("redirect_uri", REDIRECT),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn standard_authorize(client: &str) -> Vec<(&str, &str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", REDIRECT),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", "s1"),
        ("resource", RESOURCE),
    ]
}

// --- RFC 7591 -----------------------------------------------------------------------------------

#[tokio::test]
async fn public_registration_returns_201_with_echoed_metadata_and_no_secret() {
    let s = TestServer::start().await;
    let before = chrono::Utc::now().timestamp();
    let (status, body, headers) = post_register(&s, &public_metadata()).await;
    assert_eq!(status, 201, "{body}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        headers["cache-control"], "no-store",
        "the body carries a credential"
    );

    let id = body["client_id"].as_str().expect("client_id is a string");
    assert!(!id.is_empty());
    // The TS SDK's schema requires the redirect URIs echoed, and the numbers to be numbers.
    assert_eq!(body["redirect_uris"], json!([REDIRECT]));
    let issued = body["client_id_issued_at"]
        .as_i64()
        .expect("client_id_issued_at is an integer");
    assert!(
        (before - 5..=chrono::Utc::now().timestamp() + 5).contains(&issued),
        "{issued}"
    );
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert_eq!(
        body["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(body["response_types"], json!(["code"]));
    assert_eq!(body["client_name"], "Registration test client");
    // `none`: no secret at all (the Python SDK rejects client_secret_* without one, and vice versa).
    assert!(body.get("client_secret").is_none(), "{body}");
    assert!(body.get("client_secret_expires_at").is_none(), "{body}");
    // RFC 7592 management credentials.
    let reg_token = body["registration_access_token"]
        .as_str()
        .expect("registration_access_token");
    assert_eq!(
        body["registration_client_uri"],
        format!("{}/register/{id}", s.issuer())
    );

    let (source, secret, reg_hash, uris): (String, Option<Vec<u8>>, String, Vec<String>) = sqlx::query_as(
        "SELECT source, secret_sha256, encode(registration_token_sha256, 'hex'), redirect_uris FROM clients WHERE client_id = $1",
    )
    .bind(id)
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(source, "dynamic");
    assert!(secret.is_none(), "a public client has no secret");
    assert_eq!(
        reg_hash,
        sha256_hex(reg_token),
        "only the registration token's digest is stored"
    );
    assert!(!client_row_text(&s, id).await.contains(reg_token));
    assert_eq!(uris, vec![REDIRECT.to_owned()]);

    // The client is immediately usable.
    let code = s.code_for(id, None).await;
    assert!(!code.is_empty());
    assert_audited(&s, "client.registered", id).await;
    s.stop().await;
}

#[tokio::test]
async fn confidential_registration_returns_secret_and_stores_only_its_digest() {
    let s = TestServer::start().await;
    let (status, body, headers) = post_register(
        &s,
        &json!({
            "client_name": "Confidential",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let id = body["client_id"].as_str().unwrap().to_owned();
    let secret = body["client_secret"]
        .as_str()
        .expect("a confidential client gets a secret")
        .to_owned();
    assert!(secret.len() >= 32, "{secret}");
    // RFC 7591 §3.2.1: 0 = never expires; must be a number.
    assert_eq!(body["client_secret_expires_at"].as_u64(), Some(0), "{body}");
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");

    let stored: String =
        sqlx::query_scalar("SELECT encode(secret_sha256, 'hex') FROM clients WHERE client_id = $1")
            .bind(&id)
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(stored, sha256_hex(&secret));
    let row = client_row_text(&s, &id).await;
    assert!(!row.contains(&secret), "plaintext secret stored: {row}");
    assert!(
        !row.contains(body["registration_access_token"].as_str().unwrap()),
        "{row}"
    );

    // The secret returned is the one that authenticates the client; another one does not.
    let code = s.code_for(&id, None).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
        ("redirect_uri", REDIRECT),
        ("resource", RESOURCE),
    ];
    let bad = s.token_basic(&id, "mcpcs_k1_not-the-secret", &form).await;
    assert_eq!(bad.0, 401, "{}", bad.1);
    let code = s.code_for(&id, None).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
        ("redirect_uri", REDIRECT),
        ("resource", RESOURCE),
    ];
    let ok = s.token_basic(&id, &secret, &form).await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    s.stop().await;
}

#[tokio::test]
async fn omitted_auth_method_defaults_to_client_secret_basic() {
    // RFC 7591 §2: the default token_endpoint_auth_method is client_secret_basic.
    let s = TestServer::start().await;
    let (status, body, _) = post_register(&s, &json!({"redirect_uris": [REDIRECT]})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
    assert!(body["client_secret"].is_string(), "{body}");
    assert_eq!(body["client_secret_expires_at"].as_u64(), Some(0));
    assert_eq!(body["grant_types"], json!(["authorization_code"]));
    assert_eq!(body["response_types"], json!(["code"]));
    s.stop().await;
}

#[tokio::test]
async fn unknown_metadata_is_ignored() {
    let s = TestServer::start().await;
    // The Python SDK sends application_type; anything else unknown must not break registration.
    let mut body = public_metadata();
    body["application_type"] = json!("native");
    body["x_vendor_flag"] = json!(true);
    body["nested_unknown"] = json!({"a": [1, 2, {"b": null}]});
    body["software_statement_extra"] = json!(42);
    let (status, resp, _) = post_register(&s, &body).await;
    assert_eq!(status, 201, "{resp}");
    assert_eq!(resp["redirect_uris"], json!([REDIRECT]));
    assert_eq!(resp["token_endpoint_auth_method"], "none");
    let id = resp["client_id"].as_str().unwrap();
    assert!(client_exists(&s, id).await);
    // Server-assigned values cannot be chosen by the client: not its id (which could shadow
    // another client), not its secret, not its registration token.
    let mut body = public_metadata();
    body["token_endpoint_auth_method"] = json!("client_secret_basic");
    body["client_id"] = json!(STATIC_CLIENT);
    body["client_secret"] = json!("chosen-secret");
    body["registration_access_token"] = json!("chosen-token");
    body["client_id_issued_at"] = json!(1);
    let (status, resp, _) = post_register(&s, &body).await;
    assert_eq!(status, 201, "{resp}");
    assert_ne!(resp["client_id"], STATIC_CLIENT);
    assert_ne!(resp["client_secret"], "chosen-secret");
    assert_ne!(resp["registration_access_token"], "chosen-token");
    assert_ne!(resp["client_id_issued_at"], 1);
    let source: String = sqlx::query_scalar("SELECT source FROM clients WHERE client_id = $1")
        .bind(STATIC_CLIENT)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(source, "static", "the pre-registered client is untouched");
    s.stop().await;
}

#[tokio::test]
async fn unsafe_redirect_uris_are_refused() {
    let s = TestServer::start().await;
    for uri in [
        // Plain http is only for loopback (MCP: localhost or https).
        "http://app.example.com/callback",
        "http://localhost.example.com/callback",
        "http://127.0.0.1.nip.io/callback",
        // No fragments (RFC 6749 §3.1.2).
        "https://app.example.com/callback#frag",
        "http://127.0.0.1:3000/callback#",
        // Not an absolute http(s) URI.
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "/callback",
        "callback",
        "",
        "com.example.app:/callback",
        "ftp://app.example.com/callback",
        // User info in a redirect URI.
        "https://user:pass@app.example.com/callback",
    ] {
        let mut body = public_metadata();
        body["redirect_uris"] = json!([REDIRECT, uri]);
        let resp = post_register(&s, &body).await;
        assert_oauth_error(&resp, 400, "invalid_redirect_uri");
    }
    // No redirect URI at all for the code grant.
    let mut body = public_metadata();
    body["redirect_uris"] = json!([]);
    assert_oauth_error(&post_register(&s, &body).await, 400, "invalid_redirect_uri");
    body.as_object_mut().unwrap().remove("redirect_uris");
    assert_oauth_error(&post_register(&s, &body).await, 400, "invalid_redirect_uri");
    assert_no_dynamic_clients(&s).await;

    // What is allowed: https anywhere, http on every loopback form.
    for uri in [
        "https://app.example.com/cb",
        "http://localhost/cb",
        "http://127.0.0.1:9/cb",
        "http://[::1]:8080/cb",
    ] {
        let mut body = public_metadata();
        body["redirect_uris"] = json!([uri]);
        let (status, resp, _) = post_register(&s, &body).await;
        assert_eq!(status, 201, "{uri}: {resp}");
        assert_eq!(resp["redirect_uris"], json!([uri]));
    }
    s.stop().await;
}

#[tokio::test]
async fn unsupported_auth_methods_are_invalid_client_metadata() {
    let s = TestServer::start().await;
    for method in [
        "private_key_jwt",
        "client_secret_jwt",
        "tls_client_auth",
        "self_signed_tls_client_auth",
        "NONE",
        "",
    ] {
        let mut body = public_metadata();
        body["token_endpoint_auth_method"] = json!(method);
        let resp = post_register(&s, &body).await;
        assert_oauth_error(&resp, 400, "invalid_client_metadata");
    }
    assert_no_dynamic_clients(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn unsupported_grant_and_response_types_are_refused() {
    let s = TestServer::start().await;
    let cases = [
        // client_credentials needs a confidential client.
        json!({"grant_types": ["client_credentials"], "response_types": [], "token_endpoint_auth_method": "none"}),
        json!({"redirect_uris": [REDIRECT], "grant_types": ["authorization_code", "client_credentials"], "token_endpoint_auth_method": "none"}),
        // Grants OAuth 2.1 removed, or that this server does not offer.
        json!({"redirect_uris": [REDIRECT], "grant_types": ["implicit"], "token_endpoint_auth_method": "none"}),
        json!({"redirect_uris": [REDIRECT], "grant_types": ["password"], "token_endpoint_auth_method": "none"}),
        json!({"redirect_uris": [REDIRECT], "grant_types": [], "token_endpoint_auth_method": "none"}),
        json!({"redirect_uris": [REDIRECT], "response_types": ["token"], "token_endpoint_auth_method": "none"}),
        json!({"redirect_uris": [REDIRECT], "response_types": ["code", "id_token"], "token_endpoint_auth_method": "none"}),
        // authorization_code and code go together.
        json!({"redirect_uris": [REDIRECT], "grant_types": ["authorization_code"], "response_types": [], "token_endpoint_auth_method": "none"}),
        // Not JSON object metadata / wrong member types.
        json!(["redirect_uris"]),
        json!({"redirect_uris": REDIRECT, "token_endpoint_auth_method": "none"}),
        json!({"redirect_uris": [REDIRECT], "client_name": "bad\u{0007}name", "token_endpoint_auth_method": "none"}),
        json!({"redirect_uris": [REDIRECT], "client_name": "n".repeat(201), "token_endpoint_auth_method": "none"}),
        json!({"redirect_uris": [REDIRECT], "logo_uri": "javascript:alert(1)", "token_endpoint_auth_method": "none"}),
    ];
    for body in cases {
        let resp = post_register(&s, &body).await;
        assert_oauth_error(&resp, 400, "invalid_client_metadata");
    }
    // A body that is not JSON at all.
    let r = s
        .http
        .post(s.url("/register"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body: Value = r.json().await.unwrap();
    assert_oauth_error(&(status, body, headers), 400, "invalid_client_metadata");
    assert_no_dynamic_clients(&s).await;

    // A confidential client may use client_credentials (no redirect URIs needed) when it
    // registers with an initial access token (registration_policy.rs).
    let (id, secret) = s.confidential_client(&["client_credentials"]).await;
    assert!(!id.is_empty() && !secret.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn registered_scope_must_be_supported() {
    let s = TestServer::start().await;
    for scope in [
        "mcp:tools.read not:a-scope",
        "admin",
        "mcp:tools.read \"quoted\"",
    ] {
        let mut body = public_metadata();
        body["scope"] = json!(scope);
        assert_oauth_error(
            &post_register(&s, &body).await,
            400,
            "invalid_client_metadata",
        );
    }
    assert_no_dynamic_clients(&s).await;

    // Supported scopes are kept; offline_access (an SDK habit) is tolerated and dropped.
    let mut body = public_metadata();
    body["scope"] = json!("mcp:tools.read offline_access");
    let (status, resp, _) = post_register(&s, &body).await;
    assert_eq!(status, 201, "{resp}");
    assert_eq!(resp["scope"], "mcp:tools.read");
    let id = resp["client_id"].as_str().unwrap().to_owned();
    // The registered scope is where a dynamically registered client starts, not a ceiling on
    // what the user may grant it: MCP clients register with the first challenge's scope and step
    // up later (MCP 2025-11-25 scope selection and step-up).
    let mut params = standard_authorize(&id);
    params.push(("scope", "mcp:tools.read mcp:tools.write"));
    let r = s.authorize(&params).await;
    assert_eq!(r.status().as_u16(), 302);
    let q = redirect_query(&r);
    assert!(q.contains_key("code"), "{q:?}");
    // Still only scopes of the resource.
    let mut params = standard_authorize(&id);
    params.push(("scope", "mcp:tools.read api:read"));
    let r = s.authorize(&params).await;
    assert_eq!(redirect_query(&r)["error"], "invalid_scope");
    s.stop().await;
}

#[tokio::test]
async fn registered_scope_is_a_ceiling_without_a_user() {
    let s = TestServer::start().await;
    let body = json!({
        "client_name": "machine",
        "grant_types": ["client_credentials"],
        "redirect_uris": [],
        "response_types": [],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": "mcp:tools.read",
    });
    // A machine client: registered with the operator's initial access token.
    let (status, resp) = s.register_with(body, Some(INITIAL_ACCESS_TOKEN)).await;
    assert_eq!(status, 201, "{resp}");
    let id = resp["client_id"].as_str().unwrap().to_owned();
    let secret = resp["client_secret"].as_str().unwrap().to_owned();
    let basic = |scope: &'static str| {
        let http = s.http.clone();
        let (id, secret, url) = (id.clone(), secret.clone(), s.url("/token"));
        async move {
            http.post(url)
                .basic_auth(id, Some(secret))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("resource", RESOURCE),
                    ("scope", scope),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let ok = basic("mcp:tools.read").await;
    assert_eq!(ok.status().as_u16(), 200);
    let wider = basic("mcp:tools.read mcp:tools.write").await;
    assert_eq!(wider.status().as_u16(), 400);
    let err: Value = wider.json().await.unwrap();
    assert_eq!(err["error"], "invalid_scope");
    s.stop().await;
}

// --- registration policy --------------------------------------------------------------------------

#[tokio::test]
async fn closed_registration_is_403() {
    let s = TestServer::start_with(Options {
        env: vec![("MCPAUTH__REGISTRATION__OPEN", "false".into())],
        ..Options::default()
    })
    .await;
    let resp = post_register(&s, &public_metadata()).await;
    assert_oauth_error(&resp, 403, "access_denied");
    assert!(resp.1["error_description"].is_string());
    assert_no_dynamic_clients(&s).await;
    // Pre-registered clients keep working.
    let meta: Value = s
        .http
        .get(s.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], s.issuer());
    s.stop().await;
}

#[tokio::test]
async fn allowed_redirect_hosts_are_enforced() {
    let s = TestServer::start_with(Options {
        toml: "[registration]\nallowed_redirect_hosts = [\"app.example.com\"]\n".into(),
        ..Options::default()
    })
    .await;
    for uri in [
        "https://evil.example/cb",
        "https://app.example.com.evil.example/cb",
        "https://sub.app.example.com/cb",
        "https://example.com/cb",
    ] {
        let mut body = public_metadata();
        body["redirect_uris"] = json!([uri]);
        assert_oauth_error(&post_register(&s, &body).await, 400, "invalid_redirect_uri");
    }
    assert_no_dynamic_clients(&s).await;
    // The listed host, in any case, and loopback redirects (native apps) are accepted.
    for uri in [
        "https://app.example.com/cb",
        "https://APP.example.com/other",
        REDIRECT,
    ] {
        let mut body = public_metadata();
        body["redirect_uris"] = json!([uri]);
        let (status, resp, _) = post_register(&s, &body).await;
        assert_eq!(status, 201, "{uri}: {resp}");
    }
    // The policy also applies when a client updates its metadata (RFC 7592).
    let (id, token) = register_managed(&s).await;
    let mut update = public_metadata();
    update["client_id"] = json!(id);
    update["redirect_uris"] = json!(["https://evil.example/cb"]);
    let r = s
        .http
        .put(s.url(&format!("/register/{id}")))
        .bearer_auth(&token)
        .json(&update)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    assert_oauth_error(
        &(status, r.json().await.unwrap(), headers),
        400,
        "invalid_redirect_uri",
    );
    s.stop().await;
}

#[tokio::test]
async fn max_clients_cap_is_enforced() {
    let s = TestServer::start_with(Options {
        env: vec![("MCPAUTH__REGISTRATION__MAX_CLIENTS", "2".into())],
        ..Options::default()
    })
    .await;
    // The pre-registered static client does not count.
    for _ in 0..2 {
        let (status, body, _) = post_register(&s, &public_metadata()).await;
        assert_eq!(status, 201, "{body}");
    }
    let resp = post_register(&s, &public_metadata()).await;
    assert_oauth_error(&resp, 403, "access_denied");
    assert_eq!(dynamic_client_count(&s).await, 2);
    s.stop().await;
}

// --- RFC 7592 -----------------------------------------------------------------------------------

#[tokio::test]
async fn management_read_requires_the_registration_access_token() {
    let s = TestServer::start().await;
    let (id, token) = register_managed(&s).await;
    let (other_id, other_token) = register_managed(&s).await;
    let url = s.url(&format!("/register/{id}"));

    let r = s.http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["client_id"], id.as_str());
    assert_eq!(body["redirect_uris"], json!([REDIRECT]));
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert!(body["client_id_issued_at"].is_i64());
    assert!(body.get("client_secret").is_none(), "{body}");
    assert_eq!(body["registration_client_uri"], url.as_str());

    // RFC 7592 §2: errors as in RFC 6750, whose §3 requires a Bearer challenge on 401, with
    // `error="invalid_token"` for a bad token and no error code when there was no token.
    let denied = |r: reqwest::Response, had_token: bool| async move {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let challenge = headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let c = challenge
            .as_deref()
            .unwrap_or_else(|| panic!("401 without WWW-Authenticate"));
        assert!(c.starts_with("Bearer"), "{c}");
        assert_eq!(c.contains("error=\"invalid_token\""), had_token, "{c}");
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_oauth_error(&(status, body, headers), 401, "invalid_token");
    };
    // Missing, malformed, forged, another client's, another scheme.
    denied(s.http.get(&url).send().await.unwrap(), false).await;
    denied(
        s.http
            .get(&url)
            .bearer_auth("garbage")
            .send()
            .await
            .unwrap(),
        true,
    )
    .await;
    denied(
        s.http
            .get(&url)
            .bearer_auth(mangle(&token))
            .send()
            .await
            .unwrap(),
        true,
    )
    .await;
    denied(
        s.http
            .get(&url)
            .bearer_auth(&other_token)
            .send()
            .await
            .unwrap(),
        true,
    )
    .await;
    denied(
        s.http
            .get(&url)
            .basic_auth(&id, Some(&token))
            .send()
            .await
            .unwrap(),
        false,
    )
    .await;
    // The right token on another client's path.
    denied(
        s.http
            .get(s.url(&format!("/register/{other_id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
        true,
    )
    .await;
    // An unknown client id answers like a bad token (no enumeration).
    denied(
        s.http
            .get(s.url("/register/mcpc_unknown"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
        true,
    )
    .await;
    // PUT and DELETE are protected the same way.
    denied(
        s.http
            .put(&url)
            .json(&public_metadata())
            .send()
            .await
            .unwrap(),
        false,
    )
    .await;
    denied(
        s.http
            .delete(&url)
            .bearer_auth(&other_token)
            .send()
            .await
            .unwrap(),
        true,
    )
    .await;
    assert!(client_exists(&s, &id).await);
    s.stop().await;
}

#[tokio::test]
async fn management_update_replaces_metadata() {
    let s = TestServer::start().await;
    let (id, token) = register_managed(&s).await;
    let url = s.url(&format!("/register/{id}"));
    let put = |body: Value, token: String| {
        let r = s.http.put(&url).bearer_auth(token).json(&body).send();
        async move {
            let r = r.await.unwrap();
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            (
                status,
                r.json::<Value>().await.unwrap_or(Value::Null),
                headers,
            )
        }
    };
    let new_redirect = "http://127.0.0.1:4000/new-callback";
    let mut update = public_metadata();
    update["redirect_uris"] = json!([new_redirect]);
    update["client_name"] = json!("Renamed");

    // client_id must be in the body and equal to the path's (RFC 7592 §2.2).
    update["client_id"] = json!("mcpc_someone_else");
    assert_oauth_error(
        &put(update.clone(), token.clone()).await,
        400,
        "invalid_request",
    );
    update.as_object_mut().unwrap().remove("client_id");
    assert_oauth_error(
        &put(update.clone(), token.clone()).await,
        400,
        "invalid_request",
    );
    update["client_id"] = json!(id);
    // Without the token nothing changes.
    assert_oauth_error(
        &put(update.clone(), "garbage".into()).await,
        401,
        "invalid_token",
    );
    // Invalid metadata is refused like at registration.
    let mut bad = update.clone();
    bad["redirect_uris"] = json!(["http://evil.example/cb"]);
    assert_oauth_error(&put(bad, token.clone()).await, 400, "invalid_redirect_uri");
    let mut bad = update.clone();
    bad["token_endpoint_auth_method"] = json!("client_secret_basic");
    assert_oauth_error(
        &put(bad, token.clone()).await,
        400,
        "invalid_client_metadata",
    );
    let uris: Vec<String> =
        sqlx::query_scalar("SELECT redirect_uris FROM clients WHERE client_id = $1")
            .bind(&id)
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(
        uris,
        vec![REDIRECT.to_owned()],
        "refused updates changed nothing"
    );

    let (status, body, headers) = put(update, token.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["client_id"], id.as_str());
    assert_eq!(body["redirect_uris"], json!([new_redirect]));
    assert_eq!(body["client_name"], "Renamed");
    let (name, uris): (String, Vec<String>) =
        sqlx::query_as("SELECT client_name, redirect_uris FROM clients WHERE client_id = $1")
            .bind(&id)
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(
        (name.as_str(), uris),
        ("Renamed", vec![new_redirect.to_owned()])
    );

    // /authorize sees the change at once: the old redirect URI is no longer registered.
    let r = s.authorize(&standard_authorize(&id)).await;
    assert_error_page(r).await;
    let mut params = standard_authorize(&id);
    params.retain(|(k, _)| *k != "redirect_uri");
    params.push(("redirect_uri", new_redirect));
    let r = s.authorize(&params).await;
    assert_eq!(r.status().as_u16(), 302);
    assert!(
        location(&r)
            .unwrap()
            .starts_with(&format!("{new_redirect}?"))
    );
    // Every use rotates the registration access token (RFC 7592 §3: each response carries
    // one; only its hash is stored): the old one is dead, the returned one works.
    let next = body["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(next, token);
    let r = s.http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = s.http.get(&url).bearer_auth(&next).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let after_read: Value = r.json().await.unwrap();
    let third = after_read["registration_access_token"].as_str().unwrap();
    let (stored,): (Vec<u8>,) =
        sqlx::query_as("SELECT registration_token_sha256 FROM clients WHERE client_id = $1")
            .bind(&id)
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(stored, auth_service::domain::token::hash(third));
    assert_audited(&s, "client.updated", &id).await;
    s.stop().await;
}

#[tokio::test]
async fn management_delete_removes_the_client_and_its_tokens() {
    let s = TestServer::start().await;
    let (id, token) = register_managed(&s).await;
    let tokens = tokens_for(&s, &id).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    s.assert_active(&access).await;
    let url = s.url(&format!("/register/{id}"));

    // Without the right token nothing is deleted.
    let r = s.http.delete(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = s
        .http
        .delete(&url)
        .bearer_auth(mangle(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(client_exists(&s, &id).await);

    let r = s
        .http
        .delete(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert!(r.bytes().await.unwrap().is_empty());

    // Every token issued to the client is dead, at once.
    s.assert_inactive(&access).await;
    s.assert_inactive(&refresh).await;
    let (status, body, _) = s.refresh(&id, &refresh, &[]).await;
    assert!(
        body.get("access_token").is_none() && (400..500).contains(&status),
        "{status} {body}"
    );
    // The client is unknown to /authorize: an error page, no redirect.
    let page = assert_error_page(s.authorize(&standard_authorize(&id)).await).await;
    assert!(page.contains("invalid_client"), "{page}");
    // And to RFC 7592.
    assert_eq!(
        s.http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        s.http
            .delete(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );

    assert!(!client_exists(&s, &id).await);
    let grants: i64 = sqlx::query_scalar("SELECT count(*) FROM grants WHERE client_id = $1")
        .bind(&id)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(grants, 0);
    assert_audited(&s, "client.deleted", &id).await;
    s.stop().await;
}

// --- the unused-client sweeper -----------------------------------------------------------------

#[tokio::test]
async fn sweeper_removes_never_used_dynamic_clients_only() {
    let s = TestServer::start_with(Options {
        env: vec![(
            "MCPAUTH__REGISTRATION__UNUSED_CLIENT_TTL_SECS",
            "3600".into(),
        )],
        ..Options::default()
    })
    .await;
    let state = &s.running.as_ref().unwrap().state;
    let unused = s.public_client().await;
    let used = s.public_client().await;
    let fresh = s.public_client().await;
    let stale = s.public_client().await;
    // `used` redeems a code; the use is recorded (normally every 30 s, here at once).
    tokens_for(&s, &used).await;
    state.clients.flush_used().await.unwrap();
    // An old authorization without a token does not count as use: only token issuance does.
    s.code_for(&unused, None).await;
    // Two hours old, against a one-hour TTL. The static client is just as old.
    sqlx::query("UPDATE clients SET created_at = now() - interval '2 hours' WHERE client_id = ANY($1) OR source = 'static'")
        .bind(vec![unused.clone(), used.clone(), stale.clone()])
        .execute(&s.pool)
        .await
        .unwrap();
    // `stale` was used, but longer ago than the TTL ("never used within", defaults.toml).
    sqlx::query(
        "UPDATE clients SET last_used_at = now() - interval '90 minutes' WHERE client_id = $1",
    )
    .bind(&stale)
    .execute(&s.pool)
    .await
    .unwrap();

    auth_service::background::sweep_once(state).await;

    assert!(
        !client_exists(&s, &unused).await,
        "a never-used dynamic client past the TTL is removed"
    );
    assert!(client_exists(&s, &used).await, "a used client stays");
    assert!(
        !client_exists(&s, &stale).await,
        "a client unused for longer than the TTL is removed"
    );
    assert!(
        client_exists(&s, &fresh).await,
        "a client younger than the TTL stays"
    );
    assert!(
        client_exists(&s, STATIC_CLIENT).await,
        "pre-registered clients are never swept"
    );
    // The removed client is gone from /authorize too (the cache was invalidated).
    assert_error_page(s.authorize(&standard_authorize(&unused)).await).await;
    assert_eq!(
        s.authorize(&standard_authorize(&used))
            .await
            .status()
            .as_u16(),
        302
    );
    s.stop().await;
}

#[tokio::test]
async fn sweeper_is_off_when_ttl_is_zero() {
    let s = TestServer::start_with(Options {
        env: vec![("MCPAUTH__REGISTRATION__UNUSED_CLIENT_TTL_SECS", "0".into())],
        ..Options::default()
    })
    .await;
    let client = s.public_client().await;
    sqlx::query("UPDATE clients SET created_at = now() - interval '400 days' WHERE client_id = $1")
        .bind(&client)
        .execute(&s.pool)
        .await
        .unwrap();
    auth_service::background::sweep_once(&s.running.as_ref().unwrap().state).await;
    assert!(client_exists(&s, &client).await);
    s.stop().await;
}

#[tokio::test]
async fn max_clients_cap_holds_under_concurrent_registrations() {
    let s = TestServer::start_with(Options {
        env: vec![("MCPAUTH__REGISTRATION__MAX_CLIENTS", "3".into())],
        ..Options::default()
    })
    .await;
    let body = public_metadata();
    let attempts = (0..12).map(|_| post_register(&s, &body));
    let results = futures_util::future::join_all(attempts).await;
    let created = results
        .iter()
        .filter(|(status, _, _)| *status == 201)
        .count();
    for r in results.iter().filter(|(status, _, _)| *status != 201) {
        assert_oauth_error(r, 403, "access_denied");
    }
    assert_eq!(
        dynamic_client_count(&s).await,
        3,
        "the cap must hold when registrations race"
    );
    assert_eq!(created, 3);
    s.stop().await;
}

#[tokio::test]
async fn management_update_cannot_replace_the_client_secret() {
    // RFC 7592 §2.2: a client_secret in the update must match; the client cannot choose its own.
    let s = TestServer::start().await;
    let (status, reg, _) = post_register(
        &s,
        &json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_post"}),
    )
    .await;
    assert_eq!(status, 201, "{reg}");
    let id = reg["client_id"].as_str().unwrap().to_owned();
    let secret = reg["client_secret"].as_str().unwrap().to_owned();
    let token = reg["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = s.url(&format!("/register/{id}"));
    let update = json!({
        "client_id": id,
        "client_secret": "mcpcs_k1_chosen-by-the-client",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "client_secret_post",
        "client_name": "Changed",
    });
    let r = s
        .http
        .put(&url)
        .bearer_auth(&token)
        .json(&update)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    assert_oauth_error(
        &(status, r.json().await.unwrap(), headers),
        400,
        "invalid_request",
    );
    let mut update = update;
    update["client_secret"] = json!(secret);
    let r = s
        .http
        .put(&url)
        .bearer_auth(&token)
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let stored: String =
        sqlx::query_scalar("SELECT encode(secret_sha256, 'hex') FROM clients WHERE client_id = $1")
            .bind(&id)
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(stored, sha256_hex(&secret), "the secret is unchanged");
    s.stop().await;
}

/// Polls `check` for up to 3 s (replica fan-out goes through Redis pub/sub).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn management_changes_reach_every_replica() {
    let s = TestServer::start().await;
    let s2 = TestServer::start_on(s.shared_db(), s.prefix.clone(), Options::default()).await;
    let (id, token) = register_managed(&s).await;
    // Replica 2 caches the client and issues tokens to it.
    let tokens = tokens_for(&s2, &id).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    // An update on replica 1: replica 2 stops accepting the removed redirect URI.
    let new_redirect = "http://127.0.0.1:4000/cb";
    let mut update = public_metadata();
    update["client_id"] = json!(id);
    update["redirect_uris"] = json!([new_redirect]);
    let r = s
        .http
        .put(s.url(&format!("/register/{id}")))
        .bearer_auth(&token)
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The registration access token rotates on every use.
    let updated: Value = r.json().await.unwrap();
    let token = updated["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(
        "replica 2 still accepts the removed redirect URI",
        || async {
            s2.authorize(&standard_authorize(&id))
                .await
                .status()
                .as_u16()
                == 400
        },
    )
    .await;

    // A deletion on replica 1: replica 2 forgets the client and denies its tokens.
    let r = s
        .http
        .delete(s.url(&format!("/register/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let mut params = standard_authorize(&id);
    params.retain(|(k, _)| *k != "redirect_uri");
    params.push(("redirect_uri", new_redirect));
    eventually("replica 2 still knows the deleted client", || async {
        s2.authorize(&params).await.status().as_u16() == 400
    })
    .await;
    assert_error_page(s2.authorize(&params).await).await;
    eventually(
        "replica 2 still accepts the deleted client's token",
        || async { !s2.grpc_introspect(&access, "").await.active },
    )
    .await;
    s2.assert_inactive(&access).await;
    s2.stop_keep_db().await;
    s.stop().await;
}
