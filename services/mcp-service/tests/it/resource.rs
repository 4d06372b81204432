//! MCP-AUTH-SPEC section A: mcp-service as an OAuth protected resource.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use mcp_service::auth::Principal;
use mcp_service::tools::McpTool;
use rmcp::ErrorData;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool};
use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn protected_resource_metadata() {
    let s = Stack::start().await;
    let r = s
        .http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            s.mcp_base
        ))
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
    let prm: Value = r.json().await.unwrap();
    assert_eq!(prm["resource"], s.resource.as_str());
    assert_eq!(prm["authorization_servers"], json!([s.issuer]));
    assert_eq!(prm["bearer_methods_supported"], json!(["header"]));
    assert!(
        !prm["scopes_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "offline_access")
    );
    // authorization_servers[0] is byte-identical to the AS metadata issuer (S8).
    let asm: Value = s
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            s.issuer
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(asm["issuer"], prm["authorization_servers"][0]);
    s.stop().await;
}

#[tokio::test]
async fn unauthenticated_requests_get_a_bearer_challenge_before_dispatch() {
    let s = Stack::start().await;
    for body in [
        initialize(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    ] {
        let r = s.post(None, body, None).await;
        assert_eq!(r.status().as_u16(), 401);
        let h = www_authenticate(&r);
        assert!(h.starts_with("Bearer "), "{h}");
        assert!(h.contains(&format!(
            "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
            s.mcp_base
        )));
        assert!(h.contains("scope=\"mcp:tools.read\""), "{h}");
        // RFC 6750 §3.1: no error code when the request had no credentials.
        assert!(!h.contains("error="), "{h}");
    }
    s.stop().await;
}

#[tokio::test]
async fn invalid_tokens_are_refused_with_invalid_token() {
    let s = Stack::start().await;
    let good = s.token(None, &s.resource).await;
    let at = good["access_token"].as_str().unwrap();
    let mut mangled = at.to_owned();
    mangled.pop();
    mangled.push(if at.ends_with('A') { 'B' } else { 'A' });
    for bad in [
        "garbage",
        mangled.as_str(),
        good["refresh_token"].as_str().unwrap(),
    ] {
        let r = s.post(Some(bad), initialize(), None).await;
        assert_eq!(r.status().as_u16(), 401, "{bad}");
        let h = www_authenticate(&r);
        assert!(
            h.starts_with("Bearer ") && h.contains("error=\"invalid_token\""),
            "{h}"
        );
        assert!(h.contains("resource_metadata="));
    }
    s.stop().await;
}

#[tokio::test]
async fn token_for_another_resource_is_refused() {
    let s = Stack::start().await;
    let other = s.token(None, OTHER_RESOURCE).await;
    let r = s
        .post(other["access_token"].as_str(), initialize(), None)
        .await;
    assert_eq!(r.status().as_u16(), 401);
    assert!(www_authenticate(&r).contains("invalid_token"));
    s.stop().await;
}

#[tokio::test]
async fn expired_token_is_refused() {
    let s = Stack::start_with(StackOptions {
        auth_env: vec![("MCPAUTH__TOKENS__ACCESS_TTL_SECS", "2".into())],
        ..Default::default()
    })
    .await;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(s.post_status(Some(at), initialize(), None).await, 200);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    // Cached as valid a moment ago: the cache still honours the token's own expiry.
    let r = s.post(Some(at), initialize(), None).await;
    assert_eq!(r.status().as_u16(), 401);
    s.stop().await;
}

#[tokio::test]
async fn token_only_in_the_authorization_header() {
    let s = Stack::start().await;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let r = s
        .http
        .post(format!("{}/mcp?access_token={at}", s.mcp_base))
        .header("accept", "application/json, text/event-stream")
        .json(&initialize())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = s
        .http
        .post(format!("{}/mcp", s.mcp_base))
        .header("accept", "application/json, text/event-stream")
        .header("cookie", format!("access_token={at}"))
        .json(&initialize())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    s.stop().await;
}

#[tokio::test]
async fn foreign_origin_and_host_are_forbidden() {
    let s = Stack::start().await;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let initialize_with = |header: &'static str, value: String| {
        s.http
            .post(format!("{}/mcp", s.mcp_base))
            .bearer_auth(at)
            .header(header, value)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize())
            .send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(
            initialize_with("origin", "http://evil.example".into())
                .await
                .unwrap()
        ),
        403
    );
    assert_eq!(
        status(
            initialize_with("host", "evil.example".into())
                .await
                .unwrap()
        ),
        403
    );
    // The server's own origin is fine.
    assert_eq!(
        status(initialize_with("origin", s.mcp_base.clone()).await.unwrap()),
        200
    );
    s.stop().await;
}

#[tokio::test]
async fn whoami_returns_the_caller_and_never_the_token() {
    let s = Stack::start().await;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let sid = s.session(at).await;
    let r = s
        .post(
            Some(at),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
            Some(&sid),
        )
        .await;
    let msgs = messages(r).await;
    let names: Vec<&str> = msgs[0]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"whoami"), "{names:?}");
    let r = s
        .post(
            Some(at),
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}),
            Some(&sid),
        )
        .await;
    // A session's answer that is only the response comes as one JSON body, not an event stream.
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let raw = r.text().await.unwrap();
    assert!(!raw.contains(at), "whoami leaked the token");
    let msg: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(msg["id"], 3, "{msg}");
    let text = msg["result"]["content"][0]["text"].as_str().unwrap();
    let who: Value = serde_json::from_str(text).unwrap();
    let intro = auth_service_introspect(&s, at).await;
    assert_eq!(who["subject"], intro["sub"]);
    assert_eq!(who["client_id"], intro["client_id"]);
    assert_eq!(who["scopes"], json!(["mcp:tools.read"]));
    assert_eq!(who["expires_at"], intro["exp"]);
    s.stop().await;
}

/// The value of `mcpauth_mcp_tool_calls_total{path="<path>"}` in mcp-service's `/metrics`.
async fn tool_calls(s: &Stack, path: &str) -> u64 {
    let text = s
        .http
        .get(format!("{}/metrics", s.mcp_base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("mcpauth_mcp_tool_calls_total{{path=\"{path}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn a_sessions_tools_call_is_answered_directly_exactly_as_rmcp_answers_it() {
    let s = Stack::start().await;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let sid = s.session(at).await;
    let call = |id: Value, params: Value| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});

    // The plain call is answered by the bridge; the same call with a progress token goes
    // through rmcp's session worker. Both answers are the same message.
    let direct = s
        .post(
            Some(at),
            call(json!("d-1"), json!({"name": "whoami", "arguments": {}})),
            Some(&sid),
        )
        .await;
    assert_eq!(direct.status().as_u16(), 200);
    assert_eq!(direct.headers()["content-type"], "application/json");
    let direct = messages(direct).await;
    assert_eq!(
        (tool_calls(&s, "direct").await, tool_calls(&s, "rmcp").await),
        (1, 0)
    );
    let via_rmcp = messages(
        s.post(
            Some(at),
            call(
                json!("d-1"),
                json!({"name": "whoami", "arguments": {}, "_meta": {"progressToken": "p"}}),
            ),
            Some(&sid),
        )
        .await,
    )
    .await;
    assert_eq!(
        (tool_calls(&s, "direct").await, tool_calls(&s, "rmcp").await),
        (1, 1)
    );
    assert_eq!(direct, via_rmcp);
    assert_eq!(direct[0]["id"], "d-1");
    assert!(
        direct[0]["result"]["content"][0]["text"].is_string(),
        "{direct:?}"
    );

    // Malformed arguments are rmcp's to answer (the bridge does not parse them as a call).
    let refused = messages(
        s.post(
            Some(at),
            call(json!(9), json!({"name": "whoami", "arguments": []})),
            Some(&sid),
        )
        .await,
    )
    .await;
    let refused_rmcp = messages(
        s.post(
            Some(at),
            call(
                json!(9),
                json!({"name": "whoami", "arguments": [], "_meta": {"progressToken": 1}}),
            ),
            Some(&sid),
        )
        .await,
    )
    .await;
    assert_eq!(refused, refused_rmcp);

    // An unknown tool, another user's session and an unknown session are rmcp's to answer.
    let unknown = messages(
        s.post(
            Some(at),
            call(json!(10), json!({"name": "nope"})),
            Some(&sid),
        )
        .await,
    )
    .await;
    assert!(unknown[0]["error"].is_object(), "{unknown:?}");
    let bob = machine_token(&s).await;
    let whoami = call(json!(11), json!({"name": "whoami", "arguments": {}}));
    assert_eq!(
        s.post_status(Some(&bob), whoami.clone(), Some(&sid)).await,
        404
    );
    assert_eq!(
        s.post_status(Some(at), whoami.clone(), Some("no-such-session"))
            .await,
        404
    );
    // A client that does not accept event streams gets rmcp's 406, as for any request.
    let r = s
        .http
        .post(format!("{}/mcp", s.mcp_base))
        .bearer_auth(at)
        .header("accept", "application/json")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&whoami)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 406);
    assert_eq!(tool_calls(&s, "direct").await, 1);
    s.stop().await;
}

async fn auth_service_introspect(s: &Stack, token: &str) -> Value {
    let state = &s.auth.as_ref().unwrap().state;
    let t = state.tokens.introspect(token, None).await.unwrap().unwrap();
    json!({"sub": t.subject, "client_id": t.client_id, "exp": t.expires_at})
}

/// A tool that needs the write scope, for step-up.
struct WriteTool(Vec<String>);
impl McpTool for WriteTool {
    fn definition(&self) -> Tool {
        let schema: JsonObject = serde_json::from_value(json!({"type": "object"})).unwrap();
        Tool::new("write_thing", "needs mcp:tools.write", Arc::new(schema))
    }
    fn required_scopes(&self) -> &[String] {
        &self.0
    }
    fn call<'a>(
        &'a self,
        p: &'a Principal,
        _a: JsonObject,
    ) -> BoxFuture<'a, Result<CallToolResult, ErrorData>> {
        Box::pin(async move {
            Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                "written by {}",
                p.subject
            ))]))
        })
    }
}

#[tokio::test]
async fn missing_scope_gets_403_step_up_and_broader_scope_works() {
    let s = Stack::start().await;
    s.mcp
        .as_ref()
        .unwrap()
        .state
        .tools
        .register(Arc::new(WriteTool(vec!["mcp:tools.write".into()])));
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "write_thing", "arguments": {}}});

    let read_only = s.token(None, &s.resource).await;
    let at = read_only["access_token"].as_str().unwrap();
    let sid = s.session(at).await;
    let r = s.post(Some(at), call.clone(), Some(&sid)).await;
    assert_eq!(r.status().as_u16(), 403);
    let h = www_authenticate(&r);
    assert!(h.starts_with("Bearer error=\"insufficient_scope\""), "{h}");
    // Every scope the operation needs, the granted basic one included (S13/S14).
    assert!(
        h.contains("scope=\"mcp:tools.read mcp:tools.write\""),
        "{h}"
    );
    assert!(h.contains("resource_metadata="), "{h}");

    // Step up: a token with the challenged scopes can call the tool.
    let rw = s
        .token(Some("mcp:tools.read mcp:tools.write"), &s.resource)
        .await;
    let at = rw["access_token"].as_str().unwrap();
    let sid = s.session(at).await;
    let r = s.post(Some(at), call.clone(), Some(&sid)).await;
    assert_eq!(r.status().as_u16(), 200);
    let msgs = messages(r).await;
    assert!(
        msgs.last().unwrap()["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("written by")
    );

    // A broad scope implies the narrower ones (S15).
    let broad = s.token(Some("mcp:tools"), &s.resource).await;
    let at = broad["access_token"].as_str().unwrap();
    let sid = s.session(at).await;
    assert_eq!(s.post_status(Some(at), call, Some(&sid)).await, 200);
    s.stop().await;
}

#[tokio::test]
async fn revoked_token_is_refused_within_a_second_despite_the_cache() {
    let s = Stack::start().await;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(s.post_status(Some(at), initialize(), None).await, 200);
    // Now cached. Revoke at auth-service (RFC 7009, by the token's own public client).
    let state = &s.auth.as_ref().unwrap().state;
    let claims = state.tokens.validate_access(at).unwrap();
    state
        .tokens
        .revoke(
            auth_service::store::revocations::RevocationKind::Token,
            &claims.jti,
            claims.exp,
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let status = s.post_status(Some(at), initialize(), None).await;
        if status == 401 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "still accepted after 1 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn static_keys_mode() {
    let key = "static-service-key-0123456789";
    let hash: String = ring::digest::digest(&ring::digest::SHA256, key.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let s = Stack::start_with(StackOptions {
        mcp_env: vec![("MCPAUTH__VERIFIER__MODE", "static_keys".into())],
        mcp_toml: format!(
            "[[verifier.static_keys]]\nname = \"ci-bot\"\nkey_sha256 = \"{hash}\"\nscopes = [\"mcp:tools.read\"]\n"
        ),
        ..Default::default()
    })
    .await;
    assert_eq!(s.post_status(Some(key), initialize(), None).await, 200);
    assert_eq!(
        s.post_status(Some("static-service-key-0123456788"), initialize(), None)
            .await,
        401
    );
    // Tokens from the authorization server are not static keys.
    let t = s.token(None, &s.resource).await;
    assert_eq!(
        s.post_status(t["access_token"].as_str(), initialize(), None)
            .await,
        401
    );
    s.stop().await;
}

/// A machine token (client_credentials): its subject is the client id, so two clients are two
/// different callers.
pub async fn machine_token(s: &Stack) -> String {
    let reg: Value = s
        .http
        .post(format!("{}/register", s.issuer))
        .bearer_auth(INITIAL_ACCESS_TOKEN)
        .json(&json!({"client_name": "machine", "grant_types": ["client_credentials"], "response_types": [],
                      "token_endpoint_auth_method": "client_secret_basic"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body: Value = s
        .http
        .post(format!("{}/token", s.issuer))
        .basic_auth(
            reg["client_id"].as_str().unwrap(),
            reg["client_secret"].as_str(),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", s.resource.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn sessions_are_bound_to_the_user_who_created_them() {
    let s = Stack::start().await;
    let alice = machine_token(&s).await;
    let bob = machine_token(&s).await;
    let sid = s.session(&alice).await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert_eq!(
        s.post_status(Some(&alice), list.clone(), Some(&sid)).await,
        200
    );
    // Bob holds Alice's session id: it is not a credential.
    assert_eq!(
        s.post_status(Some(&bob), list.clone(), Some(&sid)).await,
        404
    );
    let del = |t: String, id: String| {
        s.http
            .delete(format!("{}/mcp", s.mcp_base))
            .bearer_auth(t)
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
    };
    assert_eq!(
        del(bob.clone(), sid.clone())
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    // Unknown sessions are 404, so clients re-initialize.
    assert_eq!(
        del(alice.clone(), "no-such-session".into())
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        s.post_status(Some(&alice), list.clone(), Some("no-such-session"))
            .await,
        404
    );
    // The owner ends it; afterwards it is gone for everyone.
    assert!(
        del(alice.clone(), sid.clone())
            .await
            .unwrap()
            .status()
            .is_success()
    );
    assert_eq!(s.post_status(Some(&alice), list, Some(&sid)).await, 404);
    s.stop().await;
}

#[tokio::test]
async fn get_without_a_session_is_405() {
    let s = Stack::start().await;
    let t = machine_token(&s).await;
    let r = s
        .http
        .get(format!("{}/mcp", s.mcp_base))
        .bearer_auth(&t)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    s.stop().await;
}

#[tokio::test]
async fn an_event_stream_ends_when_its_token_is_revoked() {
    let s = Stack::start().await;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let sid = s.session(at).await;
    let r = s
        .http
        .get(format!("{}/mcp", s.mcp_base))
        .bearer_auth(at)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut r = r;
    // Still open a moment later.
    let early = tokio::time::timeout(std::time::Duration::from_millis(300), async {
        while let Ok(Some(_)) = r.chunk().await {}
    })
    .await;
    assert!(early.is_err(), "the stream ended before any revocation");
    let state = &s.auth.as_ref().unwrap().state;
    let claims = state.tokens.validate_access(at).unwrap();
    state
        .tokens
        .revoke(
            auth_service::store::revocations::RevocationKind::Token,
            &claims.jti,
            claims.exp,
        )
        .await
        .unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while let Ok(Some(_)) = r.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the event stream outlived the revocation of its token by 1 s"
    );
    s.stop().await;
}
