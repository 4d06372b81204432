//! The vault's operations, independent of transport: store, read (refreshing first when due),
//! delete (revoking upstream) and list credentials. Who the user is has already been settled
//! by the caller of these functions (`grpc`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::audit::AuditEvent;
use crate::cache::CredentialCache;
use crate::changes::Changes;
use crate::config::{ProviderConfig, RefreshConfig};
use crate::credential::ProviderTokens;
use crate::crypto::KeyRing;
use crate::error::VaultServiceError;
use crate::events::ConnectionEvent;
use crate::refresh::{Refresher, SystemClock};
use crate::store::credentials::CredentialStore;
use crate::store::locks::RefreshLocks;
use crate::store::{ConnectionStatus, CredentialRow, CredentialWrite};
use crate::upstream::UpstreamClient;

/// Everything the operations need. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn CredentialStore>,
    keys: Arc<KeyRing>,
    /// For upstream revocation on delete.
    upstream: UpstreamClient,
    providers: BTreeMap<String, ProviderConfig>,
    refresh: RefreshConfig,
    /// Cache, invalidations, trail and connection events.
    changes: Changes,
    refresher: Refresher,
}

/// How many optimistic write attempts a `put` makes before giving up.
const PUT_ATTEMPTS: usize = 5;

impl Vault {
    pub fn new(
        store: Arc<dyn CredentialStore>,
        locks: Arc<dyn RefreshLocks>,
        keys: KeyRing,
        upstream: UpstreamClient,
        changes: Changes,
        providers: BTreeMap<String, ProviderConfig>,
        refresh: RefreshConfig,
    ) -> Self {
        let keys = Arc::new(keys);
        let refresher = Refresher {
            store: store.clone(),
            locks,
            upstream: Arc::new(upstream.clone()),
            clock: Arc::new(SystemClock),
            keys: keys.clone(),
            settings: refresh.clone(),
            changes: changes.clone(),
        };
        Self {
            inner: Arc::new(Inner {
                store,
                keys,
                upstream,
                providers,
                refresh,
                changes,
                refresher,
            }),
        }
    }

    /// This replica's cache of stored rows.
    pub fn cache(&self) -> &CredentialCache {
        &self.inner.changes.cache
    }

    /// After a write of `(user_id, provider)`: evicts it here and on every other replica.
    async fn changed(&self, user_id: &str, provider: &str) {
        self.inner.changes.written(user_id, provider).await;
    }

    /// The stored row, from the cache or Postgres (then cached).
    async fn row(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<Option<Arc<CredentialRow>>, VaultServiceError> {
        let cache = &self.inner.changes.cache;
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

    pub fn store(&self) -> &dyn CredentialStore {
        &*self.inner.store
    }

    /// The configured provider `name`.
    pub fn provider(&self, name: &str) -> Result<&ProviderConfig, VaultServiceError> {
        self.inner
            .providers
            .get(name)
            .ok_or_else(|| VaultServiceError::InvalidArgument(format!("unknown provider {name:?}")))
    }

    fn open(&self, row: &CredentialRow) -> Result<ProviderTokens, VaultServiceError> {
        crate::refresh::open(&self.inner.keys, row)
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
        let store = &*self.inner.store;
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
                    .changes
                    .audit(
                        AuditEvent::new(caller, "put", user_id, provider)
                            .detail(serde_json::json!({"version": version})),
                    )
                    .await;
                self.inner
                    .changes
                    .connection(user_id, provider, ConnectionEvent::Connected)
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
        let cfg = self.provider(provider)?;
        let result = self
            .access_token_inner(caller, cfg, user_id, provider)
            .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(VaultServiceError::NotFound) => "not_found",
            Err(VaultServiceError::ReauthorizationRequired(_)) => "reauthorization_required",
            Err(VaultServiceError::Crypto(_)) => "decrypt_failed",
            Err(_) => "error",
        };
        self.inner
            .changes
            .audit(AuditEvent::new(caller, "get", user_id, provider).outcome(outcome))
            .await;
        result
    }

    async fn access_token_inner(
        &self,
        caller: &str,
        cfg: &ProviderConfig,
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
        let result = self
            .inner
            .refresher
            .refresh(caller, cfg, (*row).clone(), tokens)
            .await;
        self.inner
            .changes
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
            .changes
            .connection(user_id, provider, ConnectionEvent::Disconnected)
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
            .changes
            .audit(
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
            .changes
            .audit(AuditEvent::new(caller, "list", user_id, ""))
            .await;
        Ok(rows)
    }
}
