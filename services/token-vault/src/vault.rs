//! The vault's operations, independent of transport: store, read (refreshing first when due),
//! delete (revoking upstream) and list credentials. Who the user is has already been settled
//! by the caller of these functions (`grpc`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::audit::{AuditEvent, AuditLog};
use crate::cache::{CredentialCache, Invalidations};
use crate::config::{ProviderConfig, RefreshConfig};
use crate::credential::ProviderTokens;
use crate::crypto::{CryptoError, KeyRing};
use crate::error::VaultServiceError;
use crate::events::{ConnectionEvent, ConnectionEvents};
use crate::lock::RefreshLocks;
use crate::store::{ConnectionStatus, CredentialRow, CredentialStore, CredentialWrite};
use crate::upstream::UpstreamClient;

/// Everything the operations need. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub store: CredentialStore,
    pub keys: KeyRing,
    pub upstream: UpstreamClient,
    pub locks: RefreshLocks,
    pub events: ConnectionEvents,
    pub audit: AuditLog,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub refresh: RefreshConfig,
    /// Stored rows (ciphertext) by `(user, provider)`; see `cache`.
    pub cache: CredentialCache,
    pub invalidations: Invalidations,
}

/// How many optimistic write attempts a `put` makes before giving up.
const PUT_ATTEMPTS: usize = 5;

impl Vault {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: CredentialStore,
        keys: KeyRing,
        upstream: UpstreamClient,
        locks: RefreshLocks,
        events: ConnectionEvents,
        audit: AuditLog,
        providers: BTreeMap<String, ProviderConfig>,
        refresh: RefreshConfig,
        cache: CredentialCache,
        invalidations: Invalidations,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                keys,
                upstream,
                locks,
                events,
                audit,
                providers,
                refresh,
                cache,
                invalidations,
            }),
        }
    }

    /// This replica's cache of stored rows.
    pub fn cache(&self) -> &CredentialCache {
        &self.inner.cache
    }

    /// After a write of `(user_id, provider)`: evicts it here and on every other replica.
    pub(crate) async fn changed(&self, user_id: &str, provider: &str) {
        let key = crate::cache::key(user_id, provider);
        self.inner.cache.evict(&key);
        self.inner.invalidations.publish(&key).await;
    }

    /// The stored row, from the cache or Postgres (then cached).
    async fn row(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<Option<Arc<CredentialRow>>, VaultServiceError> {
        let cache = &self.inner.cache;
        let key = crate::cache::key(user_id, provider);
        if let Some(row) = cache.get(&key) {
            return Ok(Some(row));
        }
        let epoch = cache.epoch();
        let Some(row) = self.inner.store.get(user_id, provider).await? else {
            return Ok(None);
        };
        let row = Arc::new(row);
        cache.put(key, row.clone(), epoch);
        Ok(Some(row))
    }

    pub fn store(&self) -> &CredentialStore {
        &self.inner.store
    }

    /// The configured provider `name`.
    pub fn provider(&self, name: &str) -> Result<&ProviderConfig, VaultServiceError> {
        self.inner
            .providers
            .get(name)
            .ok_or_else(|| VaultServiceError::InvalidArgument(format!("unknown provider {name:?}")))
    }

    pub(crate) fn open(&self, row: &CredentialRow) -> Result<ProviderTokens, VaultServiceError> {
        if row.is_stale() {
            // Written before the record was last deleted: a restored copy, not the user's
            // current connection.
            tracing::warn!(
                provider = %row.provider,
                version = row.version,
                deleted_through = row.deleted_through,
                "refusing a credential row older than its record's last delete"
            );
            return Err(CryptoError::Stale.into());
        }
        Ok(ProviderTokens::open(
            &self.inner.keys,
            &row.user_id,
            &row.provider,
            row.version,
            &row.sealed,
        )?)
    }

    /// Stores (or replaces) a user's credential; returns the record's new version.
    pub async fn put(
        &self,
        caller: &str,
        user_id: &str,
        provider: &str,
        tokens: &ProviderTokens,
        upstream_issuer: &str,
        upstream_subject: &str,
    ) -> Result<i64, VaultServiceError> {
        self.provider(provider)?;
        let store = &self.inner.store;
        for _ in 0..PUT_ATTEMPTS {
            // Above the current version and every deleted one: versions never repeat, so a
            // ciphertext of an earlier record never authenticates under this one.
            let (current, deleted_through) = store.version_and_floor(user_id, provider).await?;
            let version = current.map_or(0, |(v, _)| v).max(deleted_through) + 1;
            let sealed = tokens.seal(&self.inner.keys, user_id, provider, version)?;
            let write = CredentialWrite {
                sealed: &sealed,
                version,
                scopes: &tokens.scopes,
                expires_at: tokens.expires_at,
            };
            let done = match current {
                None => {
                    store
                        .insert(user_id, provider, &write, upstream_issuer, upstream_subject)
                        .await?
                }
                Some((v, _)) => {
                    store
                        .replace(
                            user_id,
                            provider,
                            v,
                            &write,
                            upstream_issuer,
                            upstream_subject,
                        )
                        .await?
                }
            };
            if done {
                self.changed(user_id, provider).await;
                self.inner
                    .audit
                    .record(
                        AuditEvent::new(caller, "put", user_id, provider)
                            .detail(serde_json::json!({"version": version})),
                    )
                    .await;
                self.inner
                    .events
                    .publish(user_id, provider, ConnectionEvent::Connected)
                    .await;
                return Ok(version);
            }
        }
        Err(VaultServiceError::Unavailable(
            "the credential is being written concurrently, retry".into(),
        ))
    }

    /// A valid upstream access token of `user_id` at `provider`, refreshed first when due.
    pub async fn access_token(
        &self,
        caller: &str,
        user_id: &str,
        provider: &str,
    ) -> Result<ProviderTokens, VaultServiceError> {
        self.provider(provider)?;
        let result = self.access_token_inner(caller, user_id, provider).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(VaultServiceError::NotFound) => "not_found",
            Err(VaultServiceError::ReauthorizationRequired(_)) => "reauthorization_required",
            Err(VaultServiceError::Crypto(_)) => "decrypt_failed",
            Err(_) => "error",
        };
        self.inner
            .audit
            .record(AuditEvent::new(caller, "get", user_id, provider).outcome(outcome))
            .await;
        result
    }

    async fn access_token_inner(
        &self,
        caller: &str,
        user_id: &str,
        provider: &str,
    ) -> Result<ProviderTokens, VaultServiceError> {
        let row = self
            .row(user_id, provider)
            .await?
            .ok_or(VaultServiceError::NotFound)?;
        if row.status == ConnectionStatus::ReauthorizationRequired {
            return Err(crate::refresh::reauthorization_required());
        }
        let tokens = self.open(&row)?;
        if !tokens.needs_refresh(
            crate::introspect::now_secs(),
            self.inner.refresh.buffer_secs,
        ) {
            return Ok(tokens);
        }
        // Due for a refresh: the refresh path reads Postgres itself. Whatever it finds, this
        // cached row is no longer the one to serve.
        let result = crate::refresh::refresh(self, caller, (*row).clone(), tokens).await;
        self.inner
            .cache
            .evict(&crate::cache::key(user_id, provider));
        result
    }

    /// Deletes a credential and revokes it upstream where the provider supports RFC 7009.
    /// Returns (deleted, revoked upstream).
    pub async fn delete(
        &self,
        caller: &str,
        user_id: &str,
        provider: &str,
    ) -> Result<(bool, bool), VaultServiceError> {
        let Some(row) = self.inner.store.delete(user_id, provider).await? else {
            return Ok((false, false));
        };
        self.changed(user_id, provider).await;
        self.inner
            .events
            .publish(user_id, provider, ConnectionEvent::Disconnected)
            .await;
        let mut revoked = false;
        if let Some(cfg) = self.inner.providers.get(provider)
            && let Some(endpoint) = &cfg.revocation_endpoint
        {
            match self.open(&row) {
                Ok(tokens) => {
                    // Revoking the refresh token ends the whole upstream grant (RFC 7009 §2.1).
                    let (token, hint) = if tokens.refresh_token.is_empty() {
                        (tokens.access_token.as_str(), "access_token")
                    } else {
                        (tokens.refresh_token.as_str(), "refresh_token")
                    };
                    match self.inner.upstream.revoke(cfg, endpoint, token, hint).await {
                        Ok(ok) => revoked = ok,
                        Err(e) => {
                            tracing::warn!(error = %e, provider, "upstream revocation failed")
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, provider, "deleted credential could not be opened for revocation")
                }
            }
        }
        self.inner
            .audit
            .record(
                AuditEvent::new(caller, "delete", user_id, provider)
                    .detail(serde_json::json!({"revoked_upstream": revoked})),
            )
            .await;
        Ok((true, revoked))
    }

    /// The user's connections (metadata only).
    pub async fn list(
        &self,
        caller: &str,
        user_id: &str,
    ) -> Result<Vec<CredentialRow>, VaultServiceError> {
        let rows = self.inner.store.list(user_id).await?;
        self.inner
            .audit
            .record(AuditEvent::new(caller, "list", user_id, ""))
            .await;
        Ok(rows)
    }
}
