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
//!
//! The refresh depends only on what it uses ([`Refresher`]): the credential store, the lock, the
//! upstream's token endpoint, a clock, the key ring, and the after-write duties
//! ([`Changes`]). Any store and lock implementation will do (Postgres and Redis, or the embedded
//! SQLite and in-process lock); the conformance suite runs it against both.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::audit::AuditEvent;
use crate::changes::Changes;
use crate::config::{ProviderConfig, RefreshConfig};
use crate::credential::ProviderTokens;
use crate::crypto::KeyRing;
use crate::error::VaultServiceError;
use crate::events::ConnectionEvent;
use crate::store::credentials::CredentialStore;
use crate::store::locks::RefreshLocks;
use crate::store::{ConnectionStatus, CredentialRow, CredentialWrite};
use crate::upstream::{UpstreamClient, UpstreamError};

/// The provider's token endpoint, as far as a refresh is concerned.
#[async_trait::async_trait]
pub trait TokenEndpoint: Send + Sync + 'static {
    /// Redeems `refresh_token` at `provider`'s token endpoint.
    async fn refresh(
        &self,
        provider: &ProviderConfig,
        refresh_token: &str,
    ) -> Result<ProviderTokens, UpstreamError>;
}

#[async_trait::async_trait]
impl TokenEndpoint for UpstreamClient {
    async fn refresh(
        &self,
        provider: &ProviderConfig,
        refresh_token: &str,
    ) -> Result<ProviderTokens, UpstreamError> {
        UpstreamClient::refresh(self, provider, refresh_token).await
    }
}

/// Seconds since the epoch, as the expiry of upstream tokens is compared with.
pub trait Clock: Send + Sync + 'static {
    fn now_secs(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_secs(&self) -> i64 {
        crate::introspect::now_secs()
    }
}

/// Everything a refresh needs, and nothing else. Cheap to clone.
#[derive(Clone)]
pub struct Refresher {
    pub store: Arc<dyn CredentialStore>,
    pub locks: Arc<dyn RefreshLocks>,
    pub upstream: Arc<dyn TokenEndpoint>,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<KeyRing>,
    pub settings: RefreshConfig,
    pub changes: Changes,
}

/// Opens a stored row: refuses a row older than its record's last delete (a restored copy, not
/// the user's current connection), then decrypts.
pub(crate) fn open(
    keys: &KeyRing,
    row: &CredentialRow,
) -> Result<ProviderTokens, VaultServiceError> {
    if row.is_stale() {
        tracing::warn!(
            provider = %row.provider,
            version = row.version,
            deleted_through = row.deleted_through,
            "refusing a credential row older than its record's last delete"
        );
        return Err(crate::crypto::CryptoError::Stale.into());
    }
    Ok(ProviderTokens::open(
        keys,
        &row.user_id,
        &row.provider,
        row.version,
        &row.sealed,
    )?)
}

pub(crate) fn reauthorization_required() -> VaultServiceError {
    VaultServiceError::ReauthorizationRequired(
        "the upstream no longer accepts this connection; the user must connect the provider again"
            .into(),
    )
}

const POLL_MIN: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(200);

impl Refresher {
    /// Returns fresh tokens for a record whose access token is due for refresh; `provider` is the
    /// record's provider.
    pub async fn refresh(
        &self,
        caller: &str,
        provider_cfg: &ProviderConfig,
        row: CredentialRow,
        tokens: ProviderTokens,
    ) -> Result<ProviderTokens, VaultServiceError> {
        let deadline = Instant::now() + Duration::from_millis(self.settings.wait_ms);
        let lease = Duration::from_millis(self.settings.lock_ttl_ms);
        let (user_id, provider) = (row.user_id.clone(), row.provider.clone());
        let mut seen = row.version;
        let mut current = tokens;
        let mut poll = POLL_MIN;
        loop {
            let lock = self
                .locks
                .try_acquire(&user_id, &provider, lease)
                .await
                .map_err(|e| VaultServiceError::Redis(e.to_string()))?;
            if let Some(lock) = lock {
                // Run the refresh apart from this request: if the caller goes away mid-refresh, the
                // rotated tokens are still stored and the lock released.
                let this = self.clone();
                let caller = caller.to_owned();
                let cfg = provider_cfg.clone();
                let task = tokio::spawn(async move {
                    let result = this
                        .refresh_locked(&caller, &cfg, &user_id, &provider)
                        .await;
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
            match self.store.version(&user_id, &provider).await? {
                None => return Err(VaultServiceError::NotFound),
                Some((_, ConnectionStatus::ReauthorizationRequired)) => {
                    return Err(reauthorization_required());
                }
                Some((v, _)) if v != seen => {
                    let row = self
                        .store
                        .get(&user_id, &provider)
                        .await?
                        .ok_or(VaultServiceError::NotFound)?;
                    if row.status == ConnectionStatus::ReauthorizationRequired {
                        return Err(reauthorization_required());
                    }
                    let fresh = open(&self.keys, &row)?;
                    if !fresh.needs_refresh(self.clock.now_secs(), self.settings.buffer_secs) {
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
                if !current.expired(self.clock.now_secs()) {
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
        &self,
        caller: &str,
        cfg: &ProviderConfig,
        user_id: &str,
        provider: &str,
    ) -> Result<ProviderTokens, VaultServiceError> {
        let row = self
            .store
            .get(user_id, provider)
            .await?
            .ok_or(VaultServiceError::NotFound)?;
        if row.status == ConnectionStatus::ReauthorizationRequired {
            return Err(reauthorization_required());
        }
        let tokens = open(&self.keys, &row)?;
        if !tokens.needs_refresh(self.clock.now_secs(), self.settings.buffer_secs) {
            // Refreshed by someone else between our read and the lock.
            return Ok(tokens);
        }
        if tokens.refresh_token.is_empty() {
            if tokens.expired(self.clock.now_secs()) {
                self.mark_reauthorization_required(caller, &row, "no refresh token")
                    .await?;
                return Err(reauthorization_required());
            }
            return Ok(tokens);
        }
        let started = Instant::now();
        let mut attempt = 0;
        let mut backoff = Duration::from_millis(self.settings.retry_backoff_ms);
        let outcome = loop {
            match self.upstream.refresh(cfg, &tokens.refresh_token).await {
                Err(e) if e.is_transient() && attempt < self.settings.retries => {
                    attempt += 1;
                    tracing::warn!(error = %e, provider, attempt, "upstream refresh failed transiently, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                other => break other,
            }
        };
        metrics::histogram!("mcpauth_vault_refresh_seconds")
            .record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(fresh) => {
                let merged = tokens.refreshed(fresh);
                let version = row.version + 1;
                let sealed = merged.seal(&self.keys, user_id, provider, version)?;
                let stored = self
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
                    self.changes.written(user_id, provider).await;
                } else {
                    // A new connection replaced the record meanwhile; it wins, these tokens still work.
                    tracing::warn!(
                        provider,
                        "credential replaced during refresh; refreshed tokens not stored"
                    );
                }
                metrics::counter!("mcpauth_vault_refresh_total", "outcome" => "refreshed")
                    .increment(1);
                self.changes
                .audit(
                    AuditEvent::new(caller, "refresh", user_id, provider)
                        .detail(serde_json::json!({"version": version, "attempts": attempt + 1, "stored": stored})),
                )
                .await;
                Ok(merged)
            }
            Err(UpstreamError::InvalidGrant) => {
                self.mark_reauthorization_required(caller, &row, "invalid_grant")
                    .await?;
                Err(reauthorization_required())
            }
            Err(e) => {
                metrics::counter!("mcpauth_vault_refresh_total", "outcome" => "failed")
                    .increment(1);
                self.changes
                .audit(
                    AuditEvent::new(caller, "refresh", user_id, provider)
                        .outcome("upstream_failed")
                        .detail(
                            serde_json::json!({"attempts": attempt + 1, "error": e.to_string()}),
                        ),
                )
                .await;
                if !tokens.expired(self.clock.now_secs()) {
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
        &self,
        caller: &str,
        row: &CredentialRow,
        reason: &'static str,
    ) -> Result<(), VaultServiceError> {
        let marked = self
            .store
            .mark_reauthorization_required(&row.user_id, &row.provider, row.version)
            .await?;
        metrics::counter!("mcpauth_vault_refresh_total", "outcome" => "reauthorization_required")
            .increment(1);
        if marked {
            self.changes.written(&row.user_id, &row.provider).await;
            self.changes
                .connection(
                    &row.user_id,
                    &row.provider,
                    ConnectionEvent::ReauthorizationRequired,
                )
                .await;
        }
        self.changes
            .audit(
                AuditEvent::new(caller, "refresh", &row.user_id, &row.provider)
                    .outcome("reauthorization_required")
                    .detail(serde_json::json!({"reason": reason})),
            )
            .await;
        Ok(())
    }
}
