//! `GET/POST /connect/{ticket}`: the browser side of the connect flow (DESIGN flow 3). A link
//! from `UpstreamConnect.StartConnect` names a user and a provider; the browser that opens it
//! must prove it is that user (a login here, whatever the login provider), then confirm, and only
//! then is it sent to the provider. So a connect link phished to someone else cannot attach their
//! upstream account to the link's user (docs/upstream-identity.md).
//!
//! The link binds itself to the first browser that opens it (a `__Host-` cookie); its forms carry
//! a CSRF token; it starts at most one upstream authorization (the ticket is taken at confirm).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use uuid::Uuid;

use crate::audit::{AuditEvent, AuditKind};
use crate::domain::token::{hash, hex};
use crate::http::browser::{BROWSER_COOKIE, cookie, new_session, server_error_page, session_user};
use crate::http::{Bucket, client_ip, form_body, pages, rate_limit};
use crate::login::LoginProvider;
use crate::state::AppState;
use crate::store::ephemeral::{ConnectTicket, UpstreamPurpose};

fn gone() -> HttpResponse {
    pages::message(
        StatusCode::NOT_FOUND,
        "Link expired",
        "This connect link has expired or was already used. Ask your assistant for a new one.",
    )
}

fn forbidden(message: &str) -> HttpResponse {
    pages::message(StatusCode::FORBIDDEN, "Connection refused", message)
}

/// Loads the ticket and binds it to this browser. Returns the ticket, and the browser cookie to
/// set when the browser had none.
async fn open(
    state: &AppState,
    req: &HttpRequest,
    ticket: &str,
) -> Result<(ConnectTicket, Option<String>), HttpResponse> {
    let th = hash(ticket);
    let t = match state.ephemeral.connect_tickets.get(&th).await {
        Ok(Some(t)) => t,
        Ok(None) => return Err(gone()),
        Err(e) => return Err(server_error_page(e)),
    };
    let existing = req.cookie(BROWSER_COOKIE).map(|c| c.value().to_owned());
    let browser = existing
        .clone()
        .unwrap_or_else(|| state.tokens.keys.random_id() + &state.tokens.keys.random_id());
    match state
        .ephemeral
        .connect_tickets
        .bind_browser(&th, &hex(&hash(&browser)))
        .await
    {
        Ok(true) => Ok((t, existing.is_none().then_some(browser))),
        Ok(false) => Err(forbidden(
            "This link was already opened in another browser. Ask your assistant for a new one.",
        )),
        Err(e) => Err(server_error_page(e)),
    }
}

fn with_cookie(mut resp: HttpResponse, browser: Option<String>) -> HttpResponse {
    if let Some(b) = browser {
        let _ = resp.add_cookie(&cookie(BROWSER_COOKIE, b, 86_400));
    }
    resp
}

async fn refuse_other_user(
    state: &AppState,
    req: &HttpRequest,
    t: &ConnectTicket,
    signed_in: Uuid,
) -> HttpResponse {
    state
        .audit
        .record(
            AuditEvent::new(AuditKind::ConnectRefused)
                .user(t.user_id)
                .ip(client_ip(state, req))
                .detail(json!({"provider": t.provider, "reason": "different_user", "signed_in": signed_in})),
        )
        .await;
    forbidden(
        "This link was created for a different account than the one signed in here. \
         Only open connect links your own assistant gave you.",
    )
}

async fn confirm_page(state: &AppState, ticket: &str, t: &ConnectTicket) -> HttpResponse {
    let Some(p) = state.upstream.get(&t.provider) else {
        return gone();
    };
    let account = match state.users.username(t.user_id).await {
        Ok(u) => u.unwrap_or_else(|| t.user_id.to_string()),
        Err(e) => return server_error_page(e),
    };
    pages::connect_confirm(
        &format!("{}/connect/{ticket}", state.config.issuer),
        &t.csrf,
        &account,
        p.display_name(),
        &p.cfg.requested_scopes(),
    )
}

/// `GET /connect/{ticket}`
pub async fn show(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let ticket = path.into_inner();
    let (t, new_browser) = match open(&state, &req, &ticket).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let user = match session_user(&state, &req).await {
        Ok(u) => u,
        Err(e) => return server_error_page(e),
    };
    let resp = match user {
        Some(u) if u == t.user_id => confirm_page(&state, &ticket, &t).await,
        Some(u) => refuse_other_user(&state, &req, &t, u).await,
        None => match &state.login {
            LoginProvider::Dev { .. } => {
                let Some(id) = state.login.automatic_identity() else {
                    return server_error_page("dev login without identity");
                };
                let u = match state
                    .users
                    .upsert(id.provider, &id.subject, &id.username)
                    .await
                {
                    Ok(u) => u,
                    Err(e) => return server_error_page(e),
                };
                let mut resp = if u == t.user_id {
                    confirm_page(&state, &ticket, &t).await
                } else {
                    refuse_other_user(&state, &req, &t, u).await
                };
                if let Some(c) = new_session(&state, u).await {
                    let _ = resp.add_cookie(&c);
                }
                resp
            }
            LoginProvider::Local { .. } => {
                let name = state
                    .upstream
                    .get(&t.provider)
                    .map(|p| p.display_name().to_owned())
                    .unwrap_or_default();
                pages::connect_login_form(&t.csrf, &name, false)
            }
            LoginProvider::Upstream { provider } => {
                crate::http::upstream::redirect_upstream(
                    &state,
                    provider,
                    UpstreamPurpose::ConnectLogin {
                        ticket: ticket.clone(),
                    },
                )
                .await
            }
        },
    };
    with_cookie(resp, new_browser)
}

/// `POST /connect/{ticket}`: `step` = `login` (local provider), `confirm` or `cancel`.
pub async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let ticket = path.into_inner();
    let form = match form_body(&req, &body) {
        Ok(f) => f,
        Err(e) => return pages::error_page(e.error, e.error_description.as_deref().unwrap_or("")),
    };
    let th = hash(&ticket);
    let t = match state.ephemeral.connect_tickets.get(&th).await {
        Ok(Some(t)) => t,
        Ok(None) => return gone(),
        Err(e) => return server_error_page(e),
    };
    // The form must come from the browser the link is bound to, with the link's CSRF token.
    let browser_ok = match (req.cookie(BROWSER_COOKIE), &t.browser_sha256) {
        (Some(c), Some(bound)) => crate::domain::token::hash_matches(
            c.value(),
            &crate::domain::token::unhex(bound).unwrap_or_default(),
        ),
        _ => false,
    };
    let csrf_ok = form
        .get("csrf")
        .is_some_and(|c| subtle::ConstantTimeEq::ct_eq(c.as_bytes(), t.csrf.as_bytes()).into());
    if !browser_ok || !csrf_ok {
        return forbidden("This form was not submitted from the browser that opened the link.");
    }
    let ip = client_ip(&state, &req);
    match form.get("step").map(String::as_str) {
        Some("login") => {
            if rate_limit(&state, &req, Bucket::Login).await.is_err() {
                return pages::message(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts",
                    "Too many sign-in attempts; wait a minute, then try again.",
                );
            }
            let username = form.get("username").map(String::as_str).unwrap_or("");
            let password = form.get("password").map(String::as_str).unwrap_or("");
            let Some(identity) = state.login.verify_password(username, password).await else {
                state
                    .audit
                    .record(AuditEvent::new(AuditKind::LoginFailed).ip(ip))
                    .await;
                let name = state
                    .upstream
                    .get(&t.provider)
                    .map(|p| p.display_name().to_owned())
                    .unwrap_or_default();
                return pages::connect_login_form(&t.csrf, &name, true);
            };
            let u = match state
                .users
                .upsert(identity.provider, &identity.subject, &identity.username)
                .await
            {
                Ok(u) => u,
                Err(e) => return server_error_page(e),
            };
            state
                .audit
                .record(AuditEvent::new(AuditKind::LoginSucceeded).user(u).ip(ip))
                .await;
            let mut resp = if u == t.user_id {
                confirm_page(&state, &ticket, &t).await
            } else {
                refuse_other_user(&state, &req, &t, u).await
            };
            if let Some(c) = new_session(&state, u).await {
                let _ = resp.add_cookie(&c);
            }
            resp
        }
        Some(step @ ("confirm" | "cancel")) => {
            match session_user(&state, &req).await {
                Ok(Some(u)) if u == t.user_id => {}
                Ok(Some(u)) => return refuse_other_user(&state, &req, &t, u).await,
                Ok(None) => return forbidden("Sign in first: open the link again."),
                Err(e) => return server_error_page(e),
            }
            // Single use: whoever takes the ticket first starts the one upstream authorization.
            let t = match state.ephemeral.connect_tickets.take(&th).await {
                Ok(Some(t)) => t,
                Ok(None) => return gone(),
                Err(e) => return server_error_page(e),
            };
            if step == "cancel" {
                state
                    .audit
                    .record(
                        AuditEvent::new(AuditKind::ConnectRefused)
                            .user(t.user_id)
                            .ip(ip)
                            .detail(json!({"provider": t.provider, "reason": "cancelled"})),
                    )
                    .await;
                return pages::message(
                    StatusCode::OK,
                    "Cancelled",
                    "Nothing was connected. You can close this window.",
                );
            }
            crate::http::upstream::redirect_upstream(
                &state,
                &t.provider,
                UpstreamPurpose::Connect {
                    user_id: t.user_id,
                    ticket_created_at: t.created_at,
                },
            )
            .await
        }
        _ => pages::error_page("invalid_request", "unknown step"),
    }
}
