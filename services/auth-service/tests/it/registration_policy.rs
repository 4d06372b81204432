//! What an anonymous registration may ask for (RFC 7591 §3 initial access tokens), and the
//! bounds on every client-supplied value that is stored.

use serde_json::{Value, json};

use crate::harness::*;

fn machine_metadata() -> Value {
    json!({
        "client_name": "machine",
        "grant_types": ["client_credentials"],
        "response_types": [],
        "token_endpoint_auth_method": "client_secret_basic",
    })
}

fn public_metadata() -> Value {
    json!({
        "client_name": "policy test client",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
}

async fn register_raw(
    s: &TestServer,
    body: &Value,
    authorization: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = s.http.post(s.url("/register")).json(body);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, r.json().await.unwrap_or(Value::Null), headers)
}

async fn dynamic_clients(s: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM clients WHERE source = 'dynamic'")
        .fetch_one(&s.pool)
        .await
        .unwrap()
}

async fn client_credentials_token(s: &TestServer, id: &str, secret: &str) -> (u16, Value) {
    let (status, body, _) = s
        .token_basic(
            id,
            secret,
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
        )
        .await;
    (status, body)
}

#[tokio::test]
async fn open_registration_cannot_obtain_machine_tokens() {
    // The attack: register anonymously for client_credentials, then take a token for every
    // resource with no user involved.
    let s = TestServer::start().await;
    let mut with_code = machine_metadata();
    with_code["grant_types"] = json!(["authorization_code", "client_credentials"]);
    with_code["response_types"] = json!(["code"]);
    with_code["redirect_uris"] = json!([REDIRECT]);
    for body in [machine_metadata(), with_code] {
        let (status, resp, _) = register_raw(&s, &body, None).await;
        if status == 201 {
            // What the old server did: the token below is the damage.
            let (st, tok) = client_credentials_token(
                &s,
                resp["client_id"].as_str().unwrap(),
                resp["client_secret"].as_str().unwrap(),
            )
            .await;
            panic!("open registration for client_credentials accepted; token request: {st} {tok}");
        }
        assert_eq!(status, 400, "{resp}");
        assert_eq!(resp["error"], "invalid_client_metadata", "{resp}");
        assert!(
            resp["error_description"]
                .as_str()
                .unwrap()
                .contains("initial access token"),
            "{resp}"
        );
    }
    assert_eq!(dynamic_clients(&s).await, 0);
    s.stop().await;
}

#[tokio::test]
async fn an_initial_access_token_unlocks_client_credentials() {
    let s = TestServer::start().await;
    let bearer = format!("Bearer {INITIAL_ACCESS_TOKEN}");
    let (status, resp, _) = register_raw(&s, &machine_metadata(), Some(&bearer)).await;
    assert_eq!(status, 201, "{resp}");
    assert_eq!(resp["grant_types"], json!(["client_credentials"]));
    let id = resp["client_id"].as_str().unwrap().to_owned();
    let (st, tok) =
        client_credentials_token(&s, &id, resp["client_secret"].as_str().unwrap()).await;
    assert_eq!(st, 200, "{tok}");
    let audited = s.audit_events("client.registered", 1).await;
    let row = audited
        .iter()
        .find(|r| r.client_id.as_deref() == Some(id.as_str()))
        .expect("registration audited");
    assert_eq!(row.detail["initial_access_token"], true, "{:?}", row.detail);

    // A wrong or malformed token is a 401 (RFC 6750), never a silent open registration.
    for auth in [
        "Bearer not-the-initial-access-token".to_owned(),
        format!("Bearer {INITIAL_ACCESS_TOKEN}x"),
        format!("Basic {INITIAL_ACCESS_TOKEN}"),
        "Bearer".to_owned(),
    ] {
        for body in [machine_metadata(), public_metadata()] {
            let (status, resp, headers) = register_raw(&s, &body, Some(&auth)).await;
            assert_eq!(status, 401, "{auth}: {resp}");
            assert_eq!(resp["error"], "invalid_token", "{resp}");
            assert!(
                headers["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer"),
                "{headers:?}"
            );
        }
    }
    assert_eq!(dynamic_clients(&s).await, 1);
    s.stop().await;
}

#[tokio::test]
async fn closed_registration_still_accepts_an_initial_access_token() {
    let s = TestServer::start_with(Options {
        env: vec![("MCPAUTH__REGISTRATION__OPEN", "false".into())],
        ..Options::default()
    })
    .await;
    let (status, resp, _) = register_raw(&s, &public_metadata(), None).await;
    assert_eq!(
        (status, &resp["error"]),
        (403, &json!("access_denied")),
        "{resp}"
    );
    let bearer = format!("Bearer {INITIAL_ACCESS_TOKEN}");
    for body in [public_metadata(), machine_metadata()] {
        let (status, resp, _) = register_raw(&s, &body, Some(&bearer)).await;
        assert_eq!(status, 201, "{resp}");
    }
    s.stop().await;
}

#[tokio::test]
async fn open_registration_scope_stays_within_the_default_scopes() {
    let s = TestServer::start().await;
    let mut body = public_metadata();
    body["scope"] = json!("mcp:tools.read mcp:tools.write mcp:admin");
    let (status, resp, _) = register_raw(&s, &body, None).await;
    assert_eq!(status, 201, "{resp}");
    assert_eq!(resp["scope"], "mcp:tools.read", "RFC 7591 §3.2.1: replaced");
    body["scope"] = json!("mcp:admin");
    let (status, resp, _) = register_raw(&s, &body, None).await;
    assert_eq!(status, 201, "{resp}");
    assert!(resp.get("scope").is_none(), "{resp}");
    // With the operator's token, any configured scope.
    let mut machine = machine_metadata();
    machine["scope"] = json!("mcp:tools.read mcp:admin");
    let (status, resp, _) = register_raw(
        &s,
        &machine,
        Some(&format!("Bearer {INITIAL_ACCESS_TOKEN}")),
    )
    .await;
    assert_eq!(status, 201, "{resp}");
    assert_eq!(resp["scope"], "mcp:admin mcp:tools.read");
    s.stop().await;
}

#[tokio::test]
async fn updates_keep_but_never_widen_what_a_registration_was_allowed() {
    let s = TestServer::start().await;
    let put = |id: String, token: String, body: Value| {
        let s = &s;
        async move {
            let r = s
                .http
                .put(s.url(&format!("/register/{id}")))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // An open registration cannot become a machine client through RFC 7592.
    let mut open = public_metadata();
    open["token_endpoint_auth_method"] = json!("client_secret_basic");
    let (_, reg, _) = register_raw(&s, &open, None).await;
    let id = reg["client_id"].as_str().unwrap().to_owned();
    let mut widened = open.clone();
    widened["client_id"] = json!(id);
    widened["grant_types"] = json!(["authorization_code", "refresh_token", "client_credentials"]);
    let (status, resp) = put(
        id.clone(),
        reg["registration_access_token"].as_str().unwrap().into(),
        widened,
    )
    .await;
    assert_eq!(
        (status, &resp["error"]),
        (400, &json!("invalid_client_metadata")),
        "{resp}"
    );
    let (st, _) = client_credentials_token(&s, &id, reg["client_secret"].as_str().unwrap()).await;
    assert_ne!(st, 200);

    // A client registered with the operator's token keeps its grant through an update.
    let (_, reg, _) = register_raw(
        &s,
        &machine_metadata(),
        Some(&format!("Bearer {INITIAL_ACCESS_TOKEN}")),
    )
    .await;
    let id = reg["client_id"].as_str().unwrap().to_owned();
    let mut renamed = machine_metadata();
    renamed["client_id"] = json!(id);
    renamed["client_name"] = json!("machine, renamed");
    let (status, resp) = put(
        id.clone(),
        reg["registration_access_token"].as_str().unwrap().into(),
        renamed,
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    let (st, tok) = client_credentials_token(&s, &id, reg["client_secret"].as_str().unwrap()).await;
    assert_eq!(st, 200, "{tok}");
    s.stop().await;
}

#[tokio::test]
async fn stored_client_metadata_is_bounded() {
    let s = TestServer::start().await;
    let long = |n: usize| "a".repeat(n);
    let uri = |n: usize| format!("https://app.example.com/{}", "p".repeat(n - 24));
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "contacts",
            json!(
                (0..11)
                    .map(|i| format!("c{i}@example.com"))
                    .collect::<Vec<_>>()
            ),
            "invalid_client_metadata",
        ),
        (
            "contacts",
            json!([format!("{}@example.com", long(250))]),
            "invalid_client_metadata",
        ),
        ("software_id", json!(long(201)), "invalid_client_metadata"),
        (
            "software_version",
            json!(long(201)),
            "invalid_client_metadata",
        ),
        ("client_uri", json!(uri(2049)), "invalid_client_metadata"),
        ("logo_uri", json!(uri(2049)), "invalid_client_metadata"),
        ("tos_uri", json!(uri(2049)), "invalid_client_metadata"),
        ("policy_uri", json!(uri(2049)), "invalid_client_metadata"),
        (
            "scope",
            json!(vec!["mcp:tools.read"; 80].join(" ")),
            "invalid_client_metadata",
        ),
        ("redirect_uris", json!([uri(2049)]), "invalid_redirect_uri"),
        (
            "grant_types",
            json!(vec!["authorization_code"; 11]),
            "invalid_client_metadata",
        ),
    ];
    for (field, value, error) in cases {
        let mut body = public_metadata();
        body[field] = value;
        let (status, resp, _) = register_raw(&s, &body, None).await;
        assert_eq!(
            (status, resp["error"].as_str()),
            (400, Some(error)),
            "{field}: {resp}"
        );
    }
    assert_eq!(dynamic_clients(&s).await, 0);
    // At the bounds: accepted and echoed.
    let mut body = public_metadata();
    body["contacts"] = json!(
        (0..10)
            .map(|i| format!("c{i}@example.com"))
            .collect::<Vec<_>>()
    );
    body["software_id"] = json!(long(200));
    body["software_version"] = json!(long(200));
    body["client_uri"] = json!(uri(2048));
    body["redirect_uris"] = json!([uri(2048)]);
    let (status, resp, _) = register_raw(&s, &body, None).await;
    assert_eq!(status, 201, "{resp}");
    assert_eq!(resp["contacts"].as_array().unwrap().len(), 10);
    assert_eq!(resp["software_id"], long(200));
    s.stop().await;
}
