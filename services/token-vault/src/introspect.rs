//! Who the user is: the vault introspects the user's own MCP access token at auth-service
//! (gRPC `TokenIntrospection`), so a caller cannot name another user. Results are cached in a
//! bounded, time-limited cache keyed by the token's SHA-256 (never the token), never past the
//! token's expiry, and evicted when auth-service publishes a revocation (see `revocations`);
//! the client and its cache are mcpauth-runtime's, shared with mcp-service.

use std::time::Duration;

use mcpauth_runtime::introspection::{
    Introspected, IntrospectionClient, IntrospectionRefusal, IntrospectionSettings,
};
pub use mcpauth_runtime::revocation::now_secs;
use mcpauth_runtime::revocation::{Refusal, Revocable, RevocationIds, VerificationCache};

use crate::config::IntrospectionConfig;

/// The user an MCP access token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub subject: String,
    pub client_id: String,
    pub expires_at: i64,
    pub token_id: Option<String>,
    pub grant_id: Option<String>,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntrospectError {
    #[error("the access token is not active")]
    Inactive,
    #[error("the access token was issued for another resource")]
    WrongAudience,
    #[error("introspection unavailable: {0}")]
    Unavailable(String),
}

/// Introspected tokens (and, briefly, refused ones): mcpauth-runtime's revocation-aware
/// [`VerificationCache`], never served past the token's expiry.
pub type IntrospectionCache = VerificationCache<User, IntrospectError>;

impl Revocable for User {
    fn revocation_ids(&self) -> RevocationIds<'_> {
        RevocationIds {
            token_id: self.token_id.as_deref(),
            grant_id: self.grant_id.as_deref(),
            client_id: &self.client_id,
            subject: &self.subject,
        }
    }
    fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

impl Refusal for IntrospectError {
    fn expired() -> Self {
        IntrospectError::Inactive
    }
    fn is_transient(&self) -> bool {
        matches!(self, IntrospectError::Unavailable(_))
    }
}

impl From<Introspected> for User {
    fn from(t: Introspected) -> Self {
        User {
            subject: t.subject,
            client_id: t.client_id,
            expires_at: t.expires_at,
            token_id: t.token_id,
            grant_id: t.grant_id,
        }
    }
}

impl From<IntrospectionRefusal> for IntrospectError {
    fn from(r: IntrospectionRefusal) -> Self {
        match r {
            // Expired by our clock is not active, as far as callers of the vault can tell.
            IntrospectionRefusal::Inactive | IntrospectionRefusal::Expired => {
                IntrospectError::Inactive
            }
            IntrospectionRefusal::WrongAudience => IntrospectError::WrongAudience,
            IntrospectionRefusal::Unavailable(code) => {
                IntrospectError::Unavailable(format!("{code:?}"))
            }
        }
    }
}

/// The introspection client with its cache: mcpauth-runtime's [`IntrospectionClient`] over one
/// shared channel (the vault serves on one multi-threaded runtime).
#[derive(Clone)]
pub struct Introspector {
    client: IntrospectionClient<User, IntrospectError>,
}

impl Introspector {
    pub fn new(cfg: &IntrospectionConfig) -> anyhow::Result<Self> {
        Ok(Self {
            client: IntrospectionClient::new(IntrospectionSettings {
                section: "introspection",
                addr: &cfg.addr,
                tls: cfg.tls.as_ref(),
                credential: &cfg.credential,
                accepted_resources: cfg.accepted_resources.clone(),
                cache_ttl: Duration::from_millis(cfg.cache_ttl_ms),
                cache_max_entries: cfg.cache_max_entries,
                per_thread: false,
                cache_metric: "mcpauth_vault_introspection_cache_total",
            })?,
        })
    }

    pub fn cache(&self) -> &IntrospectionCache {
        self.client.cache()
    }

    /// The user `token` speaks for, from the cache or auth-service.
    pub async fn user(&self, token: &str) -> Result<User, IntrospectError> {
        self.client.verify(token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_onto_the_shared_cache() {
        assert_eq!(IntrospectError::expired(), IntrospectError::Inactive);
        assert!(IntrospectError::Unavailable("down".into()).is_transient());
        assert!(!IntrospectError::WrongAudience.is_transient());
        // Expired by our clock is inactive to the vault's callers; the gRPC code is kept.
        assert_eq!(
            IntrospectError::from(IntrospectionRefusal::Expired),
            IntrospectError::Inactive
        );
        assert_eq!(
            IntrospectError::from(IntrospectionRefusal::Unavailable(tonic::Code::Unavailable)),
            IntrospectError::Unavailable("Unavailable".into())
        );
    }
}
