//! The `refresh_token` grant (OAuth 2.1 §4.3): rotation on every use, optional narrowing of
//! scope, the grace period of `domain::refresh` (a repeat gets the same successor), and family
//! revocation on reuse.

use std::collections::HashMap;

use serde_json::json;

use crate::audit::{AuditEvent, AuditKind};
use crate::domain::scope::ScopeSet;
use crate::domain::token::{OpaqueKind, hash};
use crate::error::OAuthError;
use crate::http::token::TokenResponse;
use crate::state::AppState;
use crate::store::clients::Client;
use crate::store::grants::{RefreshOutcome, RefreshRequest};

use super::{GrantContext, GrantHandler, GrantResponse, Registration};

/// The registry entry: the handler also needs the request's arrival time.
pub struct RefreshToken;

#[async_trait::async_trait]
impl GrantHandler for RefreshToken {
    fn grant_type(&self) -> &'static str {
        "refresh_token"
    }
    fn metric_label(&self) -> &'static str {
        "refresh_token"
    }
    fn registration(&self) -> Registration {
        Registration::Open
    }
    async fn handle(&self, cx: GrantContext<'_>) -> Result<GrantResponse, OAuthError> {
        handle(cx.state, cx.client, cx.form, cx.ip, cx.received_at)
            .await
            .map(GrantResponse::from)
    }
}

pub async fn handle(
    state: &AppState,
    client: &Client,
    form: &HashMap<String, String>,
    ip: Option<String>,
    received_at: std::time::Instant,
) -> Result<TokenResponse, OAuthError> {
    let presented = form
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
    let invalid = || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
    state
        .tokens
        .keys
        .verify_opaque(OpaqueKind::RefreshToken, presented)
        .map_err(|_| invalid())?;
    let requested_resource = match form.get("resource") {
        Some(r) => Some(state.resolve_resource(Some(r))?),
        None => None,
    };
    let requested_scope = match form.get("scope") {
        Some(s) => {
            let mut set =
                ScopeSet::parse(s).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
            set.remove("offline_access");
            (!set.is_empty()).then_some(set)
        }
        None => None,
    };
    // Derived from the presented token, not random: a repeat within the grace period gets this
    // very token again, so a racing thief gets no branch of the family of its own.
    let successor = state.tokens.keys.refresh_successor(presented);
    let cfg = &state.config.tokens;
    let outcome = state
        .grants
        .refresh(RefreshRequest {
            presented_sha256: &hash(presented),
            client_id: &client.client_id,
            successor_sha256: &hash(&successor),
            requested_scope: requested_scope.as_ref(),
            requested_resource: requested_resource.as_deref(),
            grace_secs: cfg.refresh_grace_secs,
            refresh_ttl_secs: cfg.refresh_ttl_secs,
            received_at,
        })
        .await?;
    let row = match outcome {
        RefreshOutcome::Issued(row) => row,
        RefreshOutcome::Invalid => return Err(invalid()),
        RefreshOutcome::ScopeNotGranted => {
            return Err(OAuthError::invalid_scope(
                "the requested scope exceeds what was granted",
            ));
        }
        RefreshOutcome::ResourceNotGranted => {
            return Err(OAuthError::invalid_target(
                "the requested resource was not part of the grant",
            ));
        }
        RefreshOutcome::ReuseDetected(grant) => {
            state
                .tokens
                .revoke_grant(grant.grant_id, "refresh_token_reuse")
                .await?;
            state
                .audit
                .record(
                    AuditEvent::new(AuditKind::RefreshReuseDetected)
                        .client(&client.client_id)
                        .user(grant.user_id)
                        .grant(grant.grant_id)
                        .ip(ip),
                )
                .await;
            return Err(invalid());
        }
    };
    let (access, claims) = state.tokens.issue_access(
        &row.grant.user_id.to_string(),
        &client.client_id,
        Some(row.grant.grant_id),
        &row.resource,
        &row.scope,
    );
    state
        .audit
        .record(
            AuditEvent::new(AuditKind::TokenRefreshed)
                .client(&client.client_id)
                .user(row.grant.user_id)
                .grant(row.grant.grant_id)
                .ip(ip)
                .detail(json!({"jti": claims.jti, "scope": row.scope})),
        )
        .await;
    Ok(TokenResponse {
        access_token: access,
        token_type: "Bearer",
        expires_in: state.tokens.access_ttl(),
        scope: row.scope,
        refresh_token: Some(successor),
    })
}
