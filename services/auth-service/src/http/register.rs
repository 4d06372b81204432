//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::audit::{AuditEvent, AuditKind};
use crate::domain::client_metadata as limits;
use crate::domain::redirect_uri::validate_for_registration;
use crate::domain::scope::ScopeSet;
use crate::domain::token::{OpaqueKind, hash, hash_matches};
use crate::error::{OAuthError, StoreError};
use crate::http::grants::registry;
use crate::http::{Bucket, client_ip, rate_limit};
use crate::state::AppState;
use crate::store::clients::{Client, ClientSource};

/// The client metadata we understand (RFC 7591 §2). Anything else is ignored.
#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(default)]
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    client_name: Option<String>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
    scope: Option<String>,
    contacts: Option<Vec<String>>,
    tos_uri: Option<String>,
    policy_uri: Option<String>,
    software_id: Option<String>,
    software_version: Option<String>,
    /// RFC 7592 update requests carry it; must equal the path's.
    client_id: Option<String>,
    client_secret: Option<String>,
}

const METHODS: [&str; 3] = ["none", "client_secret_basic", "client_secret_post"];

/// What a registration may ask for (docs/security.md "Dynamic client registration").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// Anyone: the user-delegated grants, scope within the resources' default scopes.
    Open,
    /// With an operator's initial access token (RFC 7591 §3), or an update of a client that
    /// was registered with one: every grant type and configured scope.
    Privileged,
}

/// Validated metadata, ready to store.
struct Validated {
    redirect_uris: Vec<String>,
    method: String,
    grant_types: Vec<String>,
    response_types: Vec<String>,
    client_name: Option<String>,
    scope: Option<String>,
    stored: Value,
}

fn validate(state: &AppState, body: &[u8], policy: Policy) -> Result<Validated, OAuthError> {
    let raw: Value = serde_json::from_slice(body)
        .map_err(|e| OAuthError::invalid_client_metadata(format!("body is not valid JSON: {e}")))?;
    if !raw.is_object() {
        return Err(OAuthError::invalid_client_metadata(
            "body must be a JSON object",
        ));
    }
    if let Some(at) = crate::domain::input::first_control_character(&raw) {
        return Err(OAuthError::invalid_client_metadata(format!(
            "{at} contains a control character"
        )));
    }
    let m: Metadata = serde_json::from_value(raw).map_err(|e| {
        OAuthError::invalid_client_metadata(format!("invalid client metadata: {e}"))
    })?;

    let method = m
        .token_endpoint_auth_method
        .clone()
        .unwrap_or_else(|| "client_secret_basic".into());
    if !METHODS.contains(&method.as_str()) {
        return Err(OAuthError::invalid_client_metadata(format!(
            "token_endpoint_auth_method {method:?} is not supported (none, client_secret_basic, client_secret_post)"
        )));
    }
    let grant_types = m
        .grant_types
        .clone()
        .unwrap_or_else(|| vec!["authorization_code".into()]);
    if grant_types.is_empty() {
        return Err(OAuthError::invalid_client_metadata(
            "grant_types must not be empty",
        ));
    }
    if grant_types.len() > limits::MAX_TYPES
        || m.response_types
            .as_ref()
            .is_some_and(|r| r.len() > limits::MAX_TYPES)
    {
        return Err(OAuthError::invalid_client_metadata(format!(
            "at most {} grant_types and response_types",
            limits::MAX_TYPES
        )));
    }
    registry()
        .check_client_grants(
            &state.config,
            &grant_types,
            policy == Policy::Privileged,
            method == "none",
        )
        .map_err(OAuthError::invalid_client_metadata)?;
    let response_types = m.response_types.clone().unwrap_or_else(|| {
        if grant_types.iter().any(|g| g == "authorization_code") {
            vec!["code".into()]
        } else {
            vec![]
        }
    });
    if response_types.iter().any(|r| r != "code") {
        return Err(OAuthError::invalid_client_metadata(
            "only the \"code\" response type is supported",
        ));
    }
    let uses_code = grant_types.iter().any(|g| g == "authorization_code");
    if uses_code != response_types.iter().any(|r| r == "code") {
        return Err(OAuthError::invalid_client_metadata(
            "grant_types authorization_code and response_types code go together",
        ));
    }
    if uses_code && m.redirect_uris.is_empty() {
        return Err(OAuthError::invalid_redirect_uri(
            "redirect_uris is required for the authorization_code grant",
        ));
    }
    if m.redirect_uris.len() > limits::MAX_REDIRECT_URIS {
        return Err(OAuthError::invalid_redirect_uri(format!(
            "at most {} redirect_uris",
            limits::MAX_REDIRECT_URIS
        )));
    }
    for uri in &m.redirect_uris {
        limits::check_uri_len("redirect_uris", uri).map_err(OAuthError::invalid_redirect_uri)?;
        validate_for_registration(uri, &state.config.registration.allowed_redirect_hosts)
            .map_err(|e| OAuthError::invalid_redirect_uri(format!("{uri}: {e}")))?;
    }
    let bounded = |r: Result<(), String>| r.map_err(OAuthError::invalid_client_metadata);
    if let Some(name) = &m.client_name {
        bounded(limits::check_text(
            "client_name",
            name,
            limits::MAX_NAME_CHARS,
        ))?;
    }
    for (field, v) in [
        ("software_id", &m.software_id),
        ("software_version", &m.software_version),
    ] {
        if let Some(v) = v {
            bounded(limits::check_text(field, v, limits::MAX_SOFTWARE_CHARS))?;
        }
    }
    if let Some(c) = &m.contacts {
        bounded(limits::check_contacts(c))?;
    }
    if m.scope
        .as_ref()
        .is_some_and(|s| s.len() > limits::MAX_SCOPE_BYTES)
    {
        return Err(OAuthError::invalid_client_metadata(format!(
            "scope must be at most {} bytes",
            limits::MAX_SCOPE_BYTES
        )));
    }
    for (field, uri) in [
        ("client_uri", &m.client_uri),
        ("logo_uri", &m.logo_uri),
        ("tos_uri", &m.tos_uri),
        ("policy_uri", &m.policy_uri),
    ] {
        if let Some(u) = uri {
            bounded(limits::check_uri_len(field, u))?;
        }
        if let Some(u) = uri
            && !url::Url::parse(u).is_ok_and(|u| u.scheme() == "https" || u.scheme() == "http")
        {
            return Err(OAuthError::invalid_client_metadata(format!(
                "{field} must be an http(s) URL"
            )));
        }
    }
    let scope = match &m.scope {
        None => None,
        Some(s) => {
            let mut set = ScopeSet::parse(s)
                .map_err(|e| OAuthError::invalid_client_metadata(e.to_string()))?;
            // Clients ask for offline_access by habit; refresh tokens come with the grant type.
            set.remove("offline_access");
            let supported = ScopeSet::from_strings(state.supported_scopes.iter().cloned());
            let unknown = set.difference(&supported);
            if !unknown.is_empty() {
                return Err(OAuthError::invalid_client_metadata(format!(
                    "unsupported scope: {unknown}"
                )));
            }
            if policy == Policy::Open {
                // RFC 7591 §3.2.1 lets the server replace what it will not grant: an open
                // registration's scope stays within the resources' default scopes (the user
                // still consents to each scope of each authorization).
                let defaults = ScopeSet::from_strings(
                    state
                        .config
                        .resources
                        .iter()
                        .flat_map(|r| r.default_scopes.iter().cloned()),
                );
                set = set.intersection(&defaults);
            }
            (!set.is_empty()).then(|| set.to_string())
        }
    };
    let mut stored = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            stored.insert(k.to_owned(), v);
        }
    };
    put("client_uri", json!(m.client_uri));
    put("logo_uri", json!(m.logo_uri));
    put("contacts", json!(m.contacts));
    put("tos_uri", json!(m.tos_uri));
    put("policy_uri", json!(m.policy_uri));
    put("software_id", json!(m.software_id));
    put("software_version", json!(m.software_version));
    Ok(Validated {
        redirect_uris: m.redirect_uris,
        method,
        grant_types,
        response_types,
        client_name: m.client_name,
        scope,
        stored: Value::Object(stored),
    })
}

/// The registration response body (RFC 7591 §3.2.1, RFC 7592 §3).
fn client_body(
    state: &AppState,
    c: &Client,
    secret: Option<&str>,
    reg_token: Option<&str>,
) -> Value {
    let mut body = json!({
        "client_id": c.client_id,
        "client_id_issued_at": c.created_at.timestamp(),
        "redirect_uris": c.redirect_uris,
        "grant_types": c.grant_types,
        "response_types": c.response_types,
        "token_endpoint_auth_method": c.token_endpoint_auth_method,
        "registration_client_uri": format!("{}/register/{}", state.config.issuer, c.client_id),
    });
    let obj = body.as_object_mut().expect("object");
    if let Some(n) = &c.client_name {
        obj.insert("client_name".into(), json!(n));
    }
    if let Some(s) = &c.scope {
        obj.insert("scope".into(), json!(s));
    }
    if let Some(secret) = secret {
        obj.insert("client_secret".into(), json!(secret));
        obj.insert("client_secret_expires_at".into(), json!(0));
    }
    if let Some(t) = reg_token {
        obj.insert("registration_access_token".into(), json!(t));
    }
    if let Value::Object(extra) = &c.metadata {
        for (k, v) in extra {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    body
}

fn no_store(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"))
        .json(body)
}

/// `POST /register`
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    rate_limit(&state, &req, Bucket::Register).await?;
    let policy = registration_policy(&state, &req)?;
    if policy == Policy::Open && !state.config.registration.open {
        return Err(OAuthError::access_denied(
            "dynamic client registration is closed on this server",
        ));
    }
    let v = validate(&state, &body, policy)?;
    let secret =
        (v.method != "none").then(|| state.tokens.keys.mint_opaque(OpaqueKind::ClientSecret));
    let reg_token = state.tokens.keys.mint_opaque(OpaqueKind::RegistrationToken);
    let client = Client {
        client_id: format!("mcpc_{}", state.tokens.keys.random_id()),
        source: ClientSource::Dynamic,
        client_name: v.client_name,
        redirect_uris: v.redirect_uris,
        grant_types: v.grant_types,
        response_types: v.response_types,
        token_endpoint_auth_method: v.method,
        scope: v.scope,
        secret_sha256: secret.as_deref().map(hash),
        registration_token_sha256: Some(hash(&reg_token)),
        metadata: v.stored,
        created_at: Utc::now(),
    };
    // The cap is checked and the row inserted atomically: racing registrations cannot overshoot.
    if !state
        .clients
        .store()
        .insert_dynamic_capped(&client, state.config.registration.max_clients)
        .await?
    {
        return Err(OAuthError::access_denied(
            "the client registration limit of this server has been reached",
        )
        .with_status(StatusCode::FORBIDDEN));
    }
    state
        .audit
        .record(
            AuditEvent::new(AuditKind::ClientRegistered)
                .client(&client.client_id)
                .ip(client_ip(&state, &req))
                .detail(json!({"redirect_uris": client.redirect_uris, "auth_method": client.token_endpoint_auth_method,
                               "grant_types": client.grant_types, "initial_access_token": policy == Policy::Privileged})),
        )
        .await;
    Ok(no_store(
        StatusCode::CREATED,
        client_body(&state, &client, secret.as_deref(), Some(&reg_token)),
    ))
}

/// The policy of a new registration: privileged with a valid initial access token (RFC 7591
/// §3, `Authorization: Bearer`), open without any `Authorization` header, and 401 for anything
/// else, so that a mistyped token is not silently downgraded to an open registration.
fn registration_policy(state: &AppState, req: &HttpRequest) -> Result<Policy, OAuthError> {
    if req.headers().get("authorization").is_none() {
        return Ok(Policy::Open);
    }
    let denied = || {
        OAuthError::invalid_token("the initial access token is not valid")
            .with_bearer_challenge(REGISTRATION_TOKEN_INVALID)
    };
    let token = bearer(req).ok_or_else(denied)?;
    // Every configured hash is compared (constant time each), whichever matches.
    let valid = state
        .config
        .registration
        .initial_access_tokens_sha256
        .iter()
        .filter_map(|h| crate::domain::token::unhex(&h.0))
        .fold(false, |found, h| hash_matches(token, &h) | found);
    if valid {
        Ok(Policy::Privileged)
    } else {
        Err(denied())
    }
}

/// `WWW-Authenticate` of the client configuration endpoint (RFC 6750 §3).
const REGISTRATION_TOKEN_MISSING: &str = "Bearer realm=\"mcpauth\"";
const REGISTRATION_TOKEN_INVALID: &str = "Bearer realm=\"mcpauth\", error=\"invalid_token\"";

/// Authorizes an RFC 7592 request with the registration access token.
async fn authorized_client(
    state: &AppState,
    req: &HttpRequest,
    client_id: &str,
) -> Result<Arc<Client>, OAuthError> {
    // RFC 7592 §2: errors as in RFC 6750, whose §3 requires the Bearer challenge on a 401; no
    // error code when the request had no token at all.
    let denied = || {
        OAuthError::invalid_token("a valid registration access token is required")
            .with_bearer_challenge(REGISTRATION_TOKEN_INVALID)
    };
    let token = bearer(req).ok_or_else(|| {
        OAuthError::invalid_token("a registration access token is required")
            .with_bearer_challenge(REGISTRATION_TOKEN_MISSING)
    })?;
    state
        .tokens
        .keys
        .verify_opaque(OpaqueKind::RegistrationToken, token)
        .map_err(|_| denied())?;
    let client = state
        .clients
        .store()
        .get(client_id)
        .await?
        .ok_or_else(denied)?;
    match &client.registration_token_sha256 {
        Some(h) if hash_matches(token, h) => Ok(Arc::new(client)),
        _ => Err(denied()),
    }
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Issues the next registration access token (RFC 7592 §3 requires one in every response;
/// only its hash is stored, so each use rotates it, as Keycloak does).
async fn rotate_registration_token(
    state: &AppState,
    req: &HttpRequest,
    client: &Client,
) -> Result<String, OAuthError> {
    let current = bearer(req).map(hash).unwrap_or_default();
    let next = state.tokens.keys.mint_opaque(OpaqueKind::RegistrationToken);
    if !state
        .clients
        .store()
        .rotate_registration_token(&client.client_id, &current, &hash(&next))
        .await?
    {
        // Another request used the same token first.
        return Err(
            OAuthError::invalid_token("the registration access token was already used")
                .with_bearer_challenge(REGISTRATION_TOKEN_INVALID),
        );
    }
    Ok(next)
}

/// `GET /register/{client_id}`
pub async fn read(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, OAuthError> {
    let client = authorized_client(&state, &req, &path).await?;
    let next = rotate_registration_token(&state, &req, &client).await?;
    Ok(no_store(
        StatusCode::OK,
        client_body(&state, &client, None, Some(&next)),
    ))
}

/// `PUT /register/{client_id}`: replaces the metadata. The secret stays; the registration
/// access token rotates.
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    let existing = authorized_client(&state, &req, &path).await?;
    // A client registered with an initial access token keeps what it was allowed.
    let policy = if registry().is_privileged(&existing.grant_types) {
        Policy::Privileged
    } else {
        Policy::Open
    };
    let v = validate(&state, &body, policy)?;
    let m: Metadata = serde_json::from_slice(&body)
        .map_err(|e| OAuthError::invalid_client_metadata(e.to_string()))?;
    if m.client_id.as_deref() != Some(existing.client_id.as_str()) {
        return Err(OAuthError::invalid_request(
            "client_id in the body must match the client being updated",
        ));
    }
    if let Some(s) = &m.client_secret
        && !existing
            .secret_sha256
            .as_deref()
            .is_some_and(|h| hash_matches(s, h))
    {
        return Err(OAuthError::invalid_request("client_secret does not match"));
    }
    if v.method != existing.token_endpoint_auth_method {
        return Err(OAuthError::invalid_client_metadata(
            "token_endpoint_auth_method cannot change; register a new client",
        ));
    }
    let updated = Client {
        client_name: v.client_name,
        redirect_uris: v.redirect_uris,
        grant_types: v.grant_types,
        response_types: v.response_types,
        scope: v.scope,
        metadata: v.stored,
        ..(*existing).clone()
    };
    match state.clients.store().update_metadata(&updated).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => {
            return Err(OAuthError::invalid_token("client no longer exists")
                .with_bearer_challenge(REGISTRATION_TOKEN_INVALID));
        }
        Err(e) => return Err(e.into()),
    }
    let next = rotate_registration_token(&state, &req, &updated).await?;
    state.client_changed(&updated.client_id).await;
    state
        .audit
        .record(
            AuditEvent::new(AuditKind::ClientUpdated)
                .client(&updated.client_id)
                .ip(client_ip(&state, &req)),
        )
        .await;
    Ok(no_store(
        StatusCode::OK,
        client_body(&state, &updated, None, Some(&next)),
    ))
}

/// `DELETE /register/{client_id}`: removes the client, its grants, and every token issued to it.
pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, OAuthError> {
    let client = authorized_client(&state, &req, &path).await?;
    // Deny every access token of the client first: grants go with the row (ON DELETE CASCADE).
    let until = Utc::now().timestamp() + state.tokens.access_ttl();
    state
        .tokens
        .revoke(
            crate::store::revocations::RevocationKind::Client,
            &client.client_id,
            until,
        )
        .await?;
    state.clients.store().delete(&client.client_id).await?;
    state.client_changed(&client.client_id).await;
    state
        .audit
        .record(
            AuditEvent::new(AuditKind::ClientDeleted)
                .client(&client.client_id)
                .ip(client_ip(&state, &req)),
        )
        .await;
    Ok(HttpResponse::NoContent()
        .insert_header(("Cache-Control", "no-store"))
        .finish())
}
