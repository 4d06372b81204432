//! Tools: a small trait for tools that run as the calling user, a registry, and the rmcp
//! `ServerHandler` that serves them. The built-in `whoami` reports who the caller is.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

use futures_util::future::BoxFuture;
use rmcp::model::SubscriptionFilter;
// MCP logging is deprecated by SEP-2577 but part of 2025-06-18 / 2025-11-25 (see
// `CallContext::log_info`).
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, RequestMetaObject,
    ServerCapabilities, ServerConfig, Tool,
};
#[allow(deprecated)]
use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam, SetLevelRequestParams};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};
use serde_json::json;
use tracing::Instrument;

use crate::auth::{Principal, ScopePolicy};

/// A tool that runs as the authenticated user.
pub trait McpTool: Send + Sync + 'static {
    /// Name, description and input schema, as `tools/list` shows them.
    fn definition(&self) -> Tool;
    /// Scopes a caller needs; checked before the call reaches the tool (403 step-up).
    fn required_scopes(&self) -> &[String];
    /// Runs the tool as `principal`.
    fn call<'a>(
        &'a self,
        principal: &'a Principal,
        arguments: JsonObject,
    ) -> BoxFuture<'a, Result<CallToolResult, ErrorData>>;
    /// Runs the tool with the session's peer at hand (for tools that send requests to the
    /// client, such as elicitations). Default: [`McpTool::call`]. A tool that overrides it must
    /// also answer `true` from [`McpTool::uses_peer`].
    fn call_with_peer<'a>(
        &'a self,
        principal: &'a Principal,
        arguments: JsonObject,
        _peer: Peer<RoleServer>,
    ) -> BoxFuture<'a, Result<CallToolResult, ErrorData>> {
        self.call(principal, arguments)
    }
    /// Whether a call talks back to the client through the session (see
    /// [`McpTool::call_with_peer`]). Calls of tools that do not are answered by the HTTP bridge
    /// itself (`crate::direct`); the others go through rmcp's session worker.
    /// Runs the tool with everything the request carries besides its arguments (the peer, the
    /// request's `_meta` with its progress token, the session's log level), and may answer with
    /// a 2026-07-28 `InputRequiredResult` instead of a result. Default:
    /// [`McpTool::call_with_peer`]. As with that one, a tool that overrides it must answer
    /// `true` from [`McpTool::uses_peer`] (the direct path has no context to give).
    fn call_in_context<'a>(
        &'a self,
        principal: &'a Principal,
        arguments: JsonObject,
        context: CallContext,
    ) -> BoxFuture<'a, Result<CallToolResponse, ErrorData>> {
        Box::pin(async move {
            self.call_with_peer(principal, arguments, context.peer)
                .await
                .map(Into::into)
        })
    }
    fn uses_peer(&self) -> bool {
        false
    }
    /// When `tools/list` shows this tool to a user.
    fn availability(&self) -> Availability<'_> {
        Availability::Always
    }
    /// Whether `tools/list` shows this tool to `principal`, for a tool whose presence depends
    /// on the caller in a way [`McpTool::availability`] does not cover (the conformance set's
    /// `test_dynamic_tool`, switched per user by `test_trigger_tool_change`). Default: yes.
    fn listed_for(&self, _principal: &Principal) -> bool {
        true
    }
}

/// When a tool is listed: always, or depending on whether the user has connected an upstream
/// provider (connector tools, and the authorize tool that stands in for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability<'a> {
    Always,
    Connected(&'a str),
    NotConnected(&'a str),
}

/// What a `tools/call` that goes through rmcp carries besides the caller and the arguments
/// (see [`McpTool::call_in_context`]).
pub struct CallContext {
    /// The session's (or, on 2026-07-28, the request's) peer: notifications sent through it
    /// reach the stream of this request.
    pub peer: Peer<RoleServer>,
    /// The request's `_meta` (`progressToken`, …).
    pub meta: RequestMetaObject,
    /// `inputResponses` and `requestState` of a retried call (2026-07-28 multi-round trips).
    pub input_responses: Option<rmcp::model::InputResponses>,
    pub request_state: Option<String>,
    /// The caller's subject (for notifications addressed to them).
    pub subject: String,
    /// Where cluster-wide notifications go (`tools/list_changed`).
    pub sessions: Option<crate::sessions::SessionHub>,
    log_level: SessionLogLevel,
}

impl CallContext {
    /// A context for a call through `peer` with `meta`, in a session whose log level is
    /// `log_level`.
    pub fn new(
        peer: Peer<RoleServer>,
        meta: RequestMetaObject,
        log_level: SessionLogLevel,
    ) -> Self {
        Self {
            peer,
            meta,
            input_responses: None,
            request_state: None,
            subject: String::new(),
            sessions: None,
            log_level,
        }
    }

    /// Whether the request came in on the 2026-07-28 stateless revision (its `_meta` carries
    /// the protocol version).
    pub fn stateless(&self) -> bool {
        self.meta.protocol_version().is_some()
    }

    /// Sends an `info` log notification (`notifications/message`) unless the client asked
    /// (`logging/setLevel`) for a more severe minimum.
    #[allow(deprecated)] // MCP logging, deprecated by SEP-2577 but part of 2025-06-18 / 2025-11-25
    pub async fn log_info(&self, message: &str) -> Result<(), rmcp::ServiceError> {
        // 2026-07-28: a request asks for logs with `_meta` `logLevel`, and gets none without
        // it; earlier revisions: the session's `logging/setLevel`, every level until then.
        let min = match self.meta.log_level() {
            Some(level) => Some(level),
            None if self.stateless() => return Ok(()),
            None => self.log_level.get(),
        };
        if min.is_some_and(|min| severity(LoggingLevel::Info) < severity(min)) {
            return Ok(());
        }
        let param: LoggingMessageNotificationParam = serde_json::from_value(
            serde_json::json!({"level": "info", "logger": "mcp-service", "data": message}),
        )
        .expect("a valid logging notification");
        self.peer.notify_logging_message(param).await
    }
}

/// RFC 5424 order of MCP log levels (rmcp's `LoggingLevel` has no `Ord`).
#[allow(deprecated)]
fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// The minimum log level a session's client asked for with `logging/setLevel` (none: every
/// level). Per session and per replica: a session restored on another replica starts again
/// without one, as the spec allows (the server picks the level until the client sets one).
#[derive(Clone, Default)]
#[allow(deprecated)] // see CallContext::log_info
pub struct SessionLogLevel(Arc<Mutex<Option<LoggingLevel>>>);

#[allow(deprecated)]
impl SessionLogLevel {
    fn get(&self) -> Option<LoggingLevel> {
        *self.0.lock().expect("log level")
    }

    fn set(&self, level: LoggingLevel) {
        *self.0.lock().expect("log level") = Some(level);
    }
}

/// Which upstream providers a user has connected.
pub trait Connections: Send + Sync + 'static {
    /// `None` when it cannot be told right now (then connector tools are listed, and a call
    /// explains what is wrong).
    fn connected<'a>(&'a self, principal: &'a Principal)
    -> BoxFuture<'a, Option<BTreeSet<String>>>;
}

/// The tools this server offers, shared by every session.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: Arc<RwLock<BTreeMap<String, Arc<dyn McpTool>>>>,
    connections: Arc<RwLock<Option<Arc<dyn Connections>>>>,
}

impl ToolRegistry {
    pub fn register(&self, tool: Arc<dyn McpTool>) {
        let name = tool.definition().name.to_string();
        self.tools
            .write()
            .expect("tool registry")
            .insert(name, tool);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn McpTool>> {
        self.tools.read().expect("tool registry").get(name).cloned()
    }

    pub fn list(&self) -> Vec<Tool> {
        self.tools
            .read()
            .expect("tool registry")
            .values()
            .map(|t| t.definition())
            .collect()
    }

    /// Makes the listing per user (see [`Availability`]).
    pub fn set_connections(&self, connections: Arc<dyn Connections>) {
        *self.connections.write().expect("tool registry") = Some(connections);
    }

    /// The tools `principal` sees.
    pub async fn list_for(&self, principal: Option<&Principal>) -> Vec<Tool> {
        let tools: Vec<Arc<dyn McpTool>> = self
            .tools
            .read()
            .expect("tool registry")
            .values()
            .cloned()
            .collect();
        let source = self.connections.read().expect("tool registry").clone();
        let gated = tools
            .iter()
            .any(|t| t.availability() != Availability::Always);
        let connected = match (source, principal) {
            (Some(source), Some(p)) if gated => source.connected(p).await,
            _ => None,
        };
        tools
            .iter()
            .filter(|t| principal.is_none_or(|p| t.listed_for(p)))
            .filter(|t| match (t.availability(), &connected) {
                (Availability::Always, _) => true,
                (Availability::Connected(p), Some(set)) => set.contains(p),
                (Availability::NotConnected(p), Some(set)) => !set.contains(p),
                // Unknown: list what the user most likely has; a call explains the rest.
                (Availability::Connected(_), None) => true,
                (Availability::NotConnected(_), None) => false,
            })
            .map(|t| t.definition())
            .collect()
    }
}

/// The trace span of the HTTP request that carried a JSON-RPC request, when traces are on
/// (rmcp runs handlers on session tasks, outside that request's span).
#[derive(Clone)]
pub struct RequestSpan(pub tracing::Span);

/// The span of the HTTP request that carried `ctx`, when traces are on.
fn request_span(ctx: &RequestContext<RoleServer>) -> Option<&tracing::Span> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<RequestSpan>())
        .map(|s| &s.0)
}

/// A `tools/call` span, a child of the HTTP request's span; disabled without one (traces off).
fn tool_span(parent: Option<&tracing::Span>, tool: &str) -> tracing::Span {
    let Some(parent) = parent else {
        return tracing::Span::none();
    };
    tracing::info_span!(
        target: mcpauth_runtime::telemetry::TARGET,
        parent: parent,
        "tools/call",
        otel.name = format!("tools/call {tool}"),
        otel.status_code = tracing::field::Empty,
        mcp.method.name = "tools/call",
        gen_ai.tool.name = tool,
    )
}

/// Runs `tool` (registered as `name`) as `principal`: the one `tools/call` step shared by rmcp's
/// handler ([`McpServer::call_tool`]) and the bridge's direct path (`crate::direct`). Scopes are
/// checked again here (the HTTP layer already answered 403 for a missing one: defence in depth).
/// `parent` is the HTTP request's span when traces are on.
pub async fn invoke(
    scopes: &ScopePolicy,
    principal: &Principal,
    name: &str,
    tool: &dyn McpTool,
    arguments: Option<JsonObject>,
    context: Option<CallContext>,
    parent: Option<&tracing::Span>,
) -> Result<CallToolResponse, ErrorData> {
    let missing = scopes.missing(&principal.scopes, tool.required_scopes());
    if !missing.is_empty() {
        return Err(ErrorData::invalid_request(
            format!("insufficient scope: {}", missing.join(" ")),
            None,
        ));
    }
    let args = arguments.unwrap_or_default();
    // `name` is a registered tool's name (looked up by the caller), never caller text.
    let span = tool_span(parent, name);
    let call = match context {
        Some(context) => tool.call_in_context(principal, args, context),
        None => Box::pin(async move { tool.call(principal, args).await.map(Into::into) }),
    };
    let mut result = call.instrument(span.clone()).await;
    // 2026-07-28 requires `resultType` on every result, and rmcp fills in only cache hints: a
    // result a tool built by deserializing JSON has none. Set it here, for both paths; answers
    // to earlier revisions drop it again (rmcp's handler, `crate::direct`).
    if let Ok(CallToolResponse::Complete(r)) = &mut result
        && r.result_type.is_none()
    {
        r.result_type = Some(rmcp::model::ResultType::COMPLETE);
    }
    if result.as_ref().map_or(
        true,
        |r| matches!(r, CallToolResponse::Complete(r) if r.is_error == Some(true)),
    ) {
        span.record("otel.status_code", "ERROR");
    }
    result
}

/// The principal of the HTTP request that carried this JSON-RPC request.
pub fn principal(ctx: &RequestContext<RoleServer>) -> Option<&Principal> {
    ctx.extensions
        .get::<http::request::Parts>()?
        .extensions
        .get::<Principal>()
}

/// The rmcp handler: one per session (cheap: `Arc` clones).
#[derive(Clone)]
pub struct McpServer {
    pub tools: ToolRegistry,
    pub scopes: ScopePolicy,
    /// Where 2026-07-28 `subscriptions/listen` streams register for cluster notifications.
    pub sessions: crate::sessions::SessionHub,
    /// This session's `logging/setLevel` (a fresh one per session: see `http::mcp_service`).
    pub log_level: SessionLogLevel,
}

impl ServerHandler for McpServer {
    #[allow(deprecated)] // enable_logging: see CallContext::log_info
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                // `logging/setLevel` is answered (2025 revisions): tools may log to the client
                // through their call context, at the level the client asked for.
                .enable_logging()
                .build(),
        );
        info.server_info.name = "mcpauth-mcp-service".into();
        info.server_info.version = env!("CARGO_PKG_VERSION").into();
        info
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(&[
            ProtocolVersion::V_2025_06_18,
            ProtocolVersion::V_2025_11_25,
            ProtocolVersion::V_2026_07_28,
        ])
    }

    fn accepted_subscription_filter(
        &self,
        _requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(SubscriptionFilter::builder().tools_list_changed().build())
    }

    /// A 2026-07-28 listen stream: registered for this user's cluster-wide notifications
    /// (`SessionHub::notify_tools_changed`) until the client goes away.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let subject = principal(context.request_context())
            .map(|p| p.subject.clone())
            .ok_or_else(|| {
                ErrorData::internal_error("listen without an authenticated principal", None)
            })?;
        let _registered = self
            .sessions
            .register_listener(&subject, context.sink().clone());
        context.cancelled().await;
        Ok(())
    }

    #[allow(deprecated)] // MCP logging (see CallContext::log_info)
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.log_level.set(request.level);
        Ok(())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            self.tools.list_for(principal(&context)).await,
        ))
    }

    // rmcp answers `prompts/list`, `resources/list`, `resources/templates/list` and
    // `completion/complete` with empty results even when the server declared none of those
    // capabilities; 2026-07-28 (SEP-2575) requires a server that handles a method to declare
    // its capability. mcp-service offers tools only: these are "method not found", as
    // `prompts/get` and `resources/read` already are in rmcp.
    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, ErrorData> {
        Err(ErrorData::method_not_found::<
            rmcp::model::ListPromptsRequestMethod,
        >())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        Err(ErrorData::method_not_found::<
            rmcp::model::ListResourcesRequestMethod,
        >())
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourceTemplatesResult, ErrorData> {
        Err(ErrorData::method_not_found::<
            rmcp::model::ListResourceTemplatesRequestMethod,
        >())
    }

    async fn complete(
        &self,
        _request: rmcp::model::CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CompleteResult, ErrorData> {
        Err(ErrorData::method_not_found::<
            rmcp::model::CompleteRequestMethod,
        >())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.get(name).map(|t| t.definition())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let principal = principal(&context).cloned().ok_or_else(|| {
            ErrorData::internal_error(
                "request reached a tool without an authenticated principal",
                None,
            )
        })?;
        let tool = self.tools.get(&request.name).ok_or_else(|| {
            ErrorData::invalid_params(format!("unknown tool {}", request.name), None)
        })?;
        metrics::counter!("mcpauth_mcp_tool_calls_total", "path" => "rmcp").increment(1);
        let result = invoke(
            &self.scopes,
            &principal,
            &request.name,
            tool.as_ref(),
            request.arguments,
            Some(CallContext {
                input_responses: request.input_responses,
                request_state: request.request_state,
                subject: principal.subject.clone(),
                sessions: Some(self.sessions.clone()),
                ..CallContext::new(
                    context.peer.clone(),
                    context.meta.clone(),
                    self.log_level.clone(),
                )
            }),
            request_span(&context),
        )
        .await?;
        Ok(result)
    }
}

/// `whoami`: who the server thinks the caller is. Never returns the token.
pub struct WhoAmI {
    scopes: Vec<String>,
}

impl WhoAmI {
    pub fn new(required_scopes: Vec<String>) -> Self {
        Self {
            scopes: required_scopes,
        }
    }
}

impl McpTool for WhoAmI {
    fn definition(&self) -> Tool {
        let schema: JsonObject =
            serde_json::from_value(json!({"type": "object", "properties": {}}))
                .expect("static schema is an object");
        Tool::new(
            "whoami",
            "Returns the authenticated subject, client, scopes and token expiry of this request.",
            Arc::new(schema),
        )
    }

    fn required_scopes(&self) -> &[String] {
        &self.scopes
    }

    fn call<'a>(
        &'a self,
        p: &'a Principal,
        _arguments: JsonObject,
    ) -> BoxFuture<'a, Result<CallToolResult, ErrorData>> {
        Box::pin(async move {
            let body = json!({
                "subject": p.subject,
                "client_id": p.client_id,
                "scopes": p.scopes,
                "expires_at": p.expires_at,
            });
            Ok(CallToolResult::success(vec![ContentBlock::text(
                body.to_string(),
            )]))
        })
    }
}
