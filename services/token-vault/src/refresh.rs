//! Transparent refresh, one at a time across every replica.
//!
//! A caller whose upstream access token expires within the buffer tries to take the Redis lock
//! of its `(user, provider)`. The holder re-reads the record (another replica may have refreshed
//! meanwhile), redeems the refresh token at the upstream (retrying transient failures with
//! backoff), and stores the rotated tokens — new ciphertext, version + 1, conditional on the
//! version it read — before it releases the lock. Everyone else polls the record's version with
//! a short backoff and answers with the holder's result as soon as the version moves.
//!
//! Crash safety: the stored credential is only ever replaced by a complete new one, so a replica
//! that dies mid-refresh loses nothing; its lock stops being renewed and expires, and the next
//! caller refreshes. The upstream's `invalid_grant` marks the connection
//! `reauthorization_required`; transient failures never touch the stored credential, and the
//! current access token is returned while it has not expired.

use std::time::{Duration, Instant};

use crate::audit::AuditEvent;
use crate::credential::ProviderTokens;
use crate::error::VaultServiceError;
use crate::events::ConnectionEvent;
use crate::introspect::now_secs;
use crate::store::{ConnectionStatus, CredentialRow, CredentialWrite};
use crate::upstream::UpstreamError;
use crate::vault::Vault;

pub(crate) fn reauthorization_required() -> VaultServiceError {
    VaultServiceError::ReauthorizationRequired(
        "the upstream no longer accepts this connection; the user must connect the provider again"
            .into(),
    )
}

const POLL_MIN: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(200);

/// Returns fresh tokens for a record whose access token is due for refresh.
pub async fn refresh(
    vault: &Vault,
    caller: &str,
    row: CredentialRow,
    tokens: ProviderTokens,
) -> Result<ProviderTokens, VaultServiceError> {
    let inner = &vault.inner;
    let deadline = Instant::now() + Duration::from_millis(inner.refresh.wait_ms);
    let (user_id, provider) = (row.user_id.clone(), row.provider.clone());
    let mut seen = row.version;
    let mut current = tokens;
    let mut poll = POLL_MIN;
    loop {
        let lock = inner
            .locks
            .try_acquire(&user_id, &provider)
            .await
            .map_err(|e| VaultServiceError::Redis(e.to_string()))?;
        if let Some(lock) = lock {
            // Run the refresh apart from this request: if the caller goes away mid-refresh, the
            // rotated tokens are still stored and the lock released.
            let vault = vault.clone();
            let caller = caller.to_owned();
            let task = tokio::spawn(async move {
                let result = refresh_locked(&vault, &caller, &user_id, &provider).await;
                lock.release().await;
                result
            });
            return task.await.map_err(|_| {
                VaultServiceError::Unavailable("the refresh was interrupted".into())
            })?;
        }
        // Another replica (or request) refreshes: wait for the record to move.
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(POLL_MAX);
        match inner.store.version(&user_id, &provider).await? {
            None => return Err(VaultServiceError::NotFound),
            Some((_, ConnectionStatus::ReauthorizationRequired)) => {
                return Err(reauthorization_required());
            }
            Some((v, _)) if v != seen => {
                let row = inner
                    .store
                    .get(&user_id, &provider)
                    .await?
                    .ok_or(VaultServiceError::NotFound)?;
                if row.status == ConnectionStatus::ReauthorizationRequired {
                    return Err(reauthorization_required());
                }
                let fresh = vault.open(&row)?;
                if !fresh.needs_refresh(now_secs(), inner.refresh.buffer_secs) {
                    metrics::counter!("mcpauth_vault_refresh_total", "outcome" => "waited")
                        .increment(1);
                    return Ok(fresh);
                }
                seen = row.version;
                current = fresh;
                poll = POLL_MIN;
            }
            Some(_) => {}
        }
        if Instant::now() >= deadline {
            if !current.expired(now_secs()) {
                return Ok(current);
            }
            return Err(VaultServiceError::Unavailable(
                "the upstream token is being refreshed and the refresh did not finish in time"
                    .into(),
            ));
        }
    }
}

/// The refresh proper, under the lock.
async fn refresh_locked(
    vault: &Vault,
    caller: &str,
    user_id: &str,
    provider: &str,
) -> Result<ProviderTokens, VaultServiceError> {
    let inner = &vault.inner;
    let cfg = vault.provider(provider)?.clone();
    let row = inner
        .store
        .get(user_id, provider)
        .await?
        .ok_or(VaultServiceError::NotFound)?;
    if row.status == ConnectionStatus::ReauthorizationRequired {
        return Err(reauthorization_required());
    }
    let tokens = vault.open(&row)?;
    if !tokens.needs_refresh(now_secs(), inner.refresh.buffer_secs) {
        // Refreshed by someone else between our read and the lock.
        return Ok(tokens);
    }
    if tokens.refresh_token.is_empty() {
        if tokens.expired(now_secs()) {
            mark_reauthorization_required(vault, caller, &row, "no refresh token").await?;
            return Err(reauthorization_required());
        }
        return Ok(tokens);
    }
    let started = Instant::now();
    let mut attempt = 0;
    let mut backoff = Duration::from_millis(inner.refresh.retry_backoff_ms);
    let outcome = loop {
        match inner.upstream.refresh(&cfg, &tokens.refresh_token).await {
            Err(e) if e.is_transient() && attempt < inner.refresh.retries => {
                attempt += 1;
                tracing::warn!(error = %e, provider, attempt, "upstream refresh failed transiently, retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            other => break other,
        }
    };
    metrics::histogram!("mcpauth_vault_refresh_seconds").record(started.elapsed().as_secs_f64());
    match outcome {
        Ok(fresh) => {
            let merged = tokens.refreshed(fresh);
            let version = row.version + 1;
            let sealed = merged.seal(&inner.keys, user_id, provider, version)?;
            let stored = inner
                .store
                .store_refreshed(
                    user_id,
                    provider,
                    row.version,
                    &CredentialWrite {
                        sealed: &sealed,
                        version,
                        scopes: &merged.scopes,
                        expires_at: merged.expires_at,
                    },
                )
                .await?;
            if stored {
                vault.changed(user_id, provider).await;
            } else {
                // A new connection replaced the record meanwhile; it wins, these tokens still work.
                tracing::warn!(
                    provider,
                    "credential replaced during refresh; refreshed tokens not stored"
                );
            }
            metrics::counter!("mcpauth_vault_refresh_total", "outcome" => "refreshed").increment(1);
            inner
                .audit
                .record(
                    AuditEvent::new(caller, "refresh", user_id, provider)
                        .detail(serde_json::json!({"version": version, "attempts": attempt + 1, "stored": stored})),
                )
                .await;
            Ok(merged)
        }
        Err(UpstreamError::InvalidGrant) => {
            mark_reauthorization_required(vault, caller, &row, "invalid_grant").await?;
            Err(reauthorization_required())
        }
        Err(e) => {
            metrics::counter!("mcpauth_vault_refresh_total", "outcome" => "failed").increment(1);
            inner
                .audit
                .record(
                    AuditEvent::new(caller, "refresh", user_id, provider)
                        .outcome("upstream_failed")
                        .detail(
                            serde_json::json!({"attempts": attempt + 1, "error": e.to_string()}),
                        ),
                )
                .await;
            if !tokens.expired(now_secs()) {
                tracing::warn!(error = %e, provider, "upstream refresh failed; the current token is still valid");
                return Ok(tokens);
            }
            Err(VaultServiceError::Unavailable(format!(
                "refresh at the upstream failed ({e}); the credential is kept, retry later"
            )))
        }
    }
}

async fn mark_reauthorization_required(
    vault: &Vault,
    caller: &str,
    row: &CredentialRow,
    reason: &'static str,
) -> Result<(), VaultServiceError> {
    let inner = &vault.inner;
    let marked = inner
        .store
        .mark_reauthorization_required(&row.user_id, &row.provider, row.version)
        .await?;
    metrics::counter!("mcpauth_vault_refresh_total", "outcome" => "reauthorization_required")
        .increment(1);
    if marked {
        vault.changed(&row.user_id, &row.provider).await;
        inner
            .events
            .publish(
                &row.user_id,
                &row.provider,
                ConnectionEvent::ReauthorizationRequired,
            )
            .await;
    }
    inner
        .audit
        .record(
            AuditEvent::new(caller, "refresh", &row.user_id, &row.provider)
                .outcome("reauthorization_required")
                .detail(serde_json::json!({"reason": reason})),
        )
        .await;
    Ok(())
}
