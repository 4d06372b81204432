use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn metadata_and_code_flow() {
    let s = TestServer::start().await;
    let meta: serde_json::Value = s
        .http
        .get(s.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], s.issuer());
    assert_eq!(meta["issuer"].as_str().unwrap(), s.base);
    let (_client, tokens) = s.login(None).await;
    assert_eq!(tokens["token_type"], "Bearer");
    let intro = s.introspect(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(intro["active"], true);
    assert_eq!(intro["aud"], RESOURCE);
    let g = s
        .grpc_introspect(tokens["access_token"].as_str().unwrap(), RESOURCE)
        .await;
    assert!(g.active);
    s.stop().await;
}

/// An issuer with a path (`http://host/auth`, an auth-service behind a path-routing proxy): the
/// metadata is at the path-inserted well-known URL (RFC 8414 §3.1) with every endpoint under the
/// path, and a whole code flow works through those URLs as published.
#[tokio::test]
async fn an_issuer_with_a_path_publishes_and_serves_everything_under_it() {
    let s = TestServer::start_with(Options {
        env: vec![("MCPAUTH__ISSUER", "http://127.0.0.1:{port}/auth".into())],
        ..Options::default()
    })
    .await;
    let issuer = s.issuer();
    assert!(issuer.ends_with("/auth"), "{issuer}");
    let meta: Value = s
        .http
        .get(s.url("/.well-known/oauth-authorization-server/auth"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], issuer.as_str());
    for (k, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("registration_endpoint", "/register"),
        ("revocation_endpoint", "/revoke"),
        ("introspection_endpoint", "/introspect"),
    ] {
        assert_eq!(meta[k], format!("{issuer}{path}"), "{k}");
    }
    // Another path under the well-known prefix is not this issuer's metadata.
    let other = s
        .http
        .get(s.url("/.well-known/oauth-authorization-server/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);

    // A code flow through the published URLs.
    let (status, reg) = {
        let r = s
            .http
            .post(meta["registration_endpoint"].as_str().unwrap())
            .json(
                &json!({"client_name": "path test", "redirect_uris": [REDIRECT],
                          "token_endpoint_auth_method": "none"}),
            )
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 201, "{reg}");
    let client = reg["client_id"].as_str().unwrap();
    let r = s
        .http
        .get(meta["authorization_endpoint"].as_str().unwrap())
        .query(&[
            ("response_type", "code"),
            ("client_id", client),
            ("redirect_uri", REDIRECT),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("state", "st"),
            ("resource", RESOURCE),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let q = redirect_query(&r);
    assert_eq!(q["iss"], issuer);
    let r = s
        .http
        .post(meta["token_endpoint"].as_str().unwrap())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", q["code"].as_str()),
            ("code_verifier", VERIFIER),
            ("client_id", client),
            ("redirect_uri", REDIRECT),
            ("resource", RESOURCE),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        s.introspect(body["access_token"].as_str().unwrap()).await["iss"],
        issuer.as_str()
    );
    s.stop().await;
}
