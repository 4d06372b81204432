//! `POST /token`: authenticates the client and dispatches on `grant_type`. Each grant lives in
//! its own module under `grants/`; every answer carries `Cache-Control: no-store` and every
//! error is RFC 6749 §5.2 JSON.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::error::OAuthError;
use crate::http::grants::{authorization_code, client_credentials, device_code, refresh_token};
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
        .ok_or_else(|| OAuthError::invalid_request("grant_type is missing"))?
        .clone();
    let client = authenticate_client(&state, &req, &form).await?;
    rate_limit_client(&state, &req, &client).await?;
    if !client.allows_grant(&grant_type)
        && matches!(
            grant_type.as_str(),
            "authorization_code" | "refresh_token" | "client_credentials" | device_code::GRANT_TYPE
        )
    {
        return Err(OAuthError::unauthorized_client(format!(
            "this client is not registered for the {grant_type} grant"
        )));
    }
    let ip = client_ip(&state, &req);
    let resp = match grant_type.as_str() {
        "authorization_code" => authorization_code::handle(&state, &client, &form, ip).await?,
        "refresh_token" => refresh_token::handle(&state, &client, &form, ip, received_at).await?,
        "client_credentials" => client_credentials::handle(&state, &client, &form, ip).await?,
        device_code::GRANT_TYPE => device_code::handle(&state, &client, &form, ip).await?,
        other => {
            return Err(OAuthError::unsupported_grant_type(format!(
                "grant_type {other:?} is not supported"
            )));
        }
    };
    state.clients.mark_used(&client.client_id);
    metrics::counter!("mcpauth_tokens_issued_total", "grant_type" => grant_label(&grant_type))
        .increment(1);
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"))
        .json(resp))
}

fn grant_label(g: &str) -> &'static str {
    match g {
        "authorization_code" => "authorization_code",
        "refresh_token" => "refresh_token",
        device_code::GRANT_TYPE => "device_code",
        _ => "client_credentials",
    }
}
