//! RFC 8414 authorization server metadata. Only at the RFC 8414 paths: OpenID Connect
//! Discovery (`/.well-known/openid-configuration`) is deliberately not served, because this
//! server is no OpenID Provider — it issues no ID tokens, so it could not fill the fields
//! Discovery 1.0 §3 requires (`id_token_signing_alg_values_supported`, `subject_types_supported`,
//! `jwks_uri`) truthfully, nor support the `id_token` response types a dynamic OP must. MCP
//! clients try RFC 8414 first (docs/tokens.md "OpenID discovery").

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::http::grants::registry;
use crate::state::AppState;

/// The metadata at the path-inserted URL (RFC 8414 §3.1), for an issuer with that path only.
pub async fn authorization_server_with_path(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let expected = state.config.issuer_path();
    if expected.is_empty() || expected.strip_prefix('/') != Some(path.as_str()) {
        return HttpResponse::NotFound().finish();
    }
    authorization_server(state).await
}

pub async fn authorization_server(state: web::Data<AppState>) -> HttpResponse {
    let issuer = &state.config.issuer;
    let grants = registry().grant_types(&state.config);
    let body = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "registration_endpoint": format!("{issuer}/register"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "device_authorization_endpoint": format!("{issuer}/device_authorization"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grants,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": state.supported_scopes,
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": state.config.cimd.enabled,
    });
    let mut body = body;
    if state.tokens.jwt_keys().is_some() {
        // RFC 8414 §2: where resource servers find the keys of our RFC 9068 access tokens.
        body["jwks_uri"] = json!(format!("{issuer}/jwks"));
    }
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(body)
}

/// `GET /jwks`: the public keys of the JWT access tokens (RFC 7517 JWK Set), the signing key and
/// every older key whose tokens may still live. Cached for five minutes: a new key is published
/// (listed in `tokens.signing_keys`) at least that long before it signs (docs/tokens.md).
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    match state.tokens.jwt_keys() {
        Some(keys) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "public, max-age=300"))
            .json(keys.jwks()),
        None => HttpResponse::NotFound().finish(),
    }
}
