//! What the browser-facing endpoints share (`/authorize`, `/login`, `/consent`,
//! `/upstream/callback`, `/connect`, `/logout`): the cookies that bind a flow to its browser and
//! hold the login session, the checks on the flow's forms, error pages, the step that moves a
//! pending authorization on (login, consent, code) and the issuing of the code with the redirect
//! back to the client. It lives apart from every endpoint so that the endpoint modules depend on
//! it and never on each other.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;
use uuid::Uuid;

use crate::audit::{AuditEvent, AuditKind};
use crate::domain::redirect_uri::{find_match, is_loopback_host};
use crate::domain::scope::ScopeSet;
use crate::domain::token::{OpaqueKind, hash};
use crate::error::OAuthError;
use crate::http::client_ip;
use crate::http::pages::{self, ConsentView};
use crate::state::AppState;
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
        // A device authorization has no redirect URI: the browser is told the outcome.
        let Ok(mut url) = url::Url::parse(self.redirect_uri) else {
            return device_outcome(params);
        };
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

/// The page a device flow ends on in the browser (the device learns the outcome by polling).
fn device_outcome(params: &[(&str, &str)]) -> HttpResponse {
    let error = params.iter().find(|(k, _)| *k == "error").map(|(_, v)| *v);
    match error {
        None => pages::message(
            StatusCode::OK,
            "Device connected",
            "You may close this page and return to your device.",
        ),
        Some(e) => {
            let description = params
                .iter()
                .find(|(k, _)| *k == "error_description")
                .map_or(e, |(_, v)| *v);
            pages::message(StatusCode::BAD_REQUEST, "Device not connected", description)
        }
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
/// Moves a pending authorization forward: login if needed, consent if needed, then the code.
pub(crate) async fn proceed(
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
    // A device authorization always asks: the click on the consent page is the user's explicit
    // confirmation that the code came from their own device (RFC 8628 §5.4).
    let consented = if pending.device.is_some() {
        false
    } else if state.login.auto_consent() {
        true
    } else if pending.force_consent {
        false
    } else {
        match state
            .consents
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

pub(crate) fn consent_response(
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
        device: p.device.is_some(),
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
    let refusal = if state
        .tokens
        .deny
        .user_revoked_before(&user_id.to_string())
        .is_some_and(|t| p.authenticated_at.is_none_or(|at| at <= t))
    {
        Some(OAuthError::access_denied(
            "this sign-in was revoked; sign in again",
        ))
    } else {
        // A disabled user gets no code (the operator's `admin disable-user`).
        match crate::user_admin::is_disabled(state, user_id).await {
            Ok(false) => None,
            Ok(true) => Some(OAuthError::access_denied("this account is disabled")),
            Err(e) => return cb.error(&OAuthError::server_error(e)),
        }
    };
    if let Some(device) = &p.device {
        return decide_device(state, req, p, device, user_id, refusal).await;
    }
    if let Some(e) = refusal {
        return cb.error(&e);
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

/// The end of a device authorization's browser flow: the user approved (or, with `refusal`,
/// may not approve), and the device code learns it for its next poll.
async fn decide_device(
    state: &AppState,
    req: &HttpRequest,
    p: &PendingAuthorization,
    device_sha256_hex: &str,
    user_id: Uuid,
    refusal: Option<OAuthError>,
) -> HttpResponse {
    use crate::store::ephemeral::DeviceDecision;
    let Some(device) = crate::domain::token::unhex(device_sha256_hex) else {
        return server_error_page("a pending device authorization is corrupt");
    };
    let decision = match refusal {
        Some(_) => DeviceDecision::Denied,
        None => DeviceDecision::Approved {
            user_id,
            authenticated_at: p
                .authenticated_at
                .unwrap_or_else(|| chrono::Utc::now().timestamp()),
        },
    };
    let now = chrono::Utc::now().timestamp();
    match state
        .ephemeral
        .device_codes
        .decide(&device, decision, now)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return pages::message(
                StatusCode::BAD_REQUEST,
                "Device not connected",
                "This code has expired or was already used; start again on your device.",
            );
        }
        Err(e) => return server_error_page(e),
    }
    if let Some(e) = refusal {
        return device_outcome(&[
            ("error", e.error),
            (
                "error_description",
                e.error_description.as_deref().unwrap_or(""),
            ),
        ]);
    }
    state
        .audit
        .record(
            AuditEvent::new(AuditKind::DeviceApproved)
                .client(&p.client_id)
                .user(user_id)
                .ip(client_ip(state, req))
                .detail(json!({"scope": p.scope, "resource": p.resource})),
        )
        .await;
    device_outcome(&[])
}

/// Loads the pending request named in a form and checks that this browser started it and that
/// the form's CSRF token matches.
pub(crate) async fn pending_for_form(
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
    if !redirect_still_registered(&pending, &client) {
        let _ = state.ephemeral.pending.take(&request_id).await;
        return Err(pages::error_page(
            "invalid_request",
            "the application's redirect URI changed; start again from the application",
        ));
    }
    Ok((request_id, pending, client))
}

/// Whether a pending request's redirect URI is still one of its client's (a device
/// authorization has none to check).
pub(crate) fn redirect_still_registered(p: &PendingAuthorization, client: &Client) -> bool {
    p.device.is_some() || find_match(&client.redirect_uris, &p.redirect_uri).is_some()
}

#[derive(serde::Deserialize)]
pub struct RequestQuery {
    pub(crate) request: String,
}
