//! `GET /authorize`: checks an authorization request and starts the browser flow (`browser`),
//! which goes on at `/login` and `/consent`.
//!
//! Until the client, its redirect URI and its intent (`response_type=code` from a client of the
//! code grant, a bounded `state`) are verified, every error is an HTML page: nothing is ever
//! redirected to an unverified URI or for a request that is not an authorization request
//! (RFC 9700 §4.11.2). After that, errors go back to the client with `error`, `state` and `iss`
//! (RFC 9207). docs/security.md lists which errors go where.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::clients::LookupError;
use crate::domain::pkce;
use crate::domain::redirect_uri::find_match;
use crate::domain::scope::ScopeSet;
use crate::domain::token::{hash, hex};
use crate::error::OAuthError;
use crate::http::browser::{BROWSER_COOKIE, Callback, cookie, proceed};
use crate::http::pages;
use crate::http::{Bucket, client_ip, parse_params, rate_limit};
use crate::state::AppState;
use crate::store::clients::Client;
use crate::store::ephemeral::PendingAuthorization;

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
        device: None,
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
