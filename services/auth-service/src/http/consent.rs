//! `GET/POST /consent`: the user's decision on a client's request. Allowing records the consent
//! and issues the code, or, before a delegated login, sends the browser to the upstream provider.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::audit::{AuditEvent, AuditKind};
use crate::error::OAuthError;
use crate::http::browser::{
    Callback, RequestQuery, consent_response, issue_code, pending_for_form, server_error_page,
};
use crate::http::{client_ip, form_body, pages};
use crate::state::AppState;

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
        if let Some(device) = pending
            .device
            .as_deref()
            .and_then(crate::domain::token::unhex)
        {
            let now = chrono::Utc::now().timestamp();
            if let Err(e) = state
                .ephemeral
                .device_codes
                .decide(
                    &device,
                    crate::store::ephemeral::DeviceDecision::Denied,
                    now,
                )
                .await
            {
                return server_error_page(e);
            }
        }
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
        .consents
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
