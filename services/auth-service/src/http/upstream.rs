//! The upstream leg of a login or a connect: the redirect to the provider and
//! `GET /upstream/callback` (the redirect URI operators register at every provider).
//!
//! The upstream `state` is 256 random bits, stored server-side (by its SHA-256, with a TTL) only
//! after consent, immediately before the redirect, together with the SHA-256 of a fresh
//! `__Host-` cookie set on the same response. At the callback the state is taken exactly once
//! (GETDEL) and must come back in the browser that holds that cookie; anything else is refused
//! with an error page. Only then are upstream errors and results sent on to the MCP client.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use uuid::Uuid;

use crate::audit::{AuditEvent, AuditKind};
use crate::domain::token::{hash, hash_matches, hex, unhex};
use crate::error::OAuthError;
use crate::http::browser::{
    Callback, client_display_name, cookie, issue_code, new_session, redirect_still_registered,
    server_error_page,
};
use crate::http::{client_ip, pages, parse_params};
use crate::state::AppState;
use crate::store::ephemeral::{PendingAuthorization, UpstreamAuthState, UpstreamPurpose};
use crate::upstream::{ProviderTokenResponse, UpstreamIdentity, UpstreamProvider};

/// Binds an upstream authorization to the browser it was started in.
pub(crate) const UPSTREAM_COOKIE: &str = "__Host-mcpauth_upstream";

/// Where providers send the browser back.
pub fn callback_uri(issuer: &str) -> String {
    format!("{issuer}/upstream/callback")
}

fn random_b64(state: &AppState, bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    state.tokens.keys.fill_random(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// Stores a fresh upstream state and redirects the browser to `provider`. Called only after the
/// user consented (login) or confirmed (connect).
pub(crate) async fn redirect_upstream(
    state: &AppState,
    provider: &str,
    purpose: UpstreamPurpose,
) -> HttpResponse {
    let fail = |purpose: &UpstreamPurpose, e: OAuthError| match purpose {
        UpstreamPurpose::Login { pending } => client_callback(state, pending).error(&e),
        _ => {
            let mut r = pages::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in unavailable",
                "The identity provider cannot be reached right now; try again later.",
            );
            *r.status_mut() = e.status;
            r
        }
    };
    let Some(p) = state.upstream.get(provider) else {
        return fail(
            &purpose,
            OAuthError::server_error(format!("upstream provider {provider:?} is not configured")),
        );
    };
    let endpoints = match p.endpoints().await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(provider, error = %e, "upstream provider unavailable");
            return fail(
                &purpose,
                OAuthError::temporarily_unavailable("the identity provider is unavailable"),
            );
        }
    };
    let upstream_state = random_b64(state, 32);
    let verifier = random_b64(state, 32);
    let nonce = random_b64(state, 16);
    let binding = random_b64(state, 32);
    let challenge = URL_SAFE_NO_PAD.encode(hash(&verifier));
    let record = UpstreamAuthState {
        provider: provider.to_owned(),
        purpose,
        code_verifier: verifier,
        nonce: nonce.clone(),
        browser_sha256: hex(&hash(&binding)),
    };
    let ttl = state.config.upstream.state_ttl_secs;
    if let Err(e) = state
        .ephemeral
        .upstream_states
        .put(&hash(&upstream_state), &record, ttl)
        .await
    {
        return fail(&record.purpose, OAuthError::server_error(e));
    }
    let url = p.authorization_url(
        &endpoints,
        &callback_uri(&state.config.issuer),
        &upstream_state,
        &nonce,
        &challenge,
    );
    let mut resp = HttpResponse::Found()
        .insert_header(("Location", url))
        .insert_header(("Cache-Control", "no-store"))
        .finish();
    let _ = resp.add_cookie(&cookie(UPSTREAM_COOKIE, binding, ttl as i64));
    resp
}

fn client_callback<'a>(state: &'a AppState, p: &'a PendingAuthorization) -> Callback<'a> {
    Callback {
        redirect_uri: &p.redirect_uri,
        state: p.state.as_deref(),
        issuer: &state.config.issuer,
    }
}

fn refused(message: &str) -> HttpResponse {
    pages::message(StatusCode::BAD_REQUEST, "Sign-in refused", message)
}

/// `GET /upstream/callback`
pub async fn callback(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let params = match parse_params(req.query_string().as_bytes()) {
        Ok(p) => p,
        Err(e) => return pages::error_page(e.error, e.error_description.as_deref().unwrap_or("")),
    };
    let Some(upstream_state) = params.get("state").filter(|s| !s.is_empty()) else {
        return refused(
            "The identity provider's answer has no state; start again from the application.",
        );
    };
    let record = match state
        .ephemeral
        .upstream_states
        .take(&hash(upstream_state))
        .await
    {
        Ok(Some(r)) => r,
        Ok(None) => {
            return refused(
                "This sign-in has expired or was already completed; start again from the application.",
            );
        }
        Err(e) => return server_error_page(e),
    };
    let browser_ok = req.cookie(UPSTREAM_COOKIE).is_some_and(|c| {
        hash_matches(
            c.value(),
            &unhex(&record.browser_sha256).unwrap_or_default(),
        )
    });
    let mut clear = cookie(UPSTREAM_COOKIE, String::new(), 0);
    clear.make_removal();
    let ip = client_ip(&state, &req);
    if !browser_ok {
        state
            .audit
            .record(
                AuditEvent::new(AuditKind::UpstreamLoginFailed)
                    .ip(ip)
                    .detail(json!({"provider": record.provider, "reason": "browser_mismatch"})),
            )
            .await;
        let mut r = pages::message(
            StatusCode::FORBIDDEN,
            "Sign-in refused",
            "This answer from the identity provider belongs to a sign-in started in another browser.",
        );
        let _ = r.add_cookie(&clear);
        return r;
    }
    let mut resp = finish(&state, &req, &params, record, ip).await;
    let _ = resp.add_cookie(&clear);
    resp
}

/// Why the upstream leg failed, as the MCP client is told (never upstream details).
fn client_error(params: &std::collections::HashMap<String, String>) -> OAuthError {
    match params.get("error").map(String::as_str) {
        Some("access_denied")
        | Some("login_required")
        | Some("consent_required")
        | Some("interaction_required")
        | Some("account_selection_required") => {
            OAuthError::access_denied("the sign-in at the identity provider was not completed")
        }
        Some("temporarily_unavailable") => {
            OAuthError::temporarily_unavailable("the identity provider is unavailable")
        }
        _ => OAuthError::new(
            "server_error",
            StatusCode::BAD_GATEWAY,
            "the sign-in at the identity provider failed",
        ),
    }
}

/// What the callback established.
struct Completed {
    provider: std::sync::Arc<UpstreamProvider>,
    identity: Option<UpstreamIdentity>,
    tokens: ProviderTokenResponse,
}

/// Checks the provider's answer, exchanges the code and establishes the identity.
async fn complete(
    state: &AppState,
    params: &std::collections::HashMap<String, String>,
    record: &UpstreamAuthState,
    need_identity: bool,
) -> Result<Completed, (OAuthError, &'static str)> {
    let provider = state.upstream.get(&record.provider).ok_or((
        OAuthError::new("server_error", StatusCode::BAD_GATEWAY, ""),
        "provider_removed",
    ))?;
    if let Some(e) = params.get("error") {
        let safe: String = e
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        tracing::info!(provider = %record.provider, upstream_error = %safe, "upstream authorization refused");
        return Err((client_error(params), "upstream_error"));
    }
    // RFC 9207: a provider that names itself must name the right issuer (mix-up defence).
    if let (Some(iss), Some(expected)) = (params.get("iss"), provider.expected_response_issuer())
        && iss != expected
    {
        return Err((client_error(params), "issuer_mismatch"));
    }
    let Some(code) = params.get("code").filter(|c| !c.is_empty()) else {
        return Err((client_error(params), "no_code"));
    };
    let fail = |e: crate::upstream::UpstreamError, reason: &'static str| {
        tracing::warn!(provider = %record.provider, error = %e, "upstream sign-in failed");
        (client_error(&Default::default()), reason)
    };
    let endpoints = provider
        .endpoints()
        .await
        .map_err(|e| fail(e, "discovery"))?;
    let tokens = provider
        .exchange_code(
            &endpoints,
            code,
            &record.code_verifier,
            &callback_uri(&state.config.issuer),
        )
        .await
        .map_err(|e| fail(e, "code_exchange"))?;
    // An ID token that comes back is always verified, also when the identity is not needed.
    let identity = if need_identity || tokens.id_token.is_some() {
        Some(
            provider
                .identity(&endpoints, &tokens, &record.nonce)
                .await
                .map_err(|e| fail(e, "identity"))?,
        )
    } else {
        None
    };
    Ok(Completed {
        provider,
        identity,
        tokens,
    })
}

/// Hands the upstream tokens to token-vault. The credential is stored under the user id
/// auth-service puts in its access tokens (`sub`).
async fn store_in_vault(
    state: &AppState,
    user_id: Uuid,
    done: &Completed,
    ip: Option<String>,
) -> Result<(), OAuthError> {
    let Some(vault) = &state.vault else {
        return Err(OAuthError::server_error("vault is not configured"));
    };
    let (issuer, subject) = done
        .identity
        .as_ref()
        .map(|i| (i.issuer.as_str(), i.subject.as_str()))
        .unwrap_or(("", ""));
    match vault
        .put_credential(
            &user_id.to_string(),
            &done.provider.name,
            &done.tokens,
            issuer,
            subject,
        )
        .await
    {
        Ok(version) => {
            state
                .audit
                .record(
                    AuditEvent::new(AuditKind::VaultStored)
                        .user(user_id)
                        .ip(ip)
                        .detail(json!({"provider": done.provider.name, "version": version,
                            "has_refresh_token": done.tokens.refresh_token.is_some()})),
                )
                .await;
            Ok(())
        }
        Err(e) => {
            tracing::error!(provider = %done.provider.name, error = %e, "storing the upstream credential failed");
            state
                .audit
                .record(
                    AuditEvent::new(AuditKind::VaultStoreFailed)
                        .user(user_id)
                        .ip(ip)
                        .detail(json!({"provider": done.provider.name})),
                )
                .await;
            Err(OAuthError::temporarily_unavailable(
                "the account could not be set up; try again later",
            ))
        }
    }
}

async fn finish(
    state: &AppState,
    req: &HttpRequest,
    params: &std::collections::HashMap<String, String>,
    record: UpstreamAuthState,
    ip: Option<String>,
) -> HttpResponse {
    let failed = |reason: &str, user: Option<Uuid>| {
        let mut ev = AuditEvent::new(AuditKind::UpstreamLoginFailed)
            .ip(ip.clone())
            .detail(json!({"provider": record.provider, "reason": reason}));
        if let Some(u) = user {
            ev = ev.user(u);
        }
        ev
    };
    match &record.purpose {
        UpstreamPurpose::Login { pending } => {
            // The client may have changed its redirect URIs meanwhile (RFC 7592).
            let client = match state.clients.get(&pending.client_id).await {
                Ok(Some(c)) if redirect_still_registered(pending, &c) => c,
                _ => {
                    return pages::error_page(
                        "invalid_request",
                        "the application changed or went away; start again from the application",
                    );
                }
            };
            let cb = client_callback(state, pending);
            let done = match complete(state, params, &record, true).await {
                Ok(d) => d,
                Err((e, reason)) => {
                    state
                        .audit
                        .record(failed(reason, None).client(&client.client_id))
                        .await;
                    return cb.error(&e);
                }
            };
            let identity = done.identity.clone().expect("identity was required");
            let user_id = match state
                .users
                .link_upstream(
                    &done.provider.name,
                    &identity.issuer,
                    &identity.subject,
                    &identity.username,
                )
                .await
            {
                Ok(u) => u,
                Err(e) => return cb.error(&OAuthError::server_error(e)),
            };
            state
                .audit
                .record(
                    AuditEvent::new(AuditKind::UpstreamLoginSucceeded)
                        .client(&client.client_id)
                        .user(user_id)
                        .ip(ip.clone())
                        .detail(json!({"provider": done.provider.name, "upstream_issuer": identity.issuer})),
                )
                .await;
            if let Err(e) = store_in_vault(state, user_id, &done, ip.clone()).await {
                return cb.error(&e);
            }
            // The consent given before the login, now recorded for the user.
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
                return cb.error(&OAuthError::server_error(e));
            }
            tracing::debug!(client = %client_display_name(&client), "upstream login complete");
            // The user has just signed in upstream.
            let authenticated = PendingAuthorization {
                authenticated_at: Some(chrono::Utc::now().timestamp()),
                ..(**pending).clone()
            };
            let mut resp = issue_code(state, req, &authenticated, user_id).await;
            if let Some(c) = new_session(state, user_id).await {
                let _ = resp.add_cookie(&c);
            }
            resp
        }
        UpstreamPurpose::ConnectLogin { ticket } => {
            let done = match complete(state, params, &record, true).await {
                Ok(d) => d,
                Err((_, reason)) => {
                    state.audit.record(failed(reason, None)).await;
                    return pages::message(
                        StatusCode::BAD_GATEWAY,
                        "Sign-in failed",
                        "The sign-in at the identity provider did not complete; ask your assistant for a new link.",
                    );
                }
            };
            let identity = done.identity.clone().expect("identity was required");
            let user_id = match state
                .users
                .link_upstream(
                    &done.provider.name,
                    &identity.issuer,
                    &identity.subject,
                    &identity.username,
                )
                .await
            {
                Ok(u) => u,
                Err(e) => return server_error_page(e),
            };
            state
                .audit
                .record(
                    AuditEvent::new(AuditKind::UpstreamLoginSucceeded)
                        .user(user_id)
                        .ip(ip.clone())
                        .detail(json!({"provider": done.provider.name, "upstream_issuer": identity.issuer, "for": "connect"})),
                )
                .await;
            if store_in_vault(state, user_id, &done, ip.clone())
                .await
                .is_err()
            {
                return pages::message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Sign-in failed",
                    "Your account could not be set up right now; try again later.",
                );
            }
            // Back to the link, now signed in; it checks that this is the link's user.
            let mut resp = HttpResponse::Found()
                .insert_header((
                    "Location",
                    format!("{}/connect/{ticket}", state.config.issuer),
                ))
                .insert_header(("Cache-Control", "no-store"))
                .finish();
            if let Some(c) = new_session(state, user_id).await {
                let _ = resp.add_cookie(&c);
            }
            resp
        }
        UpstreamPurpose::Connect {
            user_id,
            ticket_created_at,
        } => {
            let user_id = *user_id;
            let done = match complete(state, params, &record, false).await {
                Ok(d) => d,
                Err((_, reason)) => {
                    state
                        .audit
                        .record(
                            AuditEvent::new(AuditKind::ConnectRefused)
                                .user(user_id)
                                .ip(ip.clone())
                                .detail(json!({"provider": record.provider, "reason": reason})),
                        )
                        .await;
                    return pages::message(
                        StatusCode::BAD_GATEWAY,
                        "Connection failed",
                        "The provider did not complete the authorization; ask your assistant for a new link.",
                    );
                }
            };
            if let Some(refused) =
                refuse_connect_of_revoked_user(state, user_id, *ticket_created_at, &ip).await
            {
                return refused;
            }
            if store_in_vault(state, user_id, &done, ip.clone())
                .await
                .is_err()
            {
                return pages::message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Connection failed",
                    "The connection could not be saved right now; ask your assistant for a new link later.",
                );
            }
            state
                .audit
                .record(
                    AuditEvent::new(AuditKind::ConnectCompleted)
                        .user(user_id)
                        .ip(ip)
                        .detail(json!({"provider": done.provider.name})),
                )
                .await;
            pages::message(
                StatusCode::OK,
                "Connected",
                &format!(
                    "{} is connected. You can close this window and return to your assistant.",
                    done.provider.display_name()
                ),
            )
        }
    }
}

/// A connect flow under way while the operator revoked (`admin revoke-user`) or disabled the
/// user stores nothing: the link was issued before, possibly to an attacker holding the user's
/// token, and the user's browser may be hijacked. Checked at the callback, just before the
/// credential would reach the vault, as `issue_code` checks a consent page left open. `Some`:
/// the RFC-shaped error page to answer with.
async fn refuse_connect_of_revoked_user(
    state: &AppState,
    user_id: Uuid,
    ticket_created_at: Option<i64>,
    ip: &Option<String>,
) -> Option<HttpResponse> {
    let revoked = state
        .tokens
        .deny
        .user_revoked_before(&user_id.to_string())
        .is_some_and(|t| ticket_created_at.is_none_or(|at| at <= t));
    let (reason, description) = if revoked {
        (
            "user_revoked",
            "this connection was revoked; ask your assistant for a new link",
        )
    } else {
        match crate::user_admin::is_disabled(state, user_id).await {
            Ok(false) => return None,
            Ok(true) => ("user_disabled", "this account is disabled"),
            Err(e) => return Some(server_error_page(e)),
        }
    };
    state
        .audit
        .record(
            AuditEvent::new(AuditKind::ConnectRefused)
                .user(user_id)
                .ip(ip.clone())
                .detail(json!({"reason": reason})),
        )
        .await;
    Some(pages::error_page("access_denied", description))
}
