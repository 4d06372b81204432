//! The `authorization_code` grant (OAuth 2.1 §4.1.3) with PKCE. A code is single use: a second
//! redemption also revokes everything the first one issued.

use std::collections::HashMap;

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::audit::{AuditEvent, AuditKind};
use crate::domain::pkce;
use crate::domain::token::{OpaqueKind, hash};
use crate::error::OAuthError;
use crate::http::token::TokenResponse;
use crate::state::AppState;
use crate::store::clients::Client;
use crate::store::ephemeral::CodeRedemption;
use crate::store::grants::Grant;

pub async fn handle(
    state: &AppState,
    client: &Client,
    form: &HashMap<String, String>,
    ip: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    let code = form
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
    let verifier = form.get("code_verifier").ok_or_else(|| {
        OAuthError::invalid_request("code_verifier is missing (PKCE is required)")
    })?;
    let invalid =
        || OAuthError::invalid_grant("the authorization code is invalid, expired or already used");
    // A forged or mangled code is refused without touching Redis.
    state
        .tokens
        .keys
        .verify_opaque(OpaqueKind::AuthorizationCode, code)
        .map_err(|_| invalid())?;
    let code_hash = hash(code);
    let record = match state.ephemeral.codes.redeem(&code_hash).await? {
        CodeRedemption::Fresh(r) => r,
        CodeRedemption::Replayed(grant) => {
            if let Some(g) = grant {
                state
                    .tokens
                    .revoke_grant(g, "authorization_code_replay")
                    .await?;
            }
            state
                .audit
                .record(
                    AuditEvent::new(AuditKind::CodeReplayed)
                        .client(&client.client_id)
                        .ip(ip)
                        .detail(json!({"revoked_grant": grant})),
                )
                .await;
            return Err(invalid());
        }
        CodeRedemption::Unknown => return Err(invalid()),
    };
    if record.client_id != client.client_id {
        return Err(invalid());
    }
    // A code issued before its user was revoked (`admin revoke-user`) is dead too.
    if state
        .tokens
        .deny
        .user_revoked_before(&record.user_id.to_string())
        .is_some_and(|t| record.issued_at <= t)
    {
        return Err(invalid());
    }
    match form.get("redirect_uri") {
        Some(r) if r != &record.redirect_uri => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        None if record.redirect_uri_given => {
            return Err(OAuthError::invalid_request(
                "redirect_uri is required: the authorization request had one",
            ));
        }
        _ => {}
    }
    if !pkce::verify(verifier, &record.code_challenge) {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    if let Some(r) = form.get("resource") {
        let requested = state.resolve_resource(Some(r))?;
        if requested != record.resource {
            return Err(OAuthError::invalid_target(
                "resource differs from the one authorized",
            ));
        }
    }
    let grant = Grant {
        grant_id: Uuid::new_v4(),
        user_id: record.user_id,
        client_id: client.client_id.clone(),
        scope: record.scope.clone(),
        resource: record.resource.clone(),
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
    if state
        .ephemeral
        .codes
        .bind_grant(&code_hash, grant.grant_id)
        .await?
    {
        // The code was replayed while this redemption was in flight: nothing it issued stands.
        state
            .tokens
            .revoke_grant(grant.grant_id, "authorization_code_replay")
            .await?;
        return Err(invalid());
    }
    // Checked after the grant exists: `admin disable-user` sets the flag before it revokes the
    // user's grants, so a grant created meanwhile is either seen here or revoked there. The
    // same for `admin revoke-user` as far as this replica has heard of it.
    let revoked_meanwhile = state
        .tokens
        .deny
        .user_revoked_before(&grant.user_id.to_string())
        .is_some_and(|t| record.issued_at <= t);
    let stop = if revoked_meanwhile {
        Some("user_revoked")
    } else if crate::user_admin::is_disabled(state, grant.user_id).await? {
        Some("user_disabled")
    } else {
        None
    };
    if let Some(reason) = stop {
        state.tokens.revoke_grant(grant.grant_id, reason).await?;
        return Err(invalid());
    }
    let (access, claims) = state.tokens.issue_access(
        &grant.user_id.to_string(),
        &client.client_id,
        Some(grant.grant_id),
        &grant.resource,
        &grant.scope,
    );
    state
        .audit
        .record(
            AuditEvent::new(AuditKind::CodeRedeemed)
                .client(&client.client_id)
                .user(grant.user_id)
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
