//! `GET /authorize`, and the login and consent steps between it and the redirect back.
//!
//! Until the client, its redirect URI and its intent (`response_type=code` from a client of the
//! code grant, a bounded `state`) are verified, every error is an HTML page: nothing is ever
//! redirected to an unverified URI or for a request that is not an authorization request
//! (RFC 9700 §4.11.2). After that, errors go back to the client with `error`, `state` and `iss`
//! (RFC 9207). docs/security.md lists which errors go where.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use uuid::Uuid;

use crate::app::AppState;
use crate::audit::{AuditEvent, AuditKind};
use crate::clients::LookupError;
use crate::domain::pkce;
use crate::domain::redirect_uri::{find_match, is_loopback_host};
use crate::domain::scope::ScopeSet;
use crate::domain::token::{OpaqueKind, hash, hex};
use crate::error::OAuthError;
use crate::http::pages::{self, ConsentView};
use crate::http::{Bucket, client_ip, form_body, parse_params, rate_limit};
use crate::store::clients::Client;
use crate::store::ephemeral::{CodeRecord, PendingAuthorization};

/// Binds a pending authorization to the browser that started it.
pub(crate) const BROWSER_COOKIE: &str = "__Host-mcpauth_browser";
/// The browser's login session.
pub(crate) const SESSION_COOKIE: &str = "__Host-mcpauth_session";

/// Where the response to an authorization request goes once the redirect URI is trusted.
pub(crate) struct Callback<'a> {
    pub redirect_uri: &'a str,
    pub state: Option<&'a str>,
    pub issuer: &'a str,
}

impl Callback<'_> {
    pub fn redirect(&self, params: &[(&str, &str)]) -> HttpResponse {
        let mut url =
            url::Url::parse(self.redirect_uri).expect("registered redirect URIs are absolute");
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
            if let Some(s) = self.state {
                q.append_pair("state", s);
            }
            q.append_pair("iss", self.issuer);
        }
        HttpResponse::Found()
            .insert_header(("Location", url.as_str()))
            .insert_header(("Cache-Control", "no-store"))
            .finish()
    }

    pub fn error(&self, e: &OAuthError) -> HttpResponse {
        let mut params = vec![("error", e.error)];
        if let Some(d) = &e.error_description {
            params.push(("error_description", d.as_str()));
        }
        self.redirect(&params)
    }
}

pub(crate) fn cookie<'c>(name: &'c str, value: String, max_age_secs: i64) -> Cookie<'c> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(max_age_secs))
        .finish()
}

/// `GET /authorize`
pub async fn authorize(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if let Err(e) = rate_limit(&state, &req, Bucket::Authorize).await {
        return actix_web::ResponseError::error_response(&e);
    }
    let params = match parse_params(req.query_string().as_bytes()) {
        Ok(p) => p,
        Err(e) => return pages::error_page(e.error, e.error_description.as_deref().unwrap_or("")),
    };
    // 1. The client and the redirect URI. Errors here never redirect.
    let Some(client_id) = params.get("client_id").filter(|c| !c.is_empty()) else {
        return pages::error_page("invalid_request", "client_id is missing");
    };
    let ip = client_ip(&state, &req);
    let client = match state.clients.get_from(client_id, ip.as_deref()).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return pages::error_page(
                "invalid_client",
                "this application is not registered with this server",
            );
        }
        Err(LookupError::Cimd(crate::cimd::CimdError::RateLimited(retry))) => {
            return actix_web::ResponseError::error_response(&OAuthError::rate_limited(retry));
        }
        Err(LookupError::Cimd(e)) => {
            return pages::error_page("invalid_client", &e.to_string());
        }
        Err(LookupError::Store(e)) => {
            let e = OAuthError::server_error(e);
            return pages::error_page(e.error, "the server could not look up the application");
        }
    };
    let redirect_uri = match params.get("redirect_uri") {
        Some(r) => match find_match(&client.redirect_uris, r) {
            Some(_) => r.clone(),
            None => {
                return pages::error_page(
                    "invalid_request",
                    "redirect_uri is not registered for this application",
                );
            }
        },
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => return pages::error_page("invalid_request", "redirect_uri is required"),
    };
    // 2. The client's intent: an authorization code request (RFC 9700 §4.11.2). A request that
    //    is not one, or whose `state` could not be sent back, gets a page too: an error
    //    redirect would turn the server into a redirector to whatever URI a client registered.
    if let Err(e) = check_intent(&client, &params) {
        return pages::error_page(e.error, e.error_description.as_deref().unwrap_or(""));
    }
    let cb = Callback {
        redirect_uri: &redirect_uri,
        state: params.get("state").map(String::as_str),
        issuer: &state.config.issuer,
    };
    // 3. Everything else: errors go back to the (now trusted) redirect URI.
    let validated = match validate_request(&state, &client, &params) {
        Ok(v) => v,
        Err(e) => return cb.error(&e),
    };
    let mut binding_value = req.cookie(BROWSER_COOKIE).map(|c| c.value().to_owned());
    let new_binding = binding_value.is_none();
    let binding = binding_value
        .get_or_insert_with(|| state.tokens.keys.random_id() + &state.tokens.keys.random_id());
    let pending = PendingAuthorization {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        state: params.get("state").cloned(),
        code_challenge: validated.challenge,
        scope: validated.scope.to_string(),
        resource: validated.resource,
        csrf: state.tokens.keys.random_id(),
        browser_sha256: hex(&hash(binding)),
        user_id: None,
        authenticated_at: None,
        force_consent: params
            .get("prompt")
            .is_some_and(|p| p.split(' ').any(|v| v == "consent")),
        redirect_uri_given: params.contains_key("redirect_uri"),
    };
    let request_id = state.tokens.keys.random_id();
    let mut resp = proceed(&state, &req, &client, &request_id, pending).await;
    if new_binding {
        let _ = resp.add_cookie(&cookie(BROWSER_COOKIE, binding.clone(), 86_400));
    }
    resp
}

struct ValidatedRequest {
    challenge: String,
    scope: ScopeSet,
    resource: String,
}

/// What must hold before any error is redirected: `response_type=code` from a client that
/// may use the authorization code grant, with a `state` of bounded size.
fn check_intent(client: &Client, p: &HashMap<String, String>) -> Result<(), OAuthError> {
    match p.get("response_type").map(String::as_str) {
        Some("code") => {}
        None => return Err(OAuthError::invalid_request("response_type is missing")),
        Some(_) => {
            return Err(OAuthError::unsupported_response_type(
                "only response_type=code is supported",
            ));
        }
    }
    if !client.allows_grant("authorization_code") {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the authorization_code grant",
        ));
    }
    if let Some(st) = p.get("state") {
        crate::domain::client_metadata::check_state(st).map_err(OAuthError::invalid_request)?;
    }
    Ok(())
}

fn validate_request(
    state: &AppState,
    client: &Client,
    p: &HashMap<String, String>,
) -> Result<ValidatedRequest, OAuthError> {
    if p.get("request").is_some() || p.get("request_uri").is_some() {
        return Err(OAuthError::new(
            "request_not_supported",
            StatusCode::BAD_REQUEST,
            "request objects are not supported",
        ));
    }
    let challenge = pkce::validate_challenge(
        p.get("code_challenge").map(String::as_str),
        p.get("code_challenge_method").map(String::as_str),
    )
    .map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    let resource = state.resolve_resource(p.get("resource").map(String::as_str))?;
    let scope = state.resolve_scope(client, &resource, p.get("scope").map(String::as_str), true)?;
    Ok(ValidatedRequest {
        challenge,
        scope,
        resource,
    })
}

/// Moves a pending authorization forward: login if needed, consent if needed, then the code.
async fn proceed(
    state: &AppState,
    req: &HttpRequest,
    client: &Client,
    request_id: &str,
    mut pending: PendingAuthorization,
) -> HttpResponse {
    let ttl = state.config.login.pending_ttl_secs;
    let mut set_session = None;
    if pending.user_id.is_none() {
        pending.user_id = match session_user(state, req).await {
            Ok(Some(u)) => Some(u),
            Ok(None) => match state.login.automatic_identity() {
                Some(identity) => match state
                    .users
                    .upsert(identity.provider, &identity.subject, &identity.username)
                    .await
                {
                    Ok(u) => Some(u),
                    Err(e) => return server_error_page(e),
                },
                None => None,
            },
            Err(e) => return server_error_page(e),
        };
        if pending.user_id.is_some() {
            pending.authenticated_at = Some(chrono::Utc::now().timestamp());
        }
        if let Some(u) = pending.user_id
            && state.login.automatic_identity().is_some()
        {
            set_session = Some(u);
        }
    }
    let Some(user_id) = pending.user_id else {
        if let Err(e) = state.ephemeral.pending.put(request_id, &pending, ttl).await {
            return server_error_page(e);
        }
        // Delegated login: consent first (MCP security best practices, confused deputy), the
        // upstream redirect only once the user approved this client.
        if state.login.upstream_provider().is_some() {
            return consent_response(state, request_id, &pending, client);
        }
        return pages::login_form(
            request_id,
            &pending.csrf,
            client_display_name(client),
            false,
        );
    };
    let consented = if state.login.auto_consent() {
        true
    } else if pending.force_consent {
        false
    } else {
        match state
            .users
            .consented_scope(user_id, &client.client_id, &pending.resource)
            .await
        {
            Ok(Some(s)) => ScopeSet::parse(&pending.scope)
                .ok()
                .zip(ScopeSet::parse(&s).ok())
                .is_some_and(|(asked, granted)| asked.is_subset(&granted)),
            Ok(None) => false,
            Err(e) => return server_error_page(e),
        }
    };
    let mut resp = if consented {
        let _ = state.ephemeral.pending.take(request_id).await;
        issue_code(state, req, &pending, user_id).await
    } else {
        if let Err(e) = state.ephemeral.pending.put(request_id, &pending, ttl).await {
            return server_error_page(e);
        }
        consent_response(state, request_id, &pending, client)
    };
    if let Some(u) = set_session
        && let Some(c) = new_session(state, u).await
    {
        let _ = resp.add_cookie(&c);
    }
    resp
}

pub(crate) fn server_error_page(e: impl std::fmt::Display) -> HttpResponse {
    let e = OAuthError::server_error(e);
    let mut r = pages::error_page(
        e.error,
        "the server could not process the request, please try again",
    );
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

pub(crate) fn client_display_name(c: &Client) -> &str {
    c.client_name.as_deref().unwrap_or(&c.client_id)
}

fn consent_response(
    state: &AppState,
    request_id: &str,
    p: &PendingAuthorization,
    client: &Client,
) -> HttpResponse {
    // Before a delegated login the page also says where the user signs in and what that
    // provider is asked for.
    let upstream = match (p.user_id, state.login.upstream_provider()) {
        (None, Some(name)) => state.upstream.get(name),
        _ => None,
    };
    let upstream_scopes = upstream
        .as_ref()
        .map(|u| u.cfg.requested_scopes())
        .unwrap_or_default();
    let url = url::Url::parse(&p.redirect_uri).ok();
    let host = url
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let loopback = url
        .as_ref()
        .and_then(|u| u.host())
        .is_some_and(|h| is_loopback_host(&h));
    let scopes: Vec<&str> = p.scope.split(' ').filter(|s| !s.is_empty()).collect();
    pages::consent_form(&ConsentView {
        request_id,
        csrf: &p.csrf,
        client_name: client_display_name(client),
        client_id: &client.client_id,
        redirect_host: &host,
        redirect_uri: &p.redirect_uri,
        redirect_is_loopback: loopback,
        scopes,
        resource: &p.resource,
        upstream: upstream
            .as_ref()
            .map(|u| (u.display_name(), upstream_scopes.as_slice())),
    })
}

pub(crate) async fn session_user(
    state: &AppState,
    req: &HttpRequest,
) -> Result<Option<Uuid>, crate::error::StoreError> {
    match req.cookie(SESSION_COOKIE) {
        Some(c) => state.ephemeral.sessions.get(&hash(c.value())).await,
        None => Ok(None),
    }
}

pub(crate) async fn new_session(state: &AppState, user: Uuid) -> Option<Cookie<'static>> {
    let value = state.tokens.keys.random_id() + &state.tokens.keys.random_id();
    let ttl = state.config.login.session_ttl_secs;
    match state.ephemeral.sessions.put(&hash(&value), user, ttl).await {
        Ok(()) => Some(cookie(SESSION_COOKIE, value, ttl as i64)),
        Err(e) => {
            tracing::warn!(error = %e, "could not store browser session");
            None
        }
    }
}

/// Issues the single-use code and redirects back to the client.
pub(crate) async fn issue_code(
    state: &AppState,
    req: &HttpRequest,
    p: &PendingAuthorization,
    user_id: Uuid,
) -> HttpResponse {
    let cb = Callback {
        redirect_uri: &p.redirect_uri,
        state: p.state.as_deref(),
        issuer: &state.config.issuer,
    };
    // A user revoked (`admin revoke-user`) since this request learnt who they are gets no
    // code: the consent page may have stayed open in a hijacked browser while the operator
    // acted. A request without that instant (stored by an earlier version) counts as older.
    if state
        .tokens
        .deny
        .user_revoked_before(&user_id.to_string())
        .is_some_and(|t| p.authenticated_at.is_none_or(|at| at <= t))
    {
        return cb.error(&OAuthError::access_denied(
            "this sign-in was revoked; sign in again",
        ));
    }
    // A disabled user gets no code (the operator's `admin disable-user`).
    match crate::user_admin::is_disabled(state, user_id).await {
        Ok(false) => {}
        Ok(true) => {
            return cb.error(&OAuthError::access_denied("this account is disabled"));
        }
        Err(e) => return cb.error(&OAuthError::server_error(e)),
    }
    let code = state.tokens.keys.mint_opaque(OpaqueKind::AuthorizationCode);
    let record = CodeRecord {
        issued_at: chrono::Utc::now().timestamp(),
        client_id: p.client_id.clone(),
        redirect_uri: p.redirect_uri.clone(),
        redirect_uri_given: p.redirect_uri_given,
        code_challenge: p.code_challenge.clone(),
        scope: p.scope.clone(),
        resource: p.resource.clone(),
        user_id,
    };
    if let Err(e) = state
        .ephemeral
        .codes
        .put(&hash(&code), &record, state.config.tokens.code_ttl_secs)
        .await
    {
        return cb.error(&OAuthError::server_error(e));
    }
    state
        .audit
        .record(
            AuditEvent::new(AuditKind::CodeIssued)
                .client(&p.client_id)
                .user(user_id)
                .ip(client_ip(state, req))
                .detail(json!({"scope": p.scope, "resource": p.resource})),
        )
        .await;
    cb.redirect(&[("code", &code)])
}

/// Loads the pending request named in a form and checks that this browser started it and that
/// the form's CSRF token matches.
async fn pending_for_form(
    state: &AppState,
    req: &HttpRequest,
    form: &HashMap<String, String>,
) -> Result<(String, PendingAuthorization, Arc<Client>), HttpResponse> {
    let expired = || {
        pages::error_page(
            "invalid_request",
            "this sign-in request has expired or is unknown; start again from the application",
        )
    };
    let request_id = form.get("request").ok_or_else(expired)?.clone();
    let pending = match state.ephemeral.pending.get(&request_id).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(expired()),
        Err(e) => return Err(server_error_page(e)),
    };
    let browser_ok = req.cookie(BROWSER_COOKIE).is_some_and(|c| {
        crate::domain::token::hash_matches(
            c.value(),
            &crate::domain::token::unhex(&pending.browser_sha256).unwrap_or_default(),
        )
    });
    let csrf_ok = form.get("csrf").is_some_and(|c| {
        subtle::ConstantTimeEq::ct_eq(c.as_bytes(), pending.csrf.as_bytes()).into()
    });
    if !browser_ok || !csrf_ok {
        return Err(pages::page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "<h1>Request refused</h1><p>This form was not submitted from the browser that started the sign-in.</p>",
        ));
    }
    let client = match state.clients.get(&pending.client_id).await {
        Ok(Some(c)) => c,
        _ => return Err(expired()),
    };
    // The client may have changed its redirect URIs (RFC 7592) since /authorize verified this
    // one: never send anything to a URI that is no longer registered.
    if find_match(&client.redirect_uris, &pending.redirect_uri).is_none() {
        let _ = state.ephemeral.pending.take(&request_id).await;
        return Err(pages::error_page(
            "invalid_request",
            "the application's redirect URI changed; start again from the application",
        ));
    }
    Ok((request_id, pending, client))
}

#[derive(serde::Deserialize)]
pub struct RequestQuery {
    request: String,
}

/// `GET /login?request=…` (re-shows the form).
pub async fn login_page(state: web::Data<AppState>, q: web::Query<RequestQuery>) -> HttpResponse {
    match state.ephemeral.pending.get(&q.request).await {
        Ok(Some(p)) => {
            let name = match state.clients.get(&p.client_id).await {
                Ok(Some(c)) => client_display_name(&c).to_owned(),
                _ => p.client_id.clone(),
            };
            pages::login_form(&q.request, &p.csrf, &name, false)
        }
        Ok(None) => pages::error_page(
            "invalid_request",
            "this sign-in request has expired; start again from the application",
        ),
        Err(e) => server_error_page(e),
    }
}

/// `POST /login`
pub async fn login_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Err(e) = rate_limit(&state, &req, Bucket::Login).await {
        let mut resp = pages::page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "<h1>Too many sign-in attempts</h1><p>Wait a minute, then try again.</p>",
        );
        if let Some(s) = e.retry_after
            && let Ok(v) = actix_web::http::header::HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut()
                .insert(actix_web::http::header::RETRY_AFTER, v);
        }
        return resp;
    }
    let form = match form_body(&req, &body) {
        Ok(f) => f,
        Err(e) => return pages::error_page(e.error, e.error_description.as_deref().unwrap_or("")),
    };
    let (request_id, mut pending, client) = match pending_for_form(&state, &req, &form).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let username = form.get("username").map(String::as_str).unwrap_or("");
    let password = form.get("password").map(String::as_str).unwrap_or("");
    let Some(identity) = state.login.verify_password(username, password).await else {
        state
            .audit
            .record(
                AuditEvent::new(AuditKind::LoginFailed)
                    .client(&client.client_id)
                    .ip(client_ip(&state, &req)),
            )
            .await;
        return pages::login_form(
            &request_id,
            &pending.csrf,
            client_display_name(&client),
            true,
        );
    };
    let user_id = match state
        .users
        .upsert(identity.provider, &identity.subject, &identity.username)
        .await
    {
        Ok(u) => u,
        Err(e) => return server_error_page(e),
    };
    state
        .audit
        .record(
            AuditEvent::new(AuditKind::LoginSucceeded)
                .client(&client.client_id)
                .user(user_id)
                .ip(client_ip(&state, &req)),
        )
        .await;
    pending.user_id = Some(user_id);
    pending.authenticated_at = Some(chrono::Utc::now().timestamp());
    // A fresh CSRF token for the consent step.
    pending.csrf = state.tokens.keys.random_id();
    let mut resp = proceed(&state, &req, &client, &request_id, pending).await;
    if let Some(c) = new_session(&state, user_id).await {
        let _ = resp.add_cookie(&c);
    }
    resp
}

/// `GET /consent?request=…`
pub async fn consent_page(state: web::Data<AppState>, q: web::Query<RequestQuery>) -> HttpResponse {
    let delegated = state.login.upstream_provider().is_some();
    match state.ephemeral.pending.get(&q.request).await {
        Ok(Some(p)) if p.user_id.is_some() || delegated => {
            match state.clients.get(&p.client_id).await {
                Ok(Some(c)) => consent_response(&state, &q.request, &p, &c),
                _ => pages::error_page("invalid_request", "unknown application"),
            }
        }
        Ok(_) => pages::error_page(
            "invalid_request",
            "this request has expired; start again from the application",
        ),
        Err(e) => server_error_page(e),
    }
}

/// `POST /consent`
pub async fn consent_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let form = match form_body(&req, &body) {
        Ok(f) => f,
        Err(e) => return pages::error_page(e.error, e.error_description.as_deref().unwrap_or("")),
    };
    let (request_id, pending, client) = match pending_for_form(&state, &req, &form).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let user_id = match (pending.user_id, state.login.upstream_provider()) {
        (Some(u), _) => Some(u),
        (None, Some(_)) => None,
        (None, None) => return pages::error_page("invalid_request", "sign in first"),
    };
    // Single use: a second submission of the same form finds nothing.
    match state.ephemeral.pending.take(&request_id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return pages::error_page("invalid_request", "this request was already answered");
        }
        Err(e) => return server_error_page(e),
    }
    let ip = client_ip(&state, &req);
    if form.get("decision").map(String::as_str) != Some("allow") {
        let mut ev = AuditEvent::new(AuditKind::ConsentDenied)
            .client(&client.client_id)
            .ip(ip);
        if let Some(u) = user_id {
            ev = ev.user(u);
        }
        state.audit.record(ev).await;
        let cb = Callback {
            redirect_uri: &pending.redirect_uri,
            state: pending.state.as_deref(),
            issuer: &state.config.issuer,
        };
        return cb.error(&OAuthError::access_denied("the user denied the request"));
    }
    let Some(user_id) = user_id else {
        // Consent given before the delegated login: the user is not known yet. The decision
        // travels with the upstream state and is recorded for the user at the callback.
        state
            .audit
            .record(
                AuditEvent::new(AuditKind::ConsentGranted)
                    .client(&client.client_id)
                    .ip(ip)
                    .detail(json!({"scope": pending.scope, "resource": pending.resource, "before_login": true})),
            )
            .await;
        let provider = state
            .login
            .upstream_provider()
            .unwrap_or_default()
            .to_owned();
        return crate::http::upstream::redirect_upstream(
            &state,
            &provider,
            crate::store::ephemeral::UpstreamPurpose::Login {
                pending: Box::new(pending),
            },
        )
        .await;
    };
    if let Err(e) = state
        .users
        .record_consent(
            user_id,
            &client.client_id,
            &pending.resource,
            &pending.scope,
        )
        .await
    {
        return server_error_page(e);
    }
    state
        .audit
        .record(
            AuditEvent::new(AuditKind::ConsentGranted)
                .client(&client.client_id)
                .user(user_id)
                .ip(ip)
                .detail(json!({"scope": pending.scope, "resource": pending.resource})),
        )
        .await;
    issue_code(&state, &req, &pending, user_id).await
}
