//! rmcp's own client, end to end against auth-service and mcp-service: the whole MCP
//! authorization flow a real client runs, driven headlessly (dev login, redirects followed by
//! hand).

use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{AuthClient, AuthorizationRequest, OAuthState};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::Value;

use crate::harness::*;

const CALLBACK: &str = "http://127.0.0.1:3999/callback";

/// The token response the client holds, as JSON (access_token, refresh_token, …).
async fn held_tokens(client: &AuthClient<reqwest::Client>) -> Value {
    let (_, tokens) = client
        .auth_manager
        .lock()
        .await
        .get_credentials()
        .await
        .unwrap();
    serde_json::to_value(tokens.expect("the client holds tokens")).unwrap()
}

async fn whoami(
    service: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
) -> Result<Value, rmcp::ServiceError> {
    let r = service
        .call_tool(CallToolRequestParams::new("whoami"))
        .await?;
    let text = r.content[0].as_text().unwrap().text.clone();
    Ok(serde_json::from_str(&text).unwrap())
}

#[tokio::test]
async fn the_rmcp_client_runs_the_whole_oauth_flow() {
    let s = Stack::start().await;
    let mcp_url = s.resource.clone();

    // 1. Unauthenticated probe → 401 with the RFC 9728 challenge.
    let r = s.post(None, initialize(), None).await;
    assert_eq!(r.status().as_u16(), 401);
    let challenge = www_authenticate(&r);
    assert!(challenge.contains("resource_metadata="), "{challenge}");

    // 2. Protected-resource metadata → AS metadata → dynamic registration → PKCE authorize URL.
    let mut oauth = OAuthState::new(mcp_url.as_str(), None).await.unwrap();
    oauth
        .start_authorization(
            AuthorizationRequest::new(CALLBACK)
                .with_client_name("rmcp it")
                .with_challenge(challenge),
        )
        .await
        .unwrap();
    let auth_url = oauth.get_authorization_url().await.unwrap();
    assert!(
        auth_url.starts_with(&format!("{}/authorize?", s.issuer)),
        "{auth_url}"
    );
    let u = url::Url::parse(&auth_url).unwrap();
    let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
    assert_eq!(q["resource"], mcp_url);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["scope"], "mcp:tools.read");

    // 3. The user agent: follow the authorization server's redirects (dev login) to the callback.
    let mut next = auth_url;
    let callback = loop {
        let resp = s.http.get(&next).send().await.unwrap();
        assert!(
            resp.status().is_redirection(),
            "{} at {next}",
            resp.status()
        );
        let loc = resp.headers()["location"].to_str().unwrap().to_owned();
        let loc = url::Url::parse(&next)
            .unwrap()
            .join(&loc)
            .unwrap()
            .to_string();
        if loc.starts_with(CALLBACK) {
            break loc;
        }
        next = loc;
    };

    // 4. Code → tokens (state and iss checked by the client).
    oauth.handle_callback_url(&callback).await.unwrap();
    let manager = oauth.into_authorization_manager().expect("authorized");
    let client = AuthClient::new(reqwest::Client::default(), manager);
    let first = held_tokens(&client).await;
    assert!(first["refresh_token"].is_string(), "{first}");

    // 5. MCP: initialize, tools/list, tools/call as the user.
    let transport = StreamableHttpClientTransport::with_client(
        client.clone(),
        StreamableHttpClientTransportConfig::with_uri(mcp_url.as_str()),
    );
    let service = ().serve(transport).await.unwrap();
    let tools = service.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "whoami"));
    let who = whoami(&service).await.unwrap();
    assert_eq!(who["scopes"], serde_json::json!(["mcp:tools.read"]));
    let subject = who["subject"].as_str().unwrap().to_owned();

    // 6. Refresh: new tokens, same user, same session.
    client
        .auth_manager
        .lock()
        .await
        .refresh_token()
        .await
        .unwrap();
    let second = held_tokens(&client).await;
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(whoami(&service).await.unwrap()["subject"], subject.as_str());
    // 7. Revoke (RFC 7009) the refresh token: the whole grant ends, access tokens included.
    let r = s
        .http
        .post(format!("{}/revoke", s.issuer))
        .form(&[
            ("token", second["refresh_token"].as_str().unwrap()),
            ("token_type_hint", "refresh_token"),
            ("client_id", client_id(&client).await.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let at = second["access_token"].as_str().unwrap();
    let started = Instant::now();
    while s.post(Some(at), initialize(), None).await.status().as_u16() != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "revocation not seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 8. The next call through the client fails: 401, and its refresh is refused too.
    let err = whoami(&service)
        .await
        .expect_err("a revoked grant still works");
    // rmcp surfaces the server's challenge: the token is dead and the refresh was refused.
    let text = format!("{err:?}");
    assert!(text.contains("AuthRequired"), "unexpected error: {text}");
    assert!(
        text.contains("error=\\\"invalid_token\\\""),
        "unexpected error: {text}"
    );
    let _ = service.cancel().await;
    s.stop().await;
}

async fn client_id(client: &AuthClient<reqwest::Client>) -> String {
    client
        .auth_manager
        .lock()
        .await
        .get_credentials()
        .await
        .unwrap()
        .0
}
