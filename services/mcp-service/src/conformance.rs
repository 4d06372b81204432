//! The conformance tool set: the reference tools that the server scenarios of the official MCP
//! conformance suite (`@modelcontextprotocol/conformance`, pinned in tests/e2e/package.json)
//! call by name, so that those scenarios run against the real mcp-service — authentication,
//! sessions, the direct `tools/call` path (`crate::direct`) and rmcp's path — instead of a test
//! double.
//!
//! Off by default. `conformance_tools = true` is refused outside `dev_mode` (config validation),
//! and mcp-service logs a warning at start when it is on: these tools return canned content, ask
//! the client for input and expose nothing of the user, but they have no place on a production
//! server's tool list.
//!
//! Each tool does what the suite's scenario description asks (tests/e2e/README.md lists the
//! scenarios): plain content tools (`test_simple_text`, `test_image_content`,
//! `test_audio_content`, `test_embedded_resource`, `test_multiple_content_types`,
//! `test_error_handling`, `json_schema_2020_12_tool`) never talk back to the client, so inside a
//! 2025 session they take the direct path; the others (progress, logging, sampling, elicitation)
//! use the session's peer and go through rmcp.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rmcp::model::{
    CallToolResponse, CallToolResult, ClientCapabilities, InputRequiredResult, JsonObject,
    ProgressNotificationParam, Tool,
};
use rmcp::{ErrorData, Peer, RoleServer};
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::tools::{CallContext, McpTool, ToolRegistry};

mod mrtr;
use mrtr::{Mrtr, StateKey};

/// A 1×1 red PNG.
const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A 44-byte WAV header with no samples (8 kHz mono 8-bit).
const WAV_EMPTY: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA=";

/// The schema of `json_schema_2020_12_tool`, exactly as the `json-schema-2020-12` scenario
/// expects it back from `tools/list` (SEP-1613 / SEP-2106 keywords preserved).
fn schema_2020_12() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"address": {"$anchor": "addressDef", "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"},
            "contactMethod": {"type": "string", "enum": ["phone", "email"]},
            "phone": {"type": "string"},
            "email": {"type": "string"}
        },
        "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
        "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
        "then": {"required": ["phone"]},
        "else": {"required": ["email"]},
        "additionalProperties": false
    })
}

/// What a conformance tool does when called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    SimpleText,
    Image,
    Audio,
    EmbeddedResource,
    Mixed,
    Error,
    Schema2020,
    Progress,
    Logging,
    Sampling,
    Elicitation,
    ElicitationDefaults,
    ElicitationEnums,
    MissingCapability,
    LoggingIfAsked,
    StreamingElicitation,
    TriggerToolChange,
    CustomHeaders,
    /// `test_dynamic_tool`: listed only for the users who switched it on.
    Dynamic,
    /// The SEP-2322 multi-round-trip tools (`mrtr`).
    Mrtr(Mrtr),
}

/// Every tool of the set: (name, kind, description, input schema).
fn catalogue() -> Vec<(&'static str, Kind, &'static str, Value)> {
    let none = json!({"type": "object", "properties": {}});
    let string_arg = |name: &str, what: &str| {
        json!({"type": "object", "properties": {name: {"type": "string", "description": what}},
               "required": [name]})
    };
    let mut all = vec![
        (
            "test_simple_text",
            Kind::SimpleText,
            "Returns a simple text content block.",
            none.clone(),
        ),
        (
            "test_image_content",
            Kind::Image,
            "Returns a 1x1 PNG image content block.",
            none.clone(),
        ),
        (
            "test_audio_content",
            Kind::Audio,
            "Returns a WAV audio content block.",
            none.clone(),
        ),
        (
            "test_embedded_resource",
            Kind::EmbeddedResource,
            "Returns an embedded text resource.",
            none.clone(),
        ),
        (
            "test_multiple_content_types",
            Kind::Mixed,
            "Returns text, image and resource content.",
            none.clone(),
        ),
        (
            "test_error_handling",
            Kind::Error,
            "Always returns a tool error (isError: true).",
            none.clone(),
        ),
        (
            "json_schema_2020_12_tool",
            Kind::Schema2020,
            "Tool with JSON Schema 2020-12 features",
            schema_2020_12(),
        ),
        // SEP-2243 (`http-custom-header-server-validation`, 2026-07-28): a parameter a client
        // mirrors into an `Mcp-Param-Region` header. The check that header and body agree is
        // not this tool's: it is the transport's (rmcp validates every `Mcp-Param-*` header
        // against the schema `get_tool` gives it, for every tool, before dispatch).
        (
            "test_custom_headers",
            Kind::CustomHeaders,
            "Echoes its region argument, which clients also send as the Mcp-Param-Region header.",
            json!({"type": "object", "properties": {"region": {"type": "string",
                "description": "A region name, mirrored into the Mcp-Param-Region header",
                "x-mcp-header": "Region"}}, "required": ["region"]}),
        ),
        (
            "test_tool_with_progress",
            Kind::Progress,
            "Reports progress 0, 50, 100 of 100 when given a progress token.",
            none.clone(),
        ),
        (
            "test_tool_with_logging",
            Kind::Logging,
            "Sends three info log notifications while it runs.",
            none.clone(),
        ),
        (
            "test_sampling",
            Kind::Sampling,
            "Asks the client to sample an LLM message.",
            string_arg("prompt", "The prompt to send to the LLM"),
        ),
        (
            "test_elicitation",
            Kind::Elicitation,
            "Asks the user for a username and an email address.",
            string_arg("message", "The message to show the user"),
        ),
        (
            "test_elicitation_sep1034_defaults",
            Kind::ElicitationDefaults,
            "Elicitation with a default for every primitive type (SEP-1034).",
            none.clone(),
        ),
        (
            "test_elicitation_sep1330_enums",
            Kind::ElicitationEnums,
            "Elicitation with every enum schema variant (SEP-1330).",
            none.clone(),
        ),
        // The server-stateless (2026-07-28, SEP-2575) diagnostic tools.
        (
            "test_missing_capability",
            Kind::MissingCapability,
            "Needs the client's sampling capability; answers -32021 without it.",
            none.clone(),
        ),
        (
            "test_logging_tool",
            Kind::LoggingIfAsked,
            "Logs only when the request asks for logs (_meta logLevel on 2026-07-28).",
            none.clone(),
        ),
        (
            "test_streaming_elicitation",
            Kind::StreamingElicitation,
            "Asks for input: an InputRequiredResult on 2026-07-28, elicitation/create before.",
            none.clone(),
        ),
        (
            "test_trigger_tool_change",
            Kind::TriggerToolChange,
            "Adds test_dynamic_tool to the caller's tool list, or removes it, and announces the change (notifications/tools/list_changed).",
            none.clone(),
        ),
        (
            "test_dynamic_tool",
            Kind::Dynamic,
            "Listed only after test_trigger_tool_change switched it on for the caller.",
            none.clone(),
        ),
    ];
    all.extend(
        mrtr::catalogue()
            .into_iter()
            .map(|(name, m, description)| (name, Kind::Mrtr(m), description, none.clone())),
    );
    all
}

/// One tool of the set.
pub struct ConformanceTool {
    name: &'static str,
    kind: Kind,
    description: &'static str,
    schema: Arc<JsonObject>,
    scopes: Vec<String>,
    /// Seals the `requestState` of the multi-round-trip tools (one key for the whole set).
    state_key: Arc<StateKey>,
    /// The subjects for whom `test_dynamic_tool` is on (shared by the whole set; this
    /// process only, like the registry itself).
    dynamic_for: Arc<Mutex<HashSet<String>>>,
}

impl ConformanceTool {
    fn dynamic_on(&self, subject: &str) -> bool {
        self.dynamic_for
            .lock()
            .expect("dynamic tool users")
            .contains(subject)
    }
}

/// Registers the whole set in `tools`; `scopes` are the scopes a caller needs (those of the
/// built-in `whoami`: `scopes_supported`).
pub fn install(tools: &ToolRegistry, scopes: &[String]) {
    install_set(tools, scopes);
}

/// [`install`], answering the set of users for whom `test_dynamic_tool` is on.
fn install_set(tools: &ToolRegistry, scopes: &[String]) -> Arc<Mutex<HashSet<String>>> {
    let state_key = Arc::new(StateKey::random());
    let dynamic_for = Arc::new(Mutex::new(HashSet::new()));
    for (name, kind, description, schema) in catalogue() {
        let Value::Object(schema) = schema else {
            unreachable!("static schemas are objects")
        };
        tools.register(Arc::new(ConformanceTool {
            name,
            kind,
            description,
            schema: Arc::new(schema),
            scopes: scopes.to_vec(),
            state_key: state_key.clone(),
            dynamic_for: dynamic_for.clone(),
        }));
    }
    dynamic_for
}

fn result(v: Value) -> Result<CallToolResult, ErrorData> {
    serde_json::from_value(v).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

fn text(t: impl Into<String>) -> Result<CallToolResult, ErrorData> {
    result(json!({"content": [{"type": "text", "text": t.into()}]}))
}

/// The answer of a tool that never talks back to the client.
fn plain(kind: Kind, args: &JsonObject) -> Result<CallToolResult, ErrorData> {
    match kind {
        Kind::CustomHeaders => text(format!("region: {}", arg(args, "region")?)),
        Kind::SimpleText => text("This is a simple text response for testing."),
        Kind::Image => result(json!({"content": [
            {"type": "image", "data": PNG_1X1, "mimeType": "image/png"}]})),
        Kind::Audio => result(json!({"content": [
            {"type": "audio", "data": WAV_EMPTY, "mimeType": "audio/wav"}]})),
        Kind::EmbeddedResource => result(json!({"content": [{"type": "resource", "resource": {
            "uri": "test://embedded-resource", "mimeType": "text/plain",
            "text": "This is an embedded resource content."}}]})),
        Kind::Mixed => result(json!({"content": [
            {"type": "text", "text": "Multiple content types test:"},
            {"type": "image", "data": PNG_1X1, "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "test://mixed-content-resource",
                "mimeType": "application/json", "text": "{\"test\":\"data\",\"value\":123}"}}]})),
        Kind::Error => result(json!({"isError": true, "content": [
            {"type": "text", "text": "This tool intentionally returns an error for testing"}]})),
        Kind::Schema2020 => text("json_schema_2020_12_tool called"),
        Kind::Dynamic => text("test_dynamic_tool called"),
        _ => Err(ErrorData::internal_error(
            "this tool needs the session (it is called through rmcp)",
            None,
        )),
    }
}

/// What a call of `test_dynamic_tool` gets while it is off for the caller: what any unknown
/// tool gets.
fn unknown_dynamic() -> ErrorData {
    ErrorData::invalid_params("unknown tool test_dynamic_tool", None)
}

fn client_error(what: &str, e: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(format!("{what}: {e}"), None)
}

/// Sends `elicitation/create` with `params` (JSON, form mode) and describes the answer.
async fn elicit(peer: &Peer<RoleServer>, params: Value) -> Result<CallToolResult, ErrorData> {
    let params = serde_json::from_value(params)
        .map_err(|e| ErrorData::internal_error(format!("elicitation schema: {e}"), None))?;
    let answer = peer
        .create_elicitation(params)
        .await
        .map_err(|e| client_error("elicitation/create", e))?;
    let answer = serde_json::to_value(&answer).unwrap_or(Value::Null);
    text(format!(
        "Elicitation completed: action={}, content={}",
        answer.get("action").and_then(Value::as_str).unwrap_or("?"),
        answer.get("content").cloned().unwrap_or(Value::Null)
    ))
}

fn arg<'a>(args: &'a JsonObject, name: &str) -> Result<&'a str, ErrorData> {
    args.get(name).and_then(Value::as_str).ok_or_else(|| {
        ErrorData::invalid_params(format!("argument {name} (string) is required"), None)
    })
}

/// The tools that talk back to the client.
async fn with_session(
    kind: Kind,
    args: JsonObject,
    ctx: CallContext,
    dynamic_for: Arc<Mutex<HashSet<String>>>,
) -> Result<CallToolResponse, ErrorData> {
    let peer = &ctx.peer;
    let done = match kind {
        Kind::MissingCapability => {
            let caps = if ctx.stateless() {
                ctx.meta.client_capabilities()
            } else {
                peer.peer_info().map(|i| i.capabilities.clone())
            };
            if caps.is_none_or(|c| c.sampling.is_none()) {
                let required: ClientCapabilities = serde_json::from_value(json!({"sampling": {}}))
                    .map_err(|e| client_error("capabilities", e))?;
                return Err(ErrorData::missing_required_client_capability(required));
            }
            text("the client declared sampling")
        }
        Kind::LoggingIfAsked => {
            ctx.log_info("test_logging_tool ran")
                .await
                .map_err(|e| client_error("notifications/message", e))?;
            text("Logging tool completed")
        }
        Kind::StreamingElicitation if ctx.stateless() => {
            if let Some(answer) = ctx.input_responses.as_ref().and_then(|r| r.get("confirm")) {
                text(format!("Elicitation completed: {answer}"))
            } else {
                let r: InputRequiredResult = serde_json::from_value(json!({
                    "resultType": "input_required",
                    "inputRequests": {"confirm": {"method": "elicitation/create", "params": {
                        "mode": "form", "message": "Continue?",
                        "requestedSchema": {"type": "object",
                            "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}}}
                }))
                .map_err(|e| client_error("input request", e))?;
                return Ok(r.into());
            }
        }
        Kind::StreamingElicitation => {
            elicit(
                peer,
                json!({"mode": "form", "message": "Continue?", "requestedSchema": {
                    "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}),
            )
            .await
        }
        Kind::TriggerToolChange => {
            let Some(hub) = &ctx.sessions else {
                return Err(ErrorData::internal_error("no session hub", None));
            };
            let added = {
                let mut on = dynamic_for.lock().expect("dynamic tool users");
                let added = on.insert(ctx.subject.clone());
                if !added {
                    on.remove(&ctx.subject);
                }
                added
            };
            hub.notify_tools_changed(&ctx.subject);
            text(if added {
                "test_dynamic_tool added to your tool list; tools/list_changed announced"
            } else {
                "test_dynamic_tool removed from your tool list; tools/list_changed announced"
            })
        }
        Kind::Progress => {
            let token = ctx.meta.get_progress_token();
            for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if let Some(token) = &token {
                    let param: ProgressNotificationParam = serde_json::from_value(
                        json!({"progressToken": token, "progress": progress, "total": 100}),
                    )
                    .map_err(|e| client_error("progress notification", e))?;
                    peer.notify_progress(param)
                        .await
                    .map_err(|e| client_error("notifications/progress", e))?;
                }
            }
            text("Progress tool completed")
        }
        Kind::Logging => {
            for (i, message) in [
                "Tool execution started",
                "Tool processing data",
                "Tool execution completed",
            ]
            .into_iter()
            .enumerate()
            {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                ctx.log_info(message)
                    .await
                    .map_err(|e| client_error("notifications/message", e))?;
            }
            text("Logging tool completed")
        }
        Kind::Sampling => {
            let prompt = arg(&args, "prompt")?;
            let params = serde_json::from_value(json!({
                "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
                "maxTokens": 100
            }))
            .map_err(|e| client_error("sampling request", e))?;
            #[allow(deprecated)] // sampling is what the scenario tests (2025 revisions)
            let answer = peer
                .create_message(params)
                .await
                .map_err(|e| client_error("sampling/createMessage", e))?;
            let answer = serde_json::to_value(&answer).unwrap_or(Value::Null);
            let said = answer
                .pointer("/content/text")
                .and_then(Value::as_str)
                .unwrap_or("");
            text(format!("LLM response: {said}"))
        }
        Kind::Elicitation => {
            let message = arg(&args, "message")?;
            elicit(
                peer,
                json!({"mode": "form", "message": message, "requestedSchema": {
                    "type": "object",
                    "properties": {
                        "username": {"type": "string", "description": "User's response"},
                        "email": {"type": "string", "description": "User's email address"}
                    },
                    "required": ["username", "email"]}}),
            )
            .await
        }
        Kind::ElicitationDefaults => {
            elicit(
                peer,
                json!({"mode": "form", "message": "Please review the defaults", "requestedSchema": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "default": "John Doe"},
                        "age": {"type": "integer", "default": 30},
                        "score": {"type": "number", "default": 95.5},
                        "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
                        "verified": {"type": "boolean", "default": true}
                    }}}),
            )
            .await
        }
        Kind::ElicitationEnums => {
            elicit(
                peer,
                json!({"mode": "form", "message": "Please choose", "requestedSchema": {
                    "type": "object",
                    "properties": {
                        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                        "titledSingle": {"type": "string", "oneOf": [
                            {"const": "value1", "title": "First Option"},
                            {"const": "value2", "title": "Second Option"},
                            {"const": "value3", "title": "Third Option"}]},
                        "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                            "enumNames": ["Option One", "Option Two", "Option Three"]},
                        "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                        "titledMulti": {"type": "array", "items": {"anyOf": [
                            {"const": "value1", "title": "First Choice"},
                            {"const": "value2", "title": "Second Choice"},
                            {"const": "value3", "title": "Third Choice"}]}}
                    }}}),
            )
            .await
        }
        other => plain(other, &args),
    };
    done.map(Into::into)
}

impl McpTool for ConformanceTool {
    fn definition(&self) -> Tool {
        Tool::new(self.name, self.description, self.schema.clone())
    }

    fn required_scopes(&self) -> &[String] {
        &self.scopes
    }

    fn call<'a>(
        &'a self,
        principal: &'a Principal,
        arguments: JsonObject,
    ) -> BoxFuture<'a, Result<CallToolResult, ErrorData>> {
        Box::pin(async move {
            if self.kind == Kind::Dynamic && !self.dynamic_on(&principal.subject) {
                return Err(unknown_dynamic());
            }
            plain(self.kind, &arguments)
        })
    }

    fn listed_for(&self, principal: &Principal) -> bool {
        self.kind != Kind::Dynamic || self.dynamic_on(&principal.subject)
    }

    fn call_in_context<'a>(
        &'a self,
        principal: &'a Principal,
        arguments: JsonObject,
        ctx: CallContext,
    ) -> BoxFuture<'a, Result<CallToolResponse, ErrorData>> {
        match self.kind {
            Kind::Mrtr(m) => {
                let r = mrtr::call(m, self.name, &self.state_key, &ctx);
                Box::pin(async move { r })
            }
            Kind::Dynamic if !self.dynamic_on(&principal.subject) => {
                Box::pin(async { Err(unknown_dynamic()) })
            }
            kind => Box::pin(with_session(kind, arguments, ctx, self.dynamic_for.clone())),
        }
    }

    fn uses_peer(&self) -> bool {
        !matches!(
            self.kind,
            Kind::SimpleText
                | Kind::CustomHeaders
                | Kind::Dynamic
                | Kind::Image
                | Kind::Audio
                | Kind::EmbeddedResource
                | Kind::Mixed
                | Kind::Error
                | Kind::Schema2020
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plain_tool_answers_what_its_scenario_checks() {
        let tools = ToolRegistry::default();
        install(&tools, &["mcp:tools.read".into()]);
        for (name, kind, _, _) in catalogue() {
            let tool = tools.get(name).expect(name);
            assert_eq!(tool.definition().name, name);
            if tool.uses_peer() {
                continue;
            }
            let args = json!({"region": "eu-west"});
            let r =
                serde_json::to_value(plain(kind, args.as_object().unwrap()).expect(name)).unwrap();
            let content = r["content"].as_array().expect("content");
            assert!(!content.is_empty(), "{name}");
            assert_eq!(
                r.get("isError") == Some(&json!(true)),
                kind == Kind::Error,
                "{name}"
            );
        }
        let schema =
            serde_json::to_value(tools.get("json_schema_2020_12_tool").unwrap().definition())
                .unwrap();
        assert_eq!(schema["inputSchema"], schema_2020_12());
    }

    fn principal(subject: &str) -> Principal {
        Principal {
            subject: subject.into(),
            client_id: "c".into(),
            scopes: Default::default(),
            expires_at: i64::MAX,
            token_id: None,
            grant_id: None,
            access_token: None,
        }
    }

    #[tokio::test]
    async fn the_dynamic_tool_is_listed_and_callable_only_for_users_who_switched_it_on() {
        let tools = ToolRegistry::default();
        let dynamic_for = install_set(&tools, &[]);
        let (alice, bob) = (principal("alice"), principal("bob"));
        let listed = |p| {
            let tools = tools.clone();
            async move {
                tools
                    .list_for(Some(&p))
                    .await
                    .iter()
                    .any(|t| t.name == "test_dynamic_tool")
            }
        };
        assert!(!listed(alice.clone()).await);
        let dynamic = tools.get("test_dynamic_tool").unwrap();
        assert!(dynamic.call(&alice, JsonObject::new()).await.is_err());
        // What test_trigger_tool_change does for alice (the set is shared by the whole set).
        let trigger = tools.get("test_trigger_tool_change").unwrap();
        assert!(trigger.listed_for(&alice));
        dynamic_for.lock().unwrap().insert("alice".into());
        assert!(listed(alice.clone()).await);
        assert!(!listed(bob.clone()).await);
        assert!(dynamic.call(&alice, JsonObject::new()).await.is_ok());
        assert!(dynamic.call(&bob, JsonObject::new()).await.is_err());
    }
}
