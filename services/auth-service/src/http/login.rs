//! `GET/POST /login`: the password login of the authorization flow (the login form; a delegated
//! login goes through `/consent` and the upstream provider instead).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::audit::{AuditEvent, AuditKind};
use crate::http::browser::{
    RequestQuery, client_display_name, new_session, pending_for_form, proceed, server_error_page,
};
use crate::http::{Bucket, client_ip, form_body, pages, rate_limit};
use crate::state::AppState;

/// `GET /login?request=…` (re-shows the form).
pub async fn login_page(state: web::Data<AppState>, q: web::Query<RequestQuery>) -> HttpResponse {
    match state.ephemeral.pending.get(&q.request).await {
        Ok(Some(p)) => {
            let name = match state.clients.get(&p.client_id).await {
                Ok(Some(c)) => client_display_name(&c).to_owned(),
                _ => p.client_id.clone(),
            };
            pages::login_form(&q.request, &p.csrf, &name, false)
        }
        Ok(None) => pages::error_page(
            "invalid_request",
            "this sign-in request has expired; start again from the application",
        ),
        Err(e) => server_error_page(e),
    }
}

/// `POST /login`
pub async fn login_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Err(e) = rate_limit(&state, &req, Bucket::Login).await {
        let mut resp = pages::page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "<h1>Too many sign-in attempts</h1><p>Wait a minute, then try again.</p>",
        );
        if let Some(s) = e.retry_after
            && let Ok(v) = actix_web::http::header::HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut()
                .insert(actix_web::http::header::RETRY_AFTER, v);
        }
        return resp;
    }
    let form = match form_body(&req, &body) {
        Ok(f) => f,
        Err(e) => return pages::error_page(e.error, e.error_description.as_deref().unwrap_or("")),
    };
    let (request_id, mut pending, client) = match pending_for_form(&state, &req, &form).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let username = form.get("username").map(String::as_str).unwrap_or("");
    let password = form.get("password").map(String::as_str).unwrap_or("");
    let Some(identity) = state.login.verify_password(username, password).await else {
        state
            .audit
            .record(
                AuditEvent::new(AuditKind::LoginFailed)
                    .client(&client.client_id)
                    .ip(client_ip(&state, &req)),
            )
            .await;
        return pages::login_form(
            &request_id,
            &pending.csrf,
            client_display_name(&client),
            true,
        );
    };
    let user_id = match state
        .users
        .upsert(identity.provider, &identity.subject, &identity.username)
        .await
    {
        Ok(u) => u,
        Err(e) => return server_error_page(e),
    };
    state
        .audit
        .record(
            AuditEvent::new(AuditKind::LoginSucceeded)
                .client(&client.client_id)
                .user(user_id)
                .ip(client_ip(&state, &req)),
        )
        .await;
    pending.user_id = Some(user_id);
    pending.authenticated_at = Some(chrono::Utc::now().timestamp());
    // A fresh CSRF token for the consent step.
    pending.csrf = state.tokens.keys.random_id();
    let mut resp = proceed(&state, &req, &client, &request_id, pending).await;
    if let Some(c) = new_session(&state, user_id).await {
        let _ = resp.add_cookie(&c);
    }
    resp
}
