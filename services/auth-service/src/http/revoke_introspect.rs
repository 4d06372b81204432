//! Token revocation (RFC 7009) and introspection (RFC 7662).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::audit::{AuditEvent, AuditKind};
use crate::config::Config;
use crate::domain::token::{OpaqueKind, hash};
use crate::error::OAuthError;
use crate::http::{authenticate_client, client_ip, form_body};
use crate::state::AppState;
use crate::store::revocations::RevocationKind;
use crate::tokens::{ActiveToken, TokenKind};

/// `POST /revoke`: always 200 for a token the server does not know or that belongs to another
/// client (RFC 7009 §2.2), so that the endpoint reveals nothing.
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    let form = form_body(&req, &body)?;
    let client = authenticate_client(&state, &req, &form).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
    let ip = client_ip(&state, &req);
    if state.tokens.is_access_token(token) {
        if let Some(claims) = state.tokens.validate_access(token)
            && claims.client_id == client.client_id
        {
            state
                .tokens
                .revoke(RevocationKind::Token, &claims.jti, claims.exp)
                .await?;
            state
                .audit
                .record(
                    AuditEvent::new(AuditKind::TokenRevoked)
                        .client(&client.client_id)
                        .ip(ip)
                        .detail(json!({"token_type": "access_token", "jti": claims.jti})),
                )
                .await;
        }
    } else if state
        .tokens
        .keys
        .verify_opaque(OpaqueKind::RefreshToken, token)
        .is_ok()
        && let Some(grant) = state.grants.grant_of_refresh(&hash(token)).await?
        && grant.client_id == client.client_id
    {
        // Revoking a refresh token ends its whole grant, access tokens included (RFC 7009 §2.1).
        state
            .tokens
            .revoke_grant(grant.grant_id, "revoked_by_client")
            .await?;
        state
            .audit
            .record(
                AuditEvent::new(AuditKind::TokenRevoked)
                    .client(&client.client_id)
                    .user(grant.user_id)
                    .grant(grant.grant_id)
                    .ip(ip)
                    .detail(json!({"token_type": "refresh_token"})),
            )
            .await;
    }
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .finish())
}

/// Whether `caller` may learn about token `t` (RFC 7662 §4: the server decides who may
/// introspect what). A refresh token is described only to its own client; an access token to
/// its own client, to the introspection clients of its audience (`resources[].
/// introspection_clients`), and to `introspection.clients`. Anyone else is told the token is
/// inactive, which reveals nothing about it.
pub(crate) fn may_describe(config: &Config, caller: &str, t: &ActiveToken) -> bool {
    if t.client_id == caller {
        return true;
    }
    if t.kind == TokenKind::Refresh {
        return false;
    }
    let listed = |ids: &[String]| ids.iter().any(|c| c == caller);
    listed(&config.introspection.clients)
        || config
            .resources
            .iter()
            .any(|r| r.uri == t.audience && listed(&r.introspection_clients))
}

/// `POST /introspect`: the caller authenticates as a confidential client. An inactive token,
/// or one the caller may not see ([`may_describe`]), answers `{"active": false}` and nothing
/// else.
pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    let form = form_body(&req, &body)?;
    let client = authenticate_client(&state, &req, &form).await?;
    if client.is_public() {
        return Err(OAuthError::invalid_client(
            "introspection requires client authentication",
        ));
    }
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
    let active = state
        .tokens
        .introspect(token, form.get("resource").map(String::as_str))
        .await?
        .filter(|t| may_describe(&state.config, &client.client_id, t));
    metrics::counter!("mcpauth_introspections_total", "transport" => "http", "active" => if active.is_some() { "true" } else { "false" }).increment(1);
    let body = match active {
        None => json!({"active": false}),
        Some(t) => {
            let mut body = json!({
            "active": true,
            "scope": t.scope,
            "client_id": t.client_id,
            "sub": t.subject,
            "aud": t.audience,
            "iss": state.config.issuer,
            "exp": t.expires_at,
            "iat": t.issued_at,
            "jti": t.token_id,
            // RFC 7662 `token_type` is an RFC 6749 §5.1 access-token type; what kind of token
            // it is goes in `token_use` (as Ory Hydra does).
            "token_use": match t.kind { TokenKind::Access => "access_token", TokenKind::Refresh => "refresh_token" },
            });
            if t.kind == TokenKind::Access {
                body["token_type"] = json!("Bearer");
            }
            if let Some(act) = &t.act {
                body["act"] = act.to_json();
            }
            body
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(body))
}
