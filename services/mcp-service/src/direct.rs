//! `tools/call` inside a session, answered by the HTTP bridge without rmcp's session worker.
//!
//! rmcp carries every message of a 2025-06-18 / 2025-11-25 session through that session's worker
//! task: the request goes down a channel to the worker, on to the service loop, which spawns a
//! task for the handler; the response comes back the same way and is written as an event stream
//! that the bridge then reads back into one JSON body. For the message that dominates traffic, a
//! `tools/call` of a tool that never talks back to the client ([`McpTool::uses_peer`] is
//! `false`), none of that carries information: the call needs the caller (already
//! authenticated), a live session of theirs (checked here exactly as rmcp's `has_session` checks
//! it, through [`SessionHub::ownership_cached`]) and the tool. So the bridge runs the tool itself,
//! through the same [`crate::tools::invoke`] step as rmcp's handler, and answers with the same
//! JSON-RPC message rmcp would (rmcp's model types serialize it).
//!
//! Only the plain case is taken: one request (no batch), `jsonrpc` "2.0", no `_meta` (no progress
//! token, no per-request protocol version), no `inputResponses`/`requestState`, a registered tool,
//! a client that accepts both `application/json` and `text/event-stream`, a JSON content type, an
//! `MCP-Protocol-Version` of a session revision (2025-06-18 or 2025-11-25), no `Mcp-Method` header, and a session
//! that is live and the caller's. Everything else — including every error rmcp would answer —
//! goes to rmcp unchanged, so rmcp stays the one place that decides what is malformed.
//!
//! [`SessionHub::ownership_cached`]: crate::sessions::SessionHub::ownership_cached

use std::borrow::Cow;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use rmcp::model::{CallToolRequestParams, RequestId, ServerJsonRpcMessage, ServerResult};
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::Principal;
use crate::sessions::Ownership;
use crate::tools::{McpTool, ToolRegistry};

/// A `tools/call` the bridge may answer itself (see the module documentation).
pub struct DirectCall {
    id: RequestId,
    params: CallToolRequestParams,
    tool: Arc<dyn McpTool>,
}

impl DirectCall {
    /// The scopes the call needs (for the bridge's scope gate).
    pub fn required_scopes(&self) -> &[String] {
        self.tool.required_scopes()
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Cow<'a, str>,
    id: RequestId,
    #[serde(borrow)]
    method: Cow<'a, str>,
    params: CallToolRequestParams,
}

/// The `tools/call` in `body`, if it is one the bridge can answer itself. `None` sends the
/// request to rmcp.
pub fn parse(tools: &ToolRegistry, body: &[u8]) -> Option<DirectCall> {
    let e: Envelope<'_> = serde_json::from_slice(body).ok()?;
    if e.jsonrpc != "2.0"
        || e.method != "tools/call"
        || e.params.meta.is_some()
        || e.params.input_responses.is_some()
        || e.params.request_state.is_some()
    {
        return None;
    }
    let tool = tools.get(&e.params.name)?;
    if tool.uses_peer() {
        return None;
    }
    Some(DirectCall {
        id: e.id,
        params: e.params,
        tool,
    })
}

/// Protocol revisions that have sessions (a later one goes to rmcp, which decides).
const SESSION_REVISIONS: [&str; 2] = ["2025-06-18", "2025-11-25"];

/// Whether the request's headers are ones rmcp would accept for a session's POST without a
/// second look (anything unusual is left to rmcp to answer).
fn plain_headers(req: &HttpRequest) -> bool {
    let h = req.headers();
    let (mut json, mut sse) = (false, false);
    for value in h.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let essence = parts.next().unwrap_or("").trim();
            // A weight (possibly q=0) is rmcp's to interpret.
            if parts.next().is_some() {
                return false;
            }
            json |= essence.eq_ignore_ascii_case("application/json");
            sse |= essence.eq_ignore_ascii_case("text/event-stream");
        }
    }
    let content_type_json = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    // The revision decides the shape of the answer; without the header (which clients of these
    // revisions send on every request after `initialize`) only rmcp knows what was negotiated.
    let version_ok = h
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| SESSION_REVISIONS.contains(&v));
    json && sse && content_type_json && version_ok && !h.contains_key("mcp-method")
}

/// Answers `call` when the request and its session allow it (see the module documentation);
/// `None` leaves the request to rmcp.
pub async fn answer(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    call: DirectCall,
) -> Option<HttpResponse> {
    let session = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())?;
    if req.method() != actix_web::http::Method::POST || !plain_headers(req) {
        return None;
    }
    let session: rmcp::transport::streamable_http_server::SessionId = Arc::from(session);
    match state
        .sessions
        .ownership_cached(&session, &principal.subject)
        .await
    {
        Ok(Ownership::Owned) => {}
        // Unknown, another user's, or Redis failing: rmcp answers as it does for any request.
        _ => return None,
    }
    metrics::counter!("mcpauth_mcp_tool_calls_total", "path" => "direct").increment(1);
    let parent = mcpauth_runtime::telemetry::exporting().then(tracing::Span::current);
    let DirectCall { id, params, tool } = call;
    let result = crate::tools::invoke(
        &state.scopes,
        principal,
        &params.name,
        tool.as_ref(),
        params.arguments,
        None,
        parent.as_ref(),
    )
    .await;
    let message = match result {
        Ok(r) => {
            let mut r = ServerResult::from(r);
            // As rmcp answers peers before 2026-07-28: no `resultType: "complete"`.
            r.strip_result_type_for_legacy_peer();
            ServerJsonRpcMessage::response(r, id)
        }
        Err(e) => ServerJsonRpcMessage::error(e, Some(id)),
    };
    let body = match serde_json::to_vec(&message) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize a tools/call answer");
            return Some(HttpResponse::InternalServerError().finish());
        }
    };
    Some(
        HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                "WWW-Authenticate, Mcp-Session-Id",
            ))
            .body(body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn req(headers: &[(&str, &str)]) -> HttpRequest {
        let mut r = TestRequest::post().uri("/mcp");
        for (k, v) in headers {
            r = r.insert_header((*k, *v));
        }
        r.to_http_request()
    }

    fn registry() -> ToolRegistry {
        let tools = ToolRegistry::default();
        tools.register(Arc::new(crate::tools::WhoAmI::new(vec![
            "mcp:tools".into(),
        ])));
        tools
    }

    #[test]
    fn a_plain_tools_call_is_parsed() {
        let tools = registry();
        let call = parse(
            &tools,
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#,
        )
        .expect("direct");
        assert_eq!(call.id, RequestId::Number(7));
        assert_eq!(call.required_scopes(), ["mcp:tools".to_owned()]);
        let call = parse(
            &tools,
            br#"{"method":"tools/call","params":{"name":"whoami"},"id":"a","jsonrpc":"2.0"}"#,
        )
        .expect("direct, any key order, string id");
        assert_eq!(call.id, RequestId::String("a".into()));
    }

    #[test]
    fn other_messages_go_to_rmcp() {
        let tools = registry();
        for body in [
            // another method, a notification, a batch, not JSON-RPC 2.0
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"whoami"}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}}]"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"whoami"}}"#,
            // an unknown tool (rmcp answers the error)
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}"#,
            // a progress token or per-request metadata; a retried input-required call
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","_meta":{"progressToken":1}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","requestState":"x"}}"#,
            // malformed
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#,
            "not json",
        ] {
            assert!(parse(&tools, body.as_bytes()).is_none(), "{body}");
        }
    }

    const BOTH: (&str, &str) = ("accept", "application/json, text/event-stream");
    const JSON: (&str, &str) = ("content-type", "application/json");

    #[test]
    fn plain_headers_take_the_direct_path() {
        let v = ("mcp-protocol-version", "2025-11-25");
        assert!(plain_headers(&req(&[BOTH, JSON, v])));
        assert!(plain_headers(&req(&[
            BOTH,
            ("content-type", "application/json; charset=utf-8"),
            ("mcp-protocol-version", "2025-11-25"),
        ])));
        assert!(plain_headers(&req(&[
            BOTH,
            JSON,
            ("mcp-protocol-version", "2025-06-18")
        ])));
    }

    #[test]
    fn anything_unusual_is_left_to_rmcp() {
        // rmcp answers 406 / 415 / 400 for these; the direct path must not answer 200.
        assert!(!plain_headers(&req(&[
            ("accept", "application/json"),
            JSON
        ])));
        assert!(!plain_headers(&req(&[JSON])));
        assert!(!plain_headers(&req(&[
            ("accept", "application/json, text/event-stream;q=0"),
            JSON
        ])));
        assert!(!plain_headers(&req(&[
            BOTH,
            ("content-type", "text/plain")
        ])));
        assert!(!plain_headers(&req(&[BOTH])));
        assert!(!plain_headers(&req(&[
            BOTH,
            JSON,
            ("mcp-protocol-version", "1999-01-01")
        ])));
        assert!(!plain_headers(&req(&[
            BOTH,
            JSON,
            ("mcp-protocol-version", "2026-07-28")
        ])));
        assert!(!plain_headers(&req(&[
            BOTH,
            JSON,
            ("mcp-method", "tools/call")
        ])));
    }
}
