//! The HTTP face (actix-web): thin handlers that parse, call the engine and storage, and answer
//! in the shapes RFC 6749, 7591, 7592, 7009, 7662, 8414 and 9207 prescribe.

mod authorize;
mod browser;
mod connect;
mod consent;
mod device;
pub mod grants;
mod login;
mod logout;
mod metadata;
mod ops;
mod pages;
mod register;
mod revoke_introspect;
mod token;
pub(crate) mod upstream;

use std::collections::HashMap;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, web};

use crate::domain::input::has_control;
use crate::error::OAuthError;
use crate::state::AppState;

/// `/healthz`, `/readyz`, `/metrics`: on the admin listener when `admin.addr` is set, else
/// beside the public routes.
pub fn ops_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz))
        .route("/metrics", web::get().to(ops::metrics));
}

/// Registers every public route (OAuth, pages); [`ops_routes`] are separate.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/.well-known/oauth-authorization-server",
        web::get().to(metadata::authorization_server),
    )
    // RFC 8414 §3.1: for an issuer with a path, the well-known segment goes between host and
    // path (`https://example.com/.well-known/oauth-authorization-server/auth`).
    .route(
        "/.well-known/oauth-authorization-server/{issuer_path:.*}",
        web::get().to(metadata::authorization_server_with_path),
    )
    .route("/jwks", web::get().to(metadata::jwks))
    .route("/register", web::post().to(register::create))
    .route("/register/{client_id}", web::get().to(register::read))
    .route("/register/{client_id}", web::put().to(register::update))
    .route("/register/{client_id}", web::delete().to(register::delete))
    .route("/authorize", web::get().to(authorize::authorize))
    .route("/login", web::get().to(login::login_page))
    .route("/login", web::post().to(login::login_submit))
    .route("/logout", web::post().to(logout::logout))
    .route("/consent", web::get().to(consent::consent_page))
    .route("/consent", web::post().to(consent::consent_submit))
    .route("/upstream/callback", web::get().to(upstream::callback))
    .route("/connect/{ticket}", web::get().to(connect::show))
    .route("/connect/{ticket}", web::post().to(connect::submit))
    .route("/token", web::post().to(token::token))
    .route(
        "/device_authorization",
        web::post().to(device::device_authorization),
    )
    .route("/device", web::get().to(device::entry_page))
    .route("/device", web::post().to(device::entry_submit))
    .route("/revoke", web::post().to(revoke_introspect::revoke))
    .route("/introspect", web::post().to(revoke_introspect::introspect));
}

/// Parses an `application/x-www-form-urlencoded` body or query. RFC 6749 §3.1: parameters
/// MUST NOT be included more than once. No name or value may hold a control character
/// (`domain::input`).
pub(crate) fn parse_params(raw: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw) {
        if has_control(&k) || has_control(&v) {
            let name = if has_control(&k) {
                "a parameter name"
            } else {
                &*k
            };
            return Err(OAuthError::invalid_request(format!(
                "{name} contains a control character"
            )));
        }
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter {k} was given more than once"
            )));
        }
    }
    Ok(out)
}

/// Returns the form body of a POST, refusing other content types.
pub(crate) fn form_body(
    req: &HttpRequest,
    body: &[u8],
) -> Result<HashMap<String, String>, OAuthError> {
    let ct = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(OAuthError::invalid_request(
            "content type must be application/x-www-form-urlencoded",
        ));
    }
    parse_params(body)
}

/// The client address used for rate limits, audit and logs: the TCP peer, or behind trusted
/// proxies (`http.trusted_proxies`) the right-most untrusted address of the configured
/// forwarding header (`crate::proxy`).
pub(crate) fn client_ip(state: &AppState, req: &HttpRequest) -> Option<String> {
    let peer = req.peer_addr()?.ip();
    let proxies = &state.config.http.proxies;
    let values = req
        .headers()
        .get_all(proxies.header().name())
        .filter_map(|v| v.to_str().ok());
    Some(proxies.client_ip(peer, values).to_string())
}

/// Authenticates the client of a token, revocation or introspection request, recording a failed
/// authentication in the audit trail.
pub(crate) async fn authenticate_client(
    state: &AppState,
    req: &HttpRequest,
    form: &HashMap<String, String>,
) -> Result<std::sync::Arc<crate::store::clients::Client>, OAuthError> {
    let ip = client_ip(state, req);
    let result = state.clients.authenticate(req, form, ip.as_deref()).await;
    if let Err(e) = &result
        && e.error == "invalid_client"
    {
        let mut ev = crate::audit::AuditEvent::new(crate::audit::AuditKind::ClientAuthFailed)
            .ip(ip)
            .detail(serde_json::json!({"endpoint": req.path()}));
        if let Some(id) = form.get("client_id") {
            ev = ev.client(id);
        }
        state.audit.record(ev).await;
    }
    result
}

/// A rate-limited endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bucket {
    Register,
    Token,
    Authorize,
    /// Password attempts at `POST /login`.
    Login,
}

/// Counts the request in the shared (Redis) fixed window; 429 with `Retry-After` past the limit.
/// Redis being unreachable does not take the endpoint down: the request is let through and logged.
pub(crate) async fn rate_limit(
    state: &AppState,
    req: &HttpRequest,
    bucket: Bucket,
) -> Result<(), OAuthError> {
    let rl = &state.config.rate_limit;
    if !rl.enabled {
        return Ok(());
    }
    let (name, limit) = match bucket {
        Bucket::Register => ("register", rl.register),
        Bucket::Token => ("token", rl.token),
        Bucket::Authorize => ("authorize", rl.authorize),
        Bucket::Login => ("login", rl.login),
    };
    let ip = client_ip(state, req).unwrap_or_else(|| "unknown".into());
    let now = chrono::Utc::now().timestamp() as u64;
    match state.rate_limiter.check(name, &ip, limit, now).await {
        crate::ratelimit::Verdict::Allow => Ok(()),
        crate::ratelimit::Verdict::Deny(retry) => {
            metrics::counter!("mcpauth_rate_limited_total", "endpoint" => name).increment(1);
            tracing::debug!(ip = %ip, bucket = name, "rate limited");
            Err(OAuthError::rate_limited(retry))
        }
    }
}

/// The per-client `/token` limit (`rate_limit.token_per_client`), checked once the client is
/// authenticated: a confidential client's budget is its own wherever it calls from; a public
/// client (which anyone may name) has one budget per client and IP. A request refused here hands
/// back the per-IP `token` count it took, so that a client held back by its own limit does not
/// use up the budget of the other clients behind the same address.
pub(crate) async fn rate_limit_client(
    state: &AppState,
    req: &HttpRequest,
    client: &crate::store::clients::Client,
) -> Result<(), OAuthError> {
    let rl = &state.config.rate_limit;
    if !rl.enabled {
        return Ok(());
    }
    let ip = client_ip(state, req).unwrap_or_else(|| "unknown".into());
    let key = if client.is_public() {
        format!("{}\n{ip}", client.client_id)
    } else {
        client.client_id.clone()
    };
    // Client ids are up to 2 KiB (metadata document URLs): the window key holds a digest.
    let subject = crate::domain::token::hex(&crate::domain::token::hash(&key)[..16]);
    let now = chrono::Utc::now().timestamp() as u64;
    match state
        .rate_limiter
        .check("token_client", &subject, rl.token_per_client, now)
        .await
    {
        crate::ratelimit::Verdict::Allow => Ok(()),
        crate::ratelimit::Verdict::Deny(retry) => {
            state.rate_limiter.refund("token", &ip, rl.token, now).await;
            metrics::counter!("mcpauth_rate_limited_total", "endpoint" => "token_client")
                .increment(1);
            tracing::debug!(ip = %ip, client_id = %client.client_id, "client rate limited");
            Err(OAuthError::rate_limited(retry))
        }
    }
}

/// A path whose decoded form holds a control character (`/register/a%00b`) names nothing this
/// server has and must not reach a lookup: 400 `invalid_request` before routing.
pub(crate) async fn refuse_control_characters_in_path(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    if crate::domain::input::percent_decoded_has_control(req.path()) {
        let e = OAuthError::invalid_request("the path contains a control character");
        let resp = actix_web::ResponseError::error_response(&e);
        return Ok(req.into_response(resp).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Request count and latency per route pattern (bounded label cardinality).
pub(crate) async fn record_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let res = next.call(req).await?;
    let status = res.status().as_u16().to_string();
    metrics::histogram!("mcpauth_http_request_duration_seconds", "route" => route.clone(), "method" => method.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("mcpauth_http_requests_total", "route" => route, "method" => method, "status" => status).increment(1);
    Ok(res)
}

/// CORS for browser-based MCP clients (MCP-AUTH-SPEC E.12) on the endpoints they call with
/// An issuer with a path (`https://example.com/auth`) puts every endpoint under that path. Behind
/// a proxy that forwards the path as it is, requests arrive as `/auth/token`: they are routed as
/// `/token`. (A proxy that strips the prefix needs nothing.) The path-inserted metadata URL keeps
/// its form.
pub(crate) async fn issuer_path_prefix(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let prefix = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.config.issuer_path().to_owned())
        .unwrap_or_default();
    if !prefix.is_empty() {
        let path = req.path();
        let rest = path
            .strip_prefix(prefix.as_str())
            .filter(|r| r.starts_with('/'));
        if let Some(rest) = rest {
            let pq = match req.uri().query() {
                Some(q) => format!("{rest}?{q}"),
                None => rest.to_owned(),
            };
            if let Ok(uri) = pq.parse::<actix_web::http::Uri>() {
                req.match_info_mut().get_mut().update(&uri);
                req.head_mut().uri = uri;
            }
        }
    }
    next.call(req).await
}

/// `fetch`: metadata, registration, token, revocation, introspection. Tokens travel in headers
/// and bodies, never cookies, so any origin may call them. The browser-facing pages
/// (`/authorize`, `/login`, `/consent`) are navigations and get no CORS headers.
pub(crate) async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    use actix_web::http::{Method, header};
    let path = req.path();
    let applies = path.starts_with("/.well-known/")
        || path.starts_with("/register")
        || matches!(
            path,
            "/token" | "/revoke" | "/introspect" | "/device_authorization" | "/jwks"
        );
    if !applies || !req.headers().contains_key(header::ORIGIN) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    if req.method() == Method::OPTIONS {
        let resp = actix_web::HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_METHODS,
                "GET, POST, PUT, DELETE, OPTIONS",
            ))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Authorization, Content-Type, MCP-Protocol-Version, Mcp-Method, Mcp-Name",
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
            .finish();
        return Ok(req.into_response(resp).map_into_right_body());
    }
    let mut res = next.call(req).await?;
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        header::HeaderValue::from_static("WWW-Authenticate, Retry-After"),
    );
    Ok(res.map_into_left_body())
}
