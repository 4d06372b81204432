//! `POST /logout`: ends the browser's login session at auth-service (the Redis session and the
//! `__Host-` cookie). Cross-site requests are refused: the request must come from the issuer's
//! own origin (`Origin`, or `Sec-Fetch-Site: same-origin` from browsers that omit it), so a
//! third-party page cannot log a user out (the session cookie is `SameSite=Lax` besides).
//! Answers a page saying the user is signed out. Tokens already issued to clients stay valid:
//! revoking those is the clients' business (RFC 7009) or the operator's (`admin revoke-user`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::audit::{AuditEvent, AuditKind};
use crate::domain::token::hash;
use crate::http::browser::{SESSION_COOKIE, cookie};
use crate::http::{client_ip, pages};
use crate::state::AppState;

/// Whether the request comes from the issuer's own origin.
fn same_origin(state: &AppState, req: &HttpRequest) -> bool {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let issuer_origin = url::Url::parse(&state.config.issuer)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    match header("origin") {
        Some(o) => o == issuer_origin,
        None => header("sec-fetch-site") == Some("same-origin"),
    }
}

pub async fn logout(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if !same_origin(&state, &req) {
        return pages::message(
            StatusCode::FORBIDDEN,
            "Not signed out",
            "sign-out must be requested from this server's own pages",
        );
    }
    let mut user = None;
    if let Some(c) = req.cookie(SESSION_COOKIE) {
        let h = hash(c.value());
        match state.ephemeral.sessions.get(&h).await {
            Ok(u) => user = u,
            Err(e) => tracing::warn!(error = %e, "logout: session lookup failed"),
        }
        if let Err(e) = state.ephemeral.sessions.delete(&h).await {
            tracing::error!(error = %e, "logout: could not delete the session");
            return crate::http::browser::server_error_page(e);
        }
    }
    let mut event = AuditEvent::new(AuditKind::SessionLoggedOut).ip(client_ip(&state, &req));
    if let Some(u) = user {
        event = event.user(u);
    }
    state.audit.record(event).await;
    let mut resp = pages::message(StatusCode::OK, "Signed out", "you are signed out");
    let _ = resp.add_cookie(&cookie(SESSION_COOKIE, String::new(), 0));
    resp
}
