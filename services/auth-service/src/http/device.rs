//! RFC 8628 device authorization: `POST /device_authorization` (the device asks for a code
//! pair) and the verification page `GET/POST /device` (the user enters the user code, then
//! signs in and consents exactly as at `/authorize`, through `browser::proceed`). The device
//! polls `/token` (`grants::device_code`). docs/device-flow.md describes the whole flow.
//!
//! User-code entry is the one place where a guess could authorize something, so it is bounded
//! twice: per client IP (`device.entries_per_ip` submissions per rate-limit window) and for
//! everyone together (`device.failure_budget` wrong codes per window, after which entry pauses).
//! Both counts are in the shared ephemeral store, so they hold across replicas, and they apply
//! whether or not `rate_limit.enabled` is set: they are the brute-force bound, not a courtesy.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{AuditEvent, AuditKind};
use crate::domain::token::{OpaqueKind, hash, hex};
use crate::domain::user_code;
use crate::error::OAuthError;
use crate::http::browser::{BROWSER_COOKIE, cookie, proceed, server_error_page};
use crate::http::grants::device_code::GRANT_TYPE;
use crate::http::{
    Bucket, authenticate_client, client_ip, form_body, pages, rate_limit, rate_limit_client,
};
use crate::state::AppState;
use crate::store::ephemeral::{DeviceAuthorization, PendingAuthorization};

/// The verification page, relative to the issuer.
pub(crate) const VERIFICATION_PATH: &str = "/device";

/// Attempts to allocate a user code not in use before giving up (with 20^8 codes a collision
/// is already unlikely; five in a row means the store is misbehaving).
const USER_CODE_TRIES: usize = 5;

/// RFC 8628 §3.2 device authorization response.
#[derive(Debug, Serialize)]
struct DeviceAuthorizationResponse {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: String,
    expires_in: u64,
    interval: u64,
}

/// `POST /device_authorization` (RFC 8628 §3.1): client authentication as at `/token`, scope
/// and `resource` as at `/authorize`.
pub async fn device_authorization(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    rate_limit(&state, &req, Bucket::Token).await?;
    let form = form_body(&req, &body)?;
    let client = authenticate_client(&state, &req, &form).await?;
    rate_limit_client(&state, &req, &client).await?;
    if !client.allows_grant(GRANT_TYPE) {
        return Err(OAuthError::unauthorized_client(
            "this client is not registered for the device_code grant",
        ));
    }
    let resource = state.resolve_resource(form.get("resource").map(String::as_str))?;
    let scope = state.resolve_scope(
        &client,
        &resource,
        form.get("scope").map(String::as_str),
        true,
    )?;
    let cfg = &state.config.device;
    let now = chrono::Utc::now().timestamp();
    let auth = DeviceAuthorization {
        client_id: client.client_id.clone(),
        scope: scope.to_string(),
        resource,
        issued_at: now,
        expires_at: now + cfg.code_ttl_secs as i64,
    };
    let device_code = state.tokens.keys.mint_opaque(OpaqueKind::DeviceCode);
    let device_sha = hash(&device_code);
    let mut shown = None;
    for _ in 0..USER_CODE_TRIES {
        let code = user_code::generate(cfg.user_code_length, |b| state.tokens.keys.fill_random(b));
        let plain = code.replace('-', "");
        if state
            .ephemeral
            .device_codes
            .put(&device_sha, &hash(&plain), &auth, cfg.interval_secs)
            .await?
        {
            shown = Some(code);
            break;
        }
    }
    let Some(user_code) = shown else {
        return Err(OAuthError::server_error("no free user code was found"));
    };
    state
        .audit
        .record(
            AuditEvent::new(AuditKind::DeviceAuthorized)
                .client(&client.client_id)
                .ip(client_ip(&state, &req))
                .detail(json!({"scope": auth.scope, "resource": auth.resource})),
        )
        .await;
    state.clients.mark_used(&client.client_id);
    let verification_uri = format!("{}{VERIFICATION_PATH}", state.config.issuer);
    let mut complete = url::Url::parse(&verification_uri)
        .map_err(|e| OAuthError::server_error(format!("issuer is not a URL: {e}")))?;
    complete
        .query_pairs_mut()
        .append_pair("user_code", &user_code);
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"))
        .json(DeviceAuthorizationResponse {
            device_code,
            user_code,
            verification_uri,
            verification_uri_complete: complete.into(),
            expires_in: cfg.code_ttl_secs,
            interval: cfg.interval_secs,
        }))
}

#[derive(Deserialize)]
pub struct EntryQuery {
    user_code: Option<String>,
}

/// The CSRF token of the entry form: derived from the browser-binding cookie (HttpOnly,
/// unguessable), so a form posted from another site, which cannot read it, is refused.
fn entry_csrf(binding: &str) -> String {
    hex(&hash(&format!("{binding}\ndevice-entry")))
}

/// `GET /device[?user_code=…]`: the entry form, prefilled from `verification_uri_complete`.
pub async fn entry_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<EntryQuery>,
) -> HttpResponse {
    let existing = req.cookie(BROWSER_COOKIE).map(|c| c.value().to_owned());
    let binding = existing
        .clone()
        .unwrap_or_else(|| state.tokens.keys.random_id() + &state.tokens.keys.random_id());
    // Only a well-formed code is echoed back into the form.
    let prefill = q
        .user_code
        .as_deref()
        .and_then(|c| user_code::normalise(c, state.config.device.user_code_length))
        .map(|c| user_code::display(&c))
        .unwrap_or_default();
    let mut resp = pages::device_entry_form(&entry_csrf(&binding), &prefill, None);
    if existing.is_none() {
        let _ = resp.add_cookie(&cookie(BROWSER_COOKIE, binding, 86_400));
    }
    resp
}

fn too_many(message: &str, retry: u64) -> HttpResponse {
    let mut resp = pages::message(StatusCode::TOO_MANY_REQUESTS, "Too many attempts", message);
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&retry.to_string()) {
        resp.headers_mut()
            .insert(actix_web::http::header::RETRY_AFTER, v);
    }
    resp
}

/// `POST /device`: checks the user code, then hands the request to the same login and consent
/// steps as `/authorize`.
pub async fn entry_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let cfg = &state.config.device;
    let counters = &state.ephemeral.rate_limits;
    let window_secs = state.config.rate_limit.window_secs.max(1);
    let now = chrono::Utc::now().timestamp();
    let window = now as u64 / window_secs;
    let retry = ((window + 1) * window_secs)
        .saturating_sub(now as u64)
        .max(1);
    let ip = client_ip(&state, &req).unwrap_or_else(|| "unknown".into());
    match counters
        .count("device_entry", &ip, window, window_secs)
        .await
    {
        Ok(n) if n > cfg.entries_per_ip => {
            metrics::counter!("mcpauth_rate_limited_total", "endpoint" => "device_entry")
                .increment(1);
            return too_many(
                "Too many codes were entered from here; wait a minute.",
                retry,
            );
        }
        Ok(_) => {}
        Err(e) => return server_error_page(e),
    }
    match counters
        .requests_counted("device_fail", "all", window)
        .await
    {
        Ok(n) if n >= cfg.failure_budget => {
            metrics::counter!("mcpauth_rate_limited_total", "endpoint" => "device_failures")
                .increment(1);
            return too_many(
                "Code entry is paused after too many wrong codes; try again in a minute.",
                retry,
            );
        }
        Ok(_) => {}
        Err(e) => return server_error_page(e),
    }
    let form = match form_body(&req, &body) {
        Ok(f) => f,
        Err(e) => return pages::error_page(e.error, e.error_description.as_deref().unwrap_or("")),
    };
    let Some(binding) = req.cookie(BROWSER_COOKIE).map(|c| c.value().to_owned()) else {
        return refused();
    };
    let csrf = entry_csrf(&binding);
    let csrf_ok = form
        .get("csrf")
        .is_some_and(|c| subtle::ConstantTimeEq::ct_eq(c.as_bytes(), csrf.as_bytes()).into());
    if !csrf_ok {
        return refused();
    }
    let typed = form.get("user_code").map(String::as_str).unwrap_or("");
    let found = match user_code::normalise(typed, cfg.user_code_length) {
        Some(code) => {
            match state
                .ephemeral
                .device_codes
                .pending_by_user_code(&hash(&code), now)
                .await
            {
                Ok(f) => f,
                Err(e) => return server_error_page(e),
            }
        }
        None => None,
    };
    let Some((device_sha, auth)) = found else {
        if let Err(e) = counters
            .count("device_fail", "all", window, window_secs)
            .await
        {
            return server_error_page(e);
        }
        metrics::counter!("mcpauth_device_user_code_failures_total").increment(1);
        return pages::device_entry_form(
            &csrf,
            "",
            Some("That code is not valid or has expired. Check the code on your device."),
        );
    };
    let client = match state.clients.get(&auth.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return pages::message(
                StatusCode::BAD_REQUEST,
                "Device not connected",
                "The application of this device is no longer registered.",
            );
        }
        Err(e) => return server_error_page(e),
    };
    let pending = PendingAuthorization {
        client_id: auth.client_id,
        redirect_uri: String::new(),
        redirect_uri_given: false,
        state: None,
        code_challenge: String::new(),
        scope: auth.scope,
        resource: auth.resource,
        csrf: state.tokens.keys.random_id(),
        browser_sha256: hex(&hash(&binding)),
        user_id: None,
        authenticated_at: None,
        force_consent: true,
        device: Some(hex(&device_sha)),
    };
    let request_id = state.tokens.keys.random_id();
    proceed(&state, &req, &client, &request_id, pending).await
}

fn refused() -> HttpResponse {
    pages::page(
        StatusCode::FORBIDDEN,
        "Request refused",
        "<h1>Request refused</h1><p>This form was not submitted from this site. Open the page again and enter the code.</p>",
    )
}
