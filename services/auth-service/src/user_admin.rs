//! Incident response for one user: revoke everything the user holds in one call, and disable or
//! re-enable the user. Driven by the gRPC `mcpauth.v1.UserAdmin` service (callers with the
//! `admin` permission) and by the `auth-service admin …` CLI; both audited.
//!
//! What a revocation covers, in this order:
//! 1. live access tokens: a per-user deny entry ("tokens of user X issued at or before T"),
//!    persisted, applied here and fanned out to every replica like any revocation (≤ 1 s, and
//!    re-synced from Postgres if the fan-out is lost); outstanding authorization codes of the
//!    user issued up to T are refused at redemption by the same entry;
//! 2. every grant with its refresh tokens (Postgres), each also fanned out as a `grant`
//!    revocation, so that caches of mcp-service and token-vault that know only grants evict the
//!    user's tokens too;
//! 3. consents (the next `/authorize` asks again) and browser sessions (Redis);
//! 4. optionally the user's upstream credentials in token-vault.

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::audit::{AuditEvent, AuditKind};
use crate::error::StoreError;
use crate::state::AppState;
use crate::store::revocations::{Revocation, RevocationKind};

/// How an operator names a user.
#[derive(Debug, Clone, Default)]
pub struct UserRef {
    /// The user id (`sub` of the user's tokens).
    pub user_id: Option<String>,
    /// An upstream identity: issuer (or login provider name `local`/`dev`) and subject.
    pub issuer: Option<String>,
    pub subject: Option<String>,
}

impl UserRef {
    /// Parses the CLI's `--user`: a user id, or `ISSUER#SUBJECT` / `local:USERNAME`.
    pub fn parse(s: &str) -> Self {
        if let Ok(u) = Uuid::parse_str(s) {
            return Self {
                user_id: Some(u.to_string()),
                ..Self::default()
            };
        }
        let (issuer, subject) = match s.rsplit_once('#') {
            Some((i, sub)) => (i, sub),
            None => match s.split_once(':') {
                Some((p, sub)) if p == "local" || p == "dev" => (p, sub),
                _ => ("", s),
            },
        };
        Self {
            user_id: None,
            issuer: Some(issuer.to_owned()),
            subject: Some(subject.to_owned()),
        }
    }
}

/// Who asked, for the audit trail.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `grpc:<caller name>` or `cli`.
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokeSummary {
    pub user_id: Uuid,
    pub grants_revoked: u64,
    pub consents_deleted: u64,
    pub sessions_deleted: u64,
    pub vault_credentials_deleted: u64,
    pub tokens_revoked_before: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no such user")]
    NotFound,
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("token-vault: {0}")]
    Vault(#[from] crate::vault::VaultClientError),
}

const MAX_FIELD: usize = 256;

fn check_field(name: &str, v: &str) -> Result<(), AdminError> {
    if v.len() > MAX_FIELD || v.chars().any(char::is_control) {
        return Err(AdminError::InvalidArgument(format!(
            "{name}: up to {MAX_FIELD} characters, no control characters"
        )));
    }
    Ok(())
}

/// Finds the user `r` names.
pub async fn resolve(state: &AppState, r: &UserRef) -> Result<Uuid, AdminError> {
    let store = &state.user_admin;
    let user = match (&r.user_id, &r.issuer, &r.subject) {
        (Some(id), None, None) => {
            let id = Uuid::parse_str(id)
                .map_err(|_| AdminError::InvalidArgument("user_id: not a user id".into()))?;
            store.exists(id).await?.then_some(id)
        }
        (None, Some(issuer), Some(subject)) if !subject.is_empty() => {
            check_field("upstream_issuer", issuer)?;
            check_field("upstream_subject", subject)?;
            store.find_by_subject(issuer, subject).await?
        }
        _ => {
            return Err(AdminError::InvalidArgument(
                "name the user by user_id, or by upstream_issuer and upstream_subject".into(),
            ));
        }
    };
    user.ok_or(AdminError::NotFound)
}

/// Revokes everything of `user_id` (see the module documentation). Idempotent.
pub async fn revoke_user(
    state: &AppState,
    user_id: Uuid,
    include_vault: bool,
    actor: &Actor,
) -> Result<RevokeSummary, AdminError> {
    check_field("reason", &actor.reason)?;
    let store = &state.user_admin;
    let now = Utc::now().timestamp();
    let cfg = &state.config.tokens;
    // Long enough to outlive every access token and authorization code issued up to now.
    let covers_until = now + cfg.access_ttl_secs.max(cfg.code_ttl_secs as i64) + 1;
    state
        .tokens
        .publish_revocation(Revocation {
            kind: RevocationKind::User,
            id: user_id.to_string(),
            expires_at: covers_until,
            issued_before: Some(now),
        })
        .await?;
    let grants = store.revoke_grants(user_id, "user_revoked").await?;
    for g in &grants {
        state
            .tokens
            .revoke(
                RevocationKind::Grant,
                &g.to_string(),
                now + cfg.access_ttl_secs,
            )
            .await?;
    }
    let consents_deleted = store.delete_consents(user_id).await?;
    let sessions_deleted = state.ephemeral.sessions.delete_user(user_id).await?;
    let mut summary = RevokeSummary {
        user_id,
        grants_revoked: grants.len() as u64,
        consents_deleted,
        sessions_deleted,
        vault_credentials_deleted: 0,
        tokens_revoked_before: now,
    };
    let vault_result = if include_vault {
        match &state.vault {
            Some(v) => v.delete_all_of_user(&user_id.to_string()).await.map(Some),
            None => Err(crate::vault::VaultClientError::NotConfigured),
        }
    } else {
        Ok(None)
    };
    if let Ok(Some(n)) = &vault_result {
        summary.vault_credentials_deleted = *n;
    }
    state
        .audit
        .record(
            AuditEvent::new(AuditKind::UserRevoked)
                .user(user_id)
                .detail(json!({
                    "actor": actor.name,
                    "reason": actor.reason,
                    "grants_revoked": summary.grants_revoked,
                    "consents_deleted": summary.consents_deleted,
                    "sessions_deleted": summary.sessions_deleted,
                    "vault": if include_vault {
                        match &vault_result {
                            Ok(_) => json!({"deleted": summary.vault_credentials_deleted}),
                            Err(e) => json!({"error": e.to_string()}),
                        }
                    } else {
                        serde_json::Value::Null
                    },
                    "tokens_revoked_before": now,
                })),
        )
        .await;
    tracing::warn!(user = %user_id, actor = %actor.name, grants = summary.grants_revoked, "user revoked");
    vault_result?;
    Ok(summary)
}

/// Disables (and then revokes, see [`revoke_user`]) or re-enables a user. A disabled user gets
/// no authorization code and cannot redeem one; re-enabling restores nothing that was revoked.
pub async fn set_disabled(
    state: &AppState,
    user_id: Uuid,
    disabled: bool,
    include_vault: bool,
    actor: &Actor,
) -> Result<Option<RevokeSummary>, AdminError> {
    check_field("reason", &actor.reason)?;
    let store = &state.user_admin;
    // The flag first: a code redeemed from now on sees it after creating its grant, and a grant
    // created before is found by the revocation below.
    if !store.set_disabled(user_id, disabled).await? {
        return Err(AdminError::NotFound);
    }
    state
        .audit
        .record(
            AuditEvent::new(if disabled {
                AuditKind::UserDisabled
            } else {
                AuditKind::UserEnabled
            })
            .user(user_id)
            .detail(json!({"actor": actor.name, "reason": actor.reason})),
        )
        .await;
    tracing::warn!(user = %user_id, actor = %actor.name, disabled, "user disabled flag changed");
    if disabled {
        return revoke_user(state, user_id, include_vault, actor)
            .await
            .map(Some);
    }
    Ok(None)
}

/// Whether the user may get an authorization code or tokens.
pub async fn is_disabled(state: &AppState, user_id: Uuid) -> Result<bool, StoreError> {
    state.user_admin.is_disabled(user_id).await
}

/// What `auth-service admin …` was asked to do.
#[derive(Debug, Clone)]
pub enum CliAction {
    RevokeUser { include_vault: bool },
    DisableUser { include_vault: bool },
    EnableUser,
}

/// Runs an `auth-service admin …` command with the service's own configuration: it connects to
/// the same Postgres and Redis as the serving replicas (the revocation reaches them through the
/// event channel, or their periodic re-sync), and needs no gRPC credential. Returns the JSON
/// summary printed on stdout.
pub async fn run_cli(
    config: crate::config::Config,
    user: &str,
    reason: &str,
    action: CliAction,
) -> anyhow::Result<serde_json::Value> {
    let (state, audit_writer) =
        crate::state::build_state(config, mcpauth_runtime::init_metrics()).await?;
    let actor = Actor {
        name: "cli".into(),
        reason: reason.to_owned(),
    };
    let result = async {
        let user_id = resolve(&state, &UserRef::parse(user)).await?;
        let out = match action {
            CliAction::RevokeUser { include_vault } => {
                summary_json(&revoke_user(&state, user_id, include_vault, &actor).await?)
            }
            CliAction::DisableUser { include_vault } => {
                let s = set_disabled(&state, user_id, true, include_vault, &actor).await?;
                let mut v = json!({"user_id": user_id, "disabled": true});
                if let Some(s) = s {
                    v["revoked"] = summary_json(&s);
                }
                v
            }
            CliAction::EnableUser => {
                set_disabled(&state, user_id, false, false, &actor).await?;
                json!({"user_id": user_id, "disabled": false})
            }
        };
        Ok::<_, AdminError>(out)
    }
    .await;
    let ephemeral = state.ephemeral.clone();
    let resync_ms = state.config.tokens.revocation_resync_ms;
    // The audit writer drains what was recorded once the last handle is gone.
    drop(state);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), audit_writer).await;
    match send_owed_resync(&ephemeral).await {
        Ok(()) => Ok(result?),
        Err(e) => Err(anyhow::anyhow!(
            "{}",
            not_told(result.err().as_ref(), &e, resync_ms)
        )),
    }
}

/// How often, and how far apart, the CLI tries to send a `resync` it owes before it gives up:
/// about 6 s in all, enough to ride out a Redis failover without keeping an operator waiting.
const RESYNC_ATTEMPTS: u32 = 5;
const RESYNC_FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

/// Sends the `resync` owed since a failed publish (see `Ephemeral::publish`), if any, retrying
/// with doubling backoff. A serving replica's re-sync loop sends it at its next tick; the CLI
/// has no such loop, and exiting while owing it would leave the verification caches of
/// mcp-service and token-vault unaware of the revocation. `Err`: the last failure, once every
/// attempt failed.
async fn send_owed_resync(
    ephemeral: &crate::store::ephemeral::Ephemeral,
) -> Result<(), mcpauth_runtime::bus::BusError> {
    let mut backoff = RESYNC_FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match ephemeral.events.publish_owed_resync().await {
            Ok(()) => return Ok(()),
            Err(e) if attempt >= RESYNC_ATTEMPTS => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, attempt, "resync of replica events still owed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
        }
    }
}

/// The one line the CLI exits with when the replicas could not be told: what is done, what is
/// not, and what the replicas will do about it.
fn not_told(
    failed: Option<&AdminError>,
    resync: &mcpauth_runtime::bus::BusError,
    resync_ms: u64,
) -> String {
    let done = match failed {
        None => "the revocation is stored in Postgres".to_owned(),
        Some(e) => format!("the command failed part-way ({e}); what it wrote to Postgres stays"),
    };
    let line = format!(
        "{done}, but the replicas were not told: publishing on Redis failed and the resync owed          for it could not be sent either ({RESYNC_ATTEMPTS} attempts; last error: {resync}).          auth-service replicas apply the revocation at their periodic re-sync from Postgres          (tokens.revocation_resync_ms = {resync_ms}); mcp-service and token-vault may answer          from cached verifications of the user's tokens until those entries expire          (their cache_ttl_ms) — check Redis and run the command again to tell them at once"
    );
    line.replace(['\n', '\r'], " ")
}

fn summary_json(s: &RevokeSummary) -> serde_json::Value {
    json!({
        "user_id": s.user_id,
        "grants_revoked": s.grants_revoked,
        "consents_deleted": s.consents_deleted,
        "sessions_deleted": s.sessions_deleted,
        "vault_credentials_deleted": s.vault_credentials_deleted,
        "tokens_revoked_before": s.tokens_revoked_before,
    })
}
