//! The device code grant (RFC 8628 §3.4–3.5): the device polls with its device code until the
//! user decided at `/device`. Every answer before that comes from the ephemeral store alone —
//! one atomic call per poll, no Postgres round trip — so polling load never reaches the
//! database; only the one successful redemption writes the grant, as the authorization code
//! grant does.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::audit::{AuditEvent, AuditKind};
use crate::domain::token::{OpaqueKind, hash};
use crate::error::OAuthError;
use crate::http::token::TokenResponse;
use crate::state::AppState;
use crate::store::clients::Client;
use crate::store::ephemeral::DevicePoll;
use crate::store::grants::Grant;

/// The grant type URI (RFC 8628 §3.4).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn polling_error(code: &'static str, description: &str) -> OAuthError {
    OAuthError::new(code, StatusCode::BAD_REQUEST, description)
}

pub async fn handle(
    state: &AppState,
    client: &Client,
    form: &HashMap<String, String>,
    ip: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    let device_code = form
        .get("device_code")
        .ok_or_else(|| OAuthError::invalid_request("device_code is missing"))?;
    let invalid = || OAuthError::invalid_grant("the device code is invalid or was already used");
    // A forged or mangled code is refused without touching the store.
    state
        .tokens
        .keys
        .verify_opaque(OpaqueKind::DeviceCode, device_code)
        .map_err(|_| invalid())?;
    let now_ms = Utc::now().timestamp_millis();
    let (auth, user_id, authenticated_at) = match state
        .ephemeral
        .device_codes
        .poll(&hash(device_code), &client.client_id, now_ms)
        .await?
    {
        DevicePoll::Approved {
            auth,
            user_id,
            authenticated_at,
        } => (auth, user_id, authenticated_at),
        DevicePoll::Pending { .. } => {
            return Err(polling_error(
                "authorization_pending",
                "the user has not yet completed the authorization",
            ));
        }
        DevicePoll::SlowDown { interval } => {
            return Err(polling_error(
                "slow_down",
                &format!("polling too fast: wait at least {interval} seconds between requests"),
            ));
        }
        DevicePoll::Denied => {
            return Err(polling_error(
                "access_denied",
                "the user denied the authorization request",
            ));
        }
        DevicePoll::Expired => {
            return Err(polling_error(
                "expired_token",
                "the device code has expired; start a new device authorization",
            ));
        }
        DevicePoll::Unknown | DevicePoll::WrongClient | DevicePoll::Redeemed => {
            return Err(invalid());
        }
    };
    if let Some(r) = form.get("resource") {
        // Checked after the approval was taken: a device that names another resource has
        // spent its code, as a mismatched PKCE verifier spends an authorization code.
        if state.resolve_resource(Some(r))? != auth.resource {
            return Err(OAuthError::invalid_target(
                "resource differs from the one authorized",
            ));
        }
    }
    issue(
        state,
        client,
        auth.scope,
        auth.resource,
        user_id,
        authenticated_at,
        ip,
    )
    .await
}

/// The tokens of an approved device code: the same grant, access and refresh tokens as the
/// authorization code grant issues.
async fn issue(
    state: &AppState,
    client: &Client,
    scope: String,
    resource: String,
    user_id: Uuid,
    authenticated_at: i64,
    ip: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    let invalid = || OAuthError::invalid_grant("the device code is invalid or was already used");
    let revoked = || {
        state
            .tokens
            .deny
            .user_revoked_before(&user_id.to_string())
            .is_some_and(|t| authenticated_at <= t)
    };
    if revoked() {
        return Err(invalid());
    }
    let grant = Grant {
        grant_id: Uuid::new_v4(),
        user_id,
        client_id: client.client_id.clone(),
        scope,
        resource,
    };
    let refresh = client
        .allows_grant("refresh_token")
        .then(|| state.tokens.keys.mint_opaque(OpaqueKind::RefreshToken));
    let refresh_ttl = state.config.tokens.refresh_ttl_secs;
    state
        .grants
        .create(
            &grant,
            Utc::now() + chrono::Duration::seconds(refresh_ttl),
            refresh.as_deref().map(hash).as_deref(),
        )
        .await?;
    // As in the authorization code grant: a revocation or a disable that raced the grant's
    // creation is seen here, or revokes the grant itself.
    let stop = if revoked() {
        Some("user_revoked")
    } else if crate::user_admin::is_disabled(state, user_id).await? {
        Some("user_disabled")
    } else {
        None
    };
    if let Some(reason) = stop {
        state.tokens.revoke_grant(grant.grant_id, reason).await?;
        return Err(invalid());
    }
    let (access, claims) = state.tokens.issue_access(
        &user_id.to_string(),
        &client.client_id,
        Some(grant.grant_id),
        &grant.resource,
        &grant.scope,
    );
    state
        .audit
        .record(
            AuditEvent::new(AuditKind::DeviceRedeemed)
                .client(&client.client_id)
                .user(user_id)
                .grant(grant.grant_id)
                .ip(ip)
                .detail(json!({"jti": claims.jti, "scope": grant.scope, "resource": grant.resource, "refresh": refresh.is_some()})),
        )
        .await;
    Ok(TokenResponse {
        access_token: access,
        token_type: "Bearer",
        expires_in: state.tokens.access_ttl(),
        scope: grant.scope,
        refresh_token: refresh,
    })
}
