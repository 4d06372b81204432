//! MCP 2026-07-28: stateless requests (no session), `server/discover`, SEP-2243 `Mcp-Method`
//! headers, and `subscriptions/listen` fed by cluster notifications.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use mcp_service::auth::Principal;
use mcp_service::tools::McpTool;
use rmcp::ErrorData;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool};
use serde_json::{Value, json};

use crate::harness::*;

const V: &str = "2026-07-28";

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientInfo": {"name": "it", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

fn call(name: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
           "params": {"name": name, "arguments": {}, "_meta": meta()}})
}

/// POSTs a 2026-07-28 request with its SEP-2243 headers.
async fn post26(
    s: &Stack,
    base: &str,
    token: &str,
    method: &str,
    name: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut r = s
        .http
        .post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", V)
        .header("mcp-method", method)
        .json(body);
    if let Some(n) = name {
        r = r.header("mcp-name", n);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn authenticated_server_discover_works() {
    let s = Stack::start().await;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta()}});
    let r = post26(&s, &s.mcp_base, at, "server/discover", None, &body).await;
    assert_eq!(r.status().as_u16(), 200);
    // Stateless: no session is created.
    assert!(r.headers().get("mcp-session-id").is_none());
    let msgs = messages(r).await;
    let result = &msgs.last().unwrap()["result"];
    assert!(
        result["supportedVersions"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x == V)),
        "{result}"
    );
    assert!(result["capabilities"]["tools"].is_object(), "{result}");
    s.stop().await;
}

#[tokio::test]
async fn a_stateless_tools_call_runs_as_the_caller_on_any_replica() {
    let s = Stack::start().await;
    let (b, b_base) = s.replica().await;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let mut subjects = vec![];
    for base in [s.mcp_base.as_str(), b_base.as_str()] {
        let r = post26(&s, base, at, "tools/call", Some("whoami"), &call("whoami")).await;
        assert_eq!(r.status().as_u16(), 200, "{base}");
        assert!(r.headers().get("mcp-session-id").is_none());
        let msgs = messages(r).await;
        let text = msgs.last().unwrap()["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        let who: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(who["scopes"], json!(["mcp:tools.read"]));
        subjects.push(who["subject"].as_str().unwrap().to_owned());
    }
    assert_eq!(subjects[0], subjects[1]);
    // A stale Mcp-Session-Id is ignored in this mode, whoever's it was.
    let r = s
        .http
        .post(format!("{}/mcp", s.mcp_base))
        .bearer_auth(at)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", V)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "whoami")
        .header("mcp-session-id", "no-such-session")
        .json(&call("whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Without a token: 401 before anything else.
    let r = s
        .http
        .post(format!("{}/mcp", s.mcp_base))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", V)
        .header("mcp-method", "tools/call")
        .json(&call("whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    b.shutdown().await;
    s.stop().await;
}

#[tokio::test]
async fn an_mcp_method_header_that_contradicts_the_body_is_400() {
    let s = Stack::start().await;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let r = post26(
        &s,
        &s.mcp_base,
        at,
        "tools/list",
        Some("whoami"),
        &call("whoami"),
    )
    .await;
    assert_eq!(r.status().as_u16(), 400);
    let msgs = messages(r).await;
    assert!(msgs[0]["error"]["code"].is_i64(), "{:?}", msgs);
    // Mcp-Name must match too.
    let r = post26(
        &s,
        &s.mcp_base,
        at,
        "tools/call",
        Some("other"),
        &call("whoami"),
    )
    .await;
    assert_eq!(r.status().as_u16(), 400);
    s.stop().await;
}

/// A tool that needs the write scope.
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
async fn the_scope_gate_reads_the_body_in_stateless_mode() {
    let s = Stack::start().await;
    s.mcp
        .as_ref()
        .unwrap()
        .state
        .tools
        .register(Arc::new(WriteTool(vec!["mcp:tools.write".into()])));
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let r = post26(
        &s,
        &s.mcp_base,
        at,
        "tools/call",
        Some("write_thing"),
        &call("write_thing"),
    )
    .await;
    assert_eq!(r.status().as_u16(), 403);
    assert!(www_authenticate(&r).contains("insufficient_scope"));
    // Headers that lie about the method do not get a call past the gate.
    let r = post26(
        &s,
        &s.mcp_base,
        at,
        "tools/list",
        None,
        &call("write_thing"),
    )
    .await;
    assert_eq!(r.status().as_u16(), 403);
    let rw = s
        .token(Some("mcp:tools.read mcp:tools.write"), &s.resource)
        .await;
    let r = post26(
        &s,
        &s.mcp_base,
        rw["access_token"].as_str().unwrap(),
        "tools/call",
        Some("write_thing"),
        &call("write_thing"),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let msgs = messages(r).await;
    assert!(
        msgs.last().unwrap()["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("written by")
    );
    s.stop().await;
}

#[tokio::test]
async fn a_listen_stream_gets_tool_list_changes_published_on_another_replica() {
    let s = Stack::start().await;
    let (b, _b_base) = s.replica().await;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "subscriptions/listen",
                      "params": {"notifications": {"toolsListChanged": true}, "_meta": meta()}});
    let mut r = post26(&s, &s.mcp_base, at, "subscriptions/listen", None, &body).await;
    assert_eq!(r.status().as_u16(), 200);
    let mut buf = String::new();
    let seen = |buf: &str, method: &str| {
        buf.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .any(|m| m["method"] == method)
    };
    let acked = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(Some(c)) = r.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&c));
            if seen(&buf, "notifications/subscriptions/acknowledged") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(acked, "no acknowledgment: {buf}");
    let who = post26(
        &s,
        &s.mcp_base,
        at,
        "tools/call",
        Some("whoami"),
        &call("whoami"),
    )
    .await;
    let text = messages(who).await.last().unwrap()["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    let subject = serde_json::from_str::<Value>(&text).unwrap()["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    b.state.sessions.notify_tools_changed(&subject);
    let got = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(Some(c)) = r.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&c));
            if seen(&buf, "notifications/tools/list_changed") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(got, "no tools/list_changed on the listen stream: {buf}");
    b.shutdown().await;
    s.stop().await;
}
