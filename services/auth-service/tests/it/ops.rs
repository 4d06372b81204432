//! Operability: liveness, readiness, metrics, authorization server metadata, and token key
//! rotation across a restart.

use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn liveness_readiness_and_metrics() {
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");

    let r = s.http.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"postgres": "ok", "redis": "ok"})
    );

    let (status, body, _) = s
        .token_basic(
            STATIC_CLIENT,
            STATIC_SECRET,
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    for needle in [
        "mcpauth_http_requests_total",
        r#"route="/healthz""#,
        "mcpauth_http_request_duration_seconds",
        "mcpauth_tokens_issued_total",
        r#"grant_type="client_credentials""#,
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics");
    }
    assert!(!text.contains(body["access_token"].as_str().unwrap()));
    s.stop().await;
}

#[tokio::test]
async fn readiness_fails_while_redis_is_unreachable() {
    let s = TestServer::start_with(Options {
        // A closed port: connections are refused at once.
        env: vec![("MCPAUTH__REDIS__URL", "redis://127.0.0.1:1".into())],
        ..Default::default()
    })
    .await;
    let r = s.http.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"postgres": "ok", "redis": "unavailable"})
    );
    // Alive all the same: the orchestrator must not restart it for a dependency's outage.
    assert_eq!(
        s.http
            .get(s.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    s.stop().await;
}

#[tokio::test]
async fn authorization_server_metadata() {
    let s = TestServer::start().await;
    let r = s
        .http
        .get(s.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let m: Value = r.json().await.unwrap();
    let base = s.base.as_str();
    // Byte-identical to the address clients use (RFC 8414 §3.3): no trailing slash.
    assert_eq!(m["issuer"].as_str(), Some(base));
    assert_eq!(s.issuer(), base);
    assert_eq!(m["authorization_endpoint"], format!("{base}/authorize"));
    assert_eq!(m["token_endpoint"], format!("{base}/token"));
    assert_eq!(m["registration_endpoint"], format!("{base}/register"));
    assert_eq!(m["revocation_endpoint"], format!("{base}/revoke"));
    assert_eq!(m["introspection_endpoint"], format!("{base}/introspect"));
    let list = |k: &str| -> Vec<String> {
        m[k].as_array()
            .unwrap_or_else(|| panic!("{k} is an array"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(list("response_types_supported").contains(&"code".to_owned()));
    assert_eq!(
        list("code_challenge_methods_supported"),
        vec!["S256".to_owned()]
    );
    let methods = list("token_endpoint_auth_methods_supported");
    for method in ["none", "client_secret_basic", "client_secret_post"] {
        assert!(
            methods.contains(&method.to_owned()),
            "{method} in {methods:?}"
        );
    }
    let grants = list("grant_types_supported");
    for grant in ["authorization_code", "refresh_token", "client_credentials"] {
        assert!(grants.contains(&grant.to_owned()), "{grant} in {grants:?}");
    }
    let scopes = list("scopes_supported");
    assert!(
        scopes.contains(&"mcp:tools.read".to_owned()) && scopes.contains(&"api:read".to_owned()),
        "{scopes:?}"
    );
    assert!(
        !scopes.contains(&"offline_access".to_owned()),
        "the SDKs would add prompt=consent"
    );
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    assert_eq!(m["client_id_metadata_document_supported"], true);

    // Only RFC 8414 is served: no ID tokens, so no truthful OpenID discovery document
    // (docs/tokens.md "OpenID discovery: not served, on purpose"). Neither form of the path.
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/openid-configuration/",
    ] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
    }
    assert!(
        !m["response_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().contains("id_token")),
        "no ID tokens are issued"
    );
    s.stop().await;
}

#[tokio::test]
async fn key_rotation_keeps_every_issued_token_working() {
    let s1 = TestServer::start().await;
    let (client, body) = s1.login(None).await;
    let at_old = body["access_token"].as_str().unwrap().to_owned();
    let rt_old = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(at_old.starts_with("mcpat_k1_") && rt_old.starts_with("mcprt_k1_"));
    let (_, body) = s1.login(None).await;
    let at_revoked = body["access_token"].as_str().unwrap().to_owned();
    let owner = s1.introspect(&at_revoked).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        s1.revoke_as(&owner, &at_revoked).await.status().as_u16(),
        200
    );
    let (status, body, _) = s1
        .token_basic(
            STATIC_CLIENT,
            STATIC_SECRET,
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let cc_old = body["access_token"].as_str().unwrap().to_owned();
    let prefix = s1.prefix.clone();
    let db = s1.stop_keep_db().await;

    // Restart with a second key, now the current one; k1 stays in the ring to open old tokens.
    let k2 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [9u8; 32]);
    let s2 = TestServer::start_on(
        db,
        prefix,
        Options {
            toml: format!("\n[[tokens.keys]]\nid = \"k2\"\nsecret = \"{k2}\"\n"),
            env: vec![("MCPAUTH__TOKENS__CURRENT_KEY", "k2".into())],
        },
    )
    .await;
    s2.assert_active(&at_old).await;
    s2.assert_active(&cc_old).await;
    s2.assert_active(&rt_old).await;
    // The deny list is rebuilt from Postgres at start: a revoked token stays revoked.
    s2.assert_inactive(&at_revoked).await;

    let (status, body, _) = s2.refresh(&client, &rt_old, &[]).await;
    assert_eq!(status, 200, "{body}");
    let at_new = body["access_token"].as_str().unwrap();
    let rt_new = body["refresh_token"].as_str().unwrap();
    assert!(at_new.starts_with("mcpat_k2_"), "{at_new}");
    assert!(rt_new.starts_with("mcprt_k2_"), "{rt_new}");
    s2.assert_active(at_new).await;
    s2.assert_active(rt_new).await;
    // The rotated family still detects reuse across the key change.
    let (status, body, _) = s2.refresh(&client, rt_new, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_oauth_error(
        &s2.refresh(&client, &rt_old, &[]).await,
        400,
        "invalid_grant",
    );
    s2.assert_inactive(at_new).await;

    // New flows run entirely on k2.
    let code = s2.code_for(&client, None).await;
    assert!(code.starts_with("mcpac_k2_"), "{code}");
    let (_, body) = s2.login(None).await;
    assert!(
        body["access_token"]
            .as_str()
            .unwrap()
            .starts_with("mcpat_k2_")
    );
    s2.stop().await;
}
