//! `POST /token`: authenticates the client and dispatches on `grant_type` through the grant
//! registry (`grants::registry`), which also names the metrics label. Every answer carries
//! `Cache-Control: no-store` and every error is RFC 6749 §5.2 JSON.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::error::OAuthError;
use crate::http::grants::{GrantContext, registry};
use crate::http::{
    Bucket, authenticate_client, client_ip, form_body, rate_limit, rate_limit_client,
};
use crate::state::AppState;

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

pub async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    // Before anything that may wait on a store: the refresh grant tells a replay from a request
    // that was merely delayed by when it arrived (see `store::grants::RefreshRequest`).
    let received_at = std::time::Instant::now();
    rate_limit(&state, &req, Bucket::Token).await?;
    let form = form_body(&req, &body)?;
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is missing"))?;
    let client = authenticate_client(&state, &req, &form).await?;
    rate_limit_client(&state, &req, &client).await?;
    let handler = registry().find(&state.config, grant_type).ok_or_else(|| {
        OAuthError::unsupported_grant_type(format!("grant_type {grant_type:?} is not supported"))
    })?;
    if !client.allows_grant(grant_type) {
        return Err(OAuthError::unauthorized_client(format!(
            "this client is not registered for the {grant_type} grant"
        )));
    }
    if handler.confidential_only() && client.is_public() {
        return Err(OAuthError::unauthorized_client(format!(
            "{grant_type} requires a confidential client"
        )));
    }
    let resp = handler
        .handle(GrantContext {
            state: &state,
            client: &client,
            form: &form,
            ip: client_ip(&state, &req),
            received_at,
        })
        .await?;
    state.clients.mark_used(&client.client_id);
    metrics::counter!("mcpauth_tokens_issued_total", "grant_type" => handler.metric_label())
        .increment(1);
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"))
        .json(resp))
}
