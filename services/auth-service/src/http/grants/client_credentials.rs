//! The `client_credentials` grant (OAuth 2.1 §4.2) for confidential machine clients. Issuing a
//! token writes nothing on the request path: the audit event is batched.

use std::collections::HashMap;

use serde_json::json;

use crate::audit::{AuditEvent, AuditKind};
use crate::error::OAuthError;
use crate::http::token::TokenResponse;
use crate::state::AppState;
use crate::store::clients::Client;

pub async fn handle(
    state: &AppState,
    client: &Client,
    form: &HashMap<String, String>,
    ip: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::unauthorized_client(
            "client_credentials requires a confidential client",
        ));
    }
    let resource = state.resolve_resource(form.get("resource").map(String::as_str))?;
    let scope = state.resolve_scope(
        client,
        &resource,
        form.get("scope").map(String::as_str),
        false,
    )?;
    let scope = scope.to_string();
    let (access, claims) = state.tokens.issue_access(
        &client.client_id,
        &client.client_id,
        None,
        &resource,
        &scope,
    );
    state
        .audit
        .record(
            AuditEvent::new(AuditKind::TokenIssued)
                .client(&client.client_id)
                .ip(ip)
                .detail(json!({"grant_type": "client_credentials", "jti": claims.jti, "scope": scope, "resource": resource})),
        )
        .await;
    Ok(TokenResponse {
        access_token: access,
        token_type: "Bearer",
        expires_in: state.tokens.access_ttl(),
        scope,
        refresh_token: None,
    })
}
