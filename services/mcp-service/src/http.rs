//! The HTTP face: protected-resource metadata (RFC 9728), and `/mcp`, where every request is
//! checked for Origin/Host, authenticated, and scope-gated before rmcp sees it.

use std::collections::BTreeSet;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use rmcp::transport::streamable_http_server::StreamableHttpService;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::{Challenge, Principal, VerifyError};
use crate::sessions::{ClusterSessionManager, Ownership, RecordedSessions};
use crate::tools::McpServer;

/// The rmcp service behind `/mcp`.
pub type McpHttpService = StreamableHttpService<McpServer, ClusterSessionManager>;

/// Largest accepted `/mcp` request body.
const MAX_BODY: usize = 4 * 1024 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig, state: &AppState) {
    let mcp_path = state.config.mcp_path();
    let metadata_path = url::Url::parse(&state.config.metadata_url())
        .map(|u| u.path().to_owned())
        .unwrap_or_else(|_| "/.well-known/oauth-protected-resource/mcp".into());
    cfg.route(&metadata_path, web::get().to(protected_resource_metadata))
        .route(
            &metadata_path,
            web::method(actix_web::http::Method::OPTIONS).to(preflight),
        )
        .route(&mcp_path, web::route().to(mcp));
}

/// `/healthz`, `/readyz`, `/metrics`: on the admin listener when `admin.addr` is set, else
/// beside the public routes.
pub fn ops_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// RFC 9728 protected-resource metadata.
pub async fn protected_resource_metadata(state: web::Data<AppState>) -> HttpResponse {
    let c = &state.config;
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .json(json!({
            "resource": c.resource,
            "authorization_servers": c.authorization_servers,
            "scopes_supported": c.scopes_supported,
            "bearer_methods_supported": ["header"],
            "resource_name": "mcpauth MCP server",
        }))
}

async fn preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, OPTIONS"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "MCP-Protocol-Version"))
        .finish()
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Ready when the stores answer (Redis in production: sessions and revocation fan-out; the
/// body names the backend) and no shutdown is under way (503 `draining` then).
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.drain.is_draining() {
        return mcpauth_runtime::ops::draining_response();
    }
    let ok = state.stores.sessions.ping().await.is_ok();
    let mut body = serde_json::Map::new();
    body.insert(
        state.stores.backend.to_owned(),
        json!(if ok { "ok" } else { "unavailable" }),
    );
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

fn challenge_scope(state: &AppState, extra: &[String]) -> String {
    let mut all: BTreeSet<&str> = state
        .config
        .scopes_supported
        .iter()
        .map(String::as_str)
        .collect();
    all.extend(extra.iter().map(String::as_str));
    all.into_iter().collect::<Vec<_>>().join(" ")
}

fn unauthorized(state: &AppState, error: Option<(&str, &str)>) -> HttpResponse {
    let scope = challenge_scope(state, &[]);
    let metadata_url = state.config.metadata_url();
    let c = Challenge {
        resource_metadata: &metadata_url,
        scope: &scope,
    };
    let mut r = HttpResponse::Unauthorized();
    r.insert_header((header::WWW_AUTHENTICATE, c.unauthorized(error)));
    cors(&mut r);
    match error {
        Some((code, description)) => {
            r.json(json!({"error": code, "error_description": description}))
        }
        None => r.json(
            json!({"error": "unauthorized", "error_description": "a bearer token is required"}),
        ),
    }
}

fn cors(r: &mut actix_web::HttpResponseBuilder) {
    r.insert_header((
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        "WWW-Authenticate, Mcp-Session-Id",
    ));
}

/// Origin and Host must be ours (DNS-rebinding protection, MCP transports 2025-06-18+). Public
/// for the benchmark example that serves `/mcp` without authentication
/// (`examples/bench_noauth.rs`).
pub fn check_origin_and_host(state: &AppState, req: &HttpRequest) -> Result<(), &'static str> {
    let forbidden = |what: &'static str| what;
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !state
            .config
            .http
            .allowed_origins
            .iter()
            .any(|o| o == origin)
        {
            return Err(forbidden("Origin"));
        }
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !state.allowed_hosts.iter().any(|h| host_matches(h, host)) {
        return Err(forbidden("Host"));
    }
    Ok(())
}

/// Whether a `Host` header (`name`, `name:port`, `[v6]`, `[v6]:port`) names the allowed host
/// `allowed` (case-insensitive; an allowed entry without a port accepts any port).
fn host_matches(allowed: &str, host: &str) -> bool {
    if allowed.eq_ignore_ascii_case(host) {
        return true;
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, tail)) if tail.is_empty() || tail.starts_with(':') => &host[..v6.len() + 2],
            _ => return false,
        }
    } else {
        host.split(':').next().unwrap_or("")
    };
    allowed.eq_ignore_ascii_case(name)
}

/// The bearer token, from the `Authorization` header only (never the query or a cookie).
fn bearer(req: &HttpRequest) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// Every scope a JSON-RPC body's `tools/call` requests need, and whether a tool is unknown.
fn needed_scopes(state: &AppState, body: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return vec![];
    };
    let calls: Vec<&Value> = match &v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut needed = BTreeSet::new();
    for call in calls {
        if call.get("method").and_then(Value::as_str) == Some("tools/call")
            && let Some(name) = call.pointer("/params/name").and_then(Value::as_str)
            && let Some(tool) = state.tools.get(name)
        {
            needed.extend(tool.required_scopes().iter().cloned());
        }
    }
    needed.into_iter().collect()
}

/// `/mcp`: Origin/Host → authentication → scope gate → rmcp.
pub async fn mcp(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    svc: web::Data<McpHttpService>,
) -> actix_web::Result<HttpResponse> {
    if let Err(what) = check_origin_and_host(&state, &req) {
        return Ok(HttpResponse::Forbidden().json(
            json!({"error": "forbidden", "error_description": format!("{what} is not allowed")}),
        ));
    }
    let Some(token) = bearer(&req) else {
        metrics::counter!("mcpauth_mcp_auth_total", "result" => "missing").increment(1);
        return Ok(unauthorized(&state, None));
    };
    // The duration of token verification (a cache probe, or an introspection round trip), for
    // `/metrics` and the benchmarks' cross-check of what authentication costs.
    let started = std::time::Instant::now();
    let verified = state.verifier.verify(token).await;
    metrics::histogram!("mcpauth_mcp_auth_seconds").record(started.elapsed().as_secs_f64());
    let principal: Principal = match verified {
        Ok(p) => p,
        Err(VerifyError::Unavailable(e)) => {
            tracing::warn!(error = %e, "token verification unavailable");
            return Ok(HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "1"))
                .json(json!({"error": "temporarily_unavailable"})));
        }
        Err(e) => {
            metrics::counter!("mcpauth_mcp_auth_total", "result" => "invalid").increment(1);
            tracing::debug!(reason = %e, "bearer token refused");
            return Ok(unauthorized(
                &state,
                Some(("invalid_token", &e.to_string())),
            ));
        }
    };
    metrics::counter!("mcpauth_mcp_auth_total", "result" => "ok").increment(1);
    serve_as(&req, payload, principal, &state, &svc).await
}

/// Serves an authenticated `/mcp` request as `principal`: session ownership for GET and
/// DELETE, the scope gate, then a `tools/call` answered directly (`crate::direct`) or the
/// request handed to rmcp ([`forward`]).
///
/// Public for the benchmark example that serves `/mcp` without authentication
/// (`examples/bench_noauth.rs`); the service itself only calls it from [`mcp`], after the token
/// has been verified.
pub async fn serve_as(
    req: &HttpRequest,
    payload: web::Payload,
    principal: Principal,
    state: &AppState,
    svc: &McpHttpService,
) -> actix_web::Result<HttpResponse> {
    // Sessions (2025-06-18 / 2025-11-25) are bound to the user who created them: rmcp asks the
    // session manager (`has_session`) and the store (`load`), which answer only for the owner
    // (see `sessions`). DELETE does not ask them, so it is checked here.
    let session = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match (&session, req.method().as_str()) {
        (None, "GET") => {
            return Ok(HttpResponse::MethodNotAllowed()
                .insert_header((header::ALLOW, "POST"))
                .json(json!({"error": "method_not_allowed", "error_description": "GET needs an Mcp-Session-Id (server-sent events of a session)"})));
        }
        (Some(id), "DELETE") => match state.sessions.ownership(id, &principal.subject).await {
            Ok(Ownership::Owned) => {}
            Ok(Ownership::NotFound) => return Ok(session_not_found()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a session record");
                return Ok(HttpResponse::ServiceUnavailable()
                    .insert_header((header::RETRY_AFTER, "1"))
                    .json(json!({"error": "temporarily_unavailable"})));
            }
        },
        _ => {}
    }

    let body = payload
        .to_bytes_limited(MAX_BODY)
        .await
        .map_err(|_| actix_web::error::ErrorPayloadTooLarge("request body too large"))??;

    let mut direct = None;
    if req.method() == actix_web::http::Method::POST {
        // A plain `tools/call` in a session is parsed once, typed; anything else as JSON.
        if session.is_some() {
            direct = crate::direct::parse(&state.tools, &body);
        }
        let needed = match &direct {
            Some(call) => call.required_scopes().to_vec(),
            None => needed_scopes(state, &body),
        };
        let missing = state.scopes.missing(&principal.scopes, &needed);
        if !missing.is_empty() {
            metrics::counter!("mcpauth_mcp_auth_total", "result" => "insufficient_scope")
                .increment(1);
            let scope = challenge_scope(state, &needed);
            let metadata_url = state.config.metadata_url();
            let c = Challenge {
                resource_metadata: &metadata_url,
                scope: &scope,
            };
            let description = format!("this operation needs {}", missing.join(" "));
            let mut r = HttpResponse::Forbidden();
            r.insert_header((header::WWW_AUTHENTICATE, c.insufficient_scope(&description)));
            cors(&mut r);
            return Ok(r.json(json!({"error": "insufficient_scope", "error_description": description, "scope": scope})));
        }
    }
    // Unless the headers or the session rule it out after all: then rmcp answers.
    if let Some(call) = direct
        && let Some(response) = crate::direct::answer(state, req, &principal, call).await
    {
        return Ok(response);
    }

    forward(req, body, principal, &state.revoked, svc).await
}

/// Hands an authenticated `/mcp` request to rmcp as `principal` (sessions are bound to its
/// subject; tools find it in the request's extensions) and turns rmcp's answer into an actix
/// response. The `Authorization` header is not passed on. Event streams end when the
/// principal's token expires or a revocation in `revoked` covers it.
async fn forward(
    req: &HttpRequest,
    body: web::Bytes,
    principal: Principal,
    revoked: &tokio::sync::broadcast::Sender<crate::revocations::Revoked>,
    svc: &McpHttpService,
) -> actix_web::Result<HttpResponse> {
    // Rebuild an http 1 request for rmcp; the token stays behind (tools never see it).
    let mut b = http::Request::builder()
        .method(req.method().as_str())
        .uri(req.uri().to_string());
    for (name, value) in req.headers() {
        if name != header::AUTHORIZATION {
            b = b.header(name.as_str(), value.as_bytes());
        }
    }
    let mut hreq = b
        .body(Full::new(body))
        .map_err(actix_web::error::ErrorBadRequest)?;
    let subject = principal.subject.clone();
    // A POST of a session answers in one JSON body when its first message is the response.
    let json_if_terminal = req.method() == actix_web::http::Method::POST
        && req.headers().contains_key("mcp-session-id");
    let stream_guard = StreamGuard {
        principal: principal.clone(),
        revoked: revoked.subscribe(),
    };
    hreq.extensions_mut().insert(principal);
    // rmcp runs handlers on its own tasks: tool calls find the request's span here.
    if mcpauth_runtime::telemetry::exporting() {
        hreq.extensions_mut()
            .insert(crate::tools::RequestSpan(tracing::Span::current()));
    }

    let (parts, body) = crate::sessions::as_subject(&subject, svc.handle(hreq))
        .await
        .into_parts();
    let status =
        StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let is_sse = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let build = |content_type: Option<&'static str>| {
        let mut out = HttpResponse::build(status);
        for (name, value) in &parts.headers {
            if content_type.is_none() || name != http::header::CONTENT_TYPE {
                out.append_header((name.as_str(), value.as_bytes()));
            }
        }
        if let Some(ct) = content_type {
            out.insert_header((header::CONTENT_TYPE, ct));
        }
        cors(&mut out);
        out
    };
    if is_sse {
        let (prefix, rest) = if json_if_terminal && status == StatusCode::OK {
            match first_event(body).await {
                FirstEvent::Terminal(json) => {
                    return Ok(build(Some("application/json")).body(json));
                }
                FirstEvent::Stream(prefix, rest) => (prefix, rest),
            }
        } else {
            (web::Bytes::new(), body)
        };
        let mut out = build(None);
        out.insert_header((
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity"),
        ));
        let head = (!prefix.is_empty()).then_some(Ok::<_, std::convert::Infallible>(prefix));
        let stream = futures_util::stream::iter(head).chain(rest.into_data_stream());
        // An event stream lives no longer than the token that opened it.
        Ok(out.streaming(stream.take_until(stream_guard.ended())))
    } else {
        let mut out = build(None);
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Ok(out.body(bytes))
    }
}

type RmcpBody = http_body_util::combinators::BoxBody<web::Bytes, std::convert::Infallible>;

/// What begins an event stream rmcp answered a session's POST with.
enum FirstEvent {
    /// The first message is the JSON-RPC response (or error) itself: the whole answer, sent as
    /// one `application/json` body (one write instead of a priming event, the message and the
    /// end of the chunked stream, each flushed on its own).
    Terminal(web::Bytes),
    /// Anything else (a notification or a server request first, or no message): the bytes read
    /// so far and the rest, streamed as they were.
    Stream(web::Bytes, RmcpBody),
}

/// Reads `body` up to its first event that carries data (rmcp's priming event has none) and
/// decides from it whether the answer can be plain JSON. MCP lets the server answer a POST with
/// either content type; rmcp 3.9 picks event streams for every request of a session (its
/// `json_response` option applies to stateless requests only). rmcp writes each message as a
/// single `data:` line of compact JSON, events separated by a blank line.
async fn first_event(mut body: RmcpBody) -> FirstEvent {
    let mut buf = web::BytesMut::new();
    let mut scanned = 0;
    loop {
        while let Some(end) = find(&buf[scanned..], b"\n\n").map(|i| scanned + i) {
            let mut offset = scanned;
            let event = &buf[scanned..end];
            scanned = end + 2;
            let mut data: Option<(usize, usize)> = None;
            let mut lines = 0;
            for line in event.split(|b| *b == b'\n') {
                if let Some(v) = line.strip_prefix(b"data:") {
                    let v = v.strip_prefix(b" ").unwrap_or(v);
                    let start = offset + (line.len() - v.len());
                    data = Some((start, start + v.len()));
                    lines += 1;
                }
                offset += line.len() + 1;
            }
            match data {
                Some((start, end)) if end > start => {
                    if lines == 1 && is_response(&buf[start..end]) {
                        return FirstEvent::Terminal(buf.freeze().slice(start..end));
                    }
                    return FirstEvent::Stream(buf.freeze(), body);
                }
                // No data (the priming event, a comment): keep reading.
                _ => {}
            }
        }
        match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => buf.extend_from_slice(&data),
                Err(_) => return FirstEvent::Stream(buf.freeze(), body),
            },
            Some(Err(never)) => match never {},
            None => return FirstEvent::Stream(buf.freeze(), body),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether a JSON-RPC message is a response or an error (it has an `id` and no `method`).
fn is_response(json: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        method: Option<serde::de::IgnoredAny>,
        id: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Probe>(json).is_ok_and(|p| p.method.is_none() && p.id.is_some())
}

fn session_not_found() -> HttpResponse {
    HttpResponse::NotFound().json(
        json!({"jsonrpc": "2.0", "error": {"code": -32001, "message": "session not found"}, "id": null}),
    )
}

/// Ends an event stream when its token expires or is revoked.
struct StreamGuard {
    principal: Principal,
    revoked: tokio::sync::broadcast::Receiver<crate::revocations::Revoked>,
}

impl StreamGuard {
    async fn ended(mut self) {
        let now = crate::verify::cache::now_secs();
        let left = u64::try_from(self.principal.expires_at.saturating_sub(now)).unwrap_or(0);
        let expiry = tokio::time::sleep(std::time::Duration::from_secs(left.min(365 * 86_400)));
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                () = &mut expiry => return,
                r = self.revoked.recv() => match r {
                    Ok(rev) if self.principal.revoked_by(&rev) => return,
                    Ok(_) => {}
                    // Revocations were missed: end the stream, the client reconnects.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await
                    }
                },
            }
        }
    }
}

/// Builds the rmcp service behind `/mcp`: sessions are recorded in the session store (any
/// replica restores any session), and rmcp's cancellation token is the app's, cancelled at shutdown so open event
/// streams end cleanly.
pub fn mcp_service(state: &AppState) -> McpHttpService {
    let server = McpServer {
        tools: state.tools.clone(),
        scopes: state.scopes.clone(),
        sessions: state.sessions.clone(),
        log_level: Default::default(),
    };
    let mut config = rmcp::transport::streamable_http_server::StreamableHttpServerConfig::default()
        .with_allowed_hosts(state.allowed_hosts.iter().cloned())
        .with_cancellation_token(state.cancel.clone());
    config.session_store = Some(Arc::new(RecordedSessions::new(state.sessions.clone())));
    StreamableHttpService::new(
        // One handler per session, with its own log level.
        move || {
            Ok(McpServer {
                log_level: Default::default(),
                ..server.clone()
            })
        },
        Arc::new(ClusterSessionManager::new(state.sessions.clone())),
        config,
    )
}
