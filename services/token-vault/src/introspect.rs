//! Who the user is: the vault introspects the user's own MCP access token at auth-service
//! (gRPC `TokenIntrospection`), so a caller cannot name another user. Results are cached in a
//! bounded, time-limited cache keyed by the token's SHA-256 (never the token), never past the
//! token's expiry, and evicted when auth-service publishes a revocation (see `revocations`);
//! the cache is mcpauth-runtime's, shared with mcp-service.

use std::sync::Arc;
use std::time::Duration;

use mcpauth_proto::v1::IntrospectRequest;
use mcpauth_proto::v1::token_introspection_client::TokenIntrospectionClient;
pub use mcpauth_runtime::revocation::now_secs;
use mcpauth_runtime::revocation::{
    Lookup, Refusal, Revocable, RevocationIds, VerificationCache, token_key,
};
use mcpauth_runtime::telemetry::{TracedChannel, traced};
use tonic::metadata::{Ascii, MetadataValue};

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

/// The introspection client with its cache.
#[derive(Clone)]
pub struct Introspector {
    client: TokenIntrospectionClient<TracedChannel>,
    credential: MetadataValue<Ascii>,
    accepted: Arc<Vec<String>>,
    cache: IntrospectionCache,
}

impl Introspector {
    pub fn new(cfg: &IntrospectionConfig) -> anyhow::Result<Self> {
        let channel = mcpauth_runtime::grpc_channel(
            "introspection",
            &cfg.addr,
            cfg.tls.as_ref(),
            Duration::from_secs(3),
            Duration::from_secs(5),
        )?;
        let mut credential: MetadataValue<Ascii> = format!("Bearer {}", cfg.credential.expose())
            .parse()
            .map_err(|_| anyhow::anyhow!("introspection.credential: not a valid header value"))?;
        credential.set_sensitive(true);
        Ok(Self {
            client: TokenIntrospectionClient::new(traced(channel)),
            credential,
            accepted: Arc::new(cfg.accepted_resources.clone()),
            cache: IntrospectionCache::new(
                Duration::from_millis(cfg.cache_ttl_ms),
                cfg.cache_max_entries,
            ),
        })
    }

    pub fn cache(&self) -> &IntrospectionCache {
        &self.cache
    }

    /// The user `token` speaks for, from the cache or auth-service.
    pub async fn user(&self, token: &str) -> Result<User, IntrospectError> {
        let fill = match self.cache.lookup(&token_key(token)) {
            Lookup::Hit(hit) => {
                metrics::counter!("mcpauth_vault_introspection_cache_total", "result" => "hit")
                    .increment(1);
                return hit;
            }
            Lookup::Miss(fill) => fill,
        };
        metrics::counter!("mcpauth_vault_introspection_cache_total", "result" => "miss")
            .increment(1);
        let result = self.introspect(token).await;
        // Not cached if a revocation covering it arrived while it was in flight.
        fill.store(&result);
        result
    }

    async fn introspect(&self, token: &str) -> Result<User, IntrospectError> {
        let mut req = tonic::Request::new(IntrospectRequest {
            token: token.to_owned(),
            // With one accepted resource auth-service checks the audience too; we always do.
            expected_resource: match self.accepted.as_slice() {
                [only] => only.clone(),
                _ => String::new(),
            },
        });
        req.metadata_mut()
            .insert("authorization", self.credential.clone());
        let resp = self
            .client
            .clone()
            .introspect(req)
            .await
            .map_err(|s| IntrospectError::Unavailable(format!("{:?}", s.code())))?
            .into_inner();
        if !resp.active
            || resp.expires_at <= now_secs()
            || resp.token_kind != mcpauth_proto::v1::TokenKind::Access as i32
            || resp.subject.is_empty()
        {
            return Err(IntrospectError::Inactive);
        }
        if !resp.audience.iter().any(|a| self.accepted.contains(a)) {
            return Err(IntrospectError::WrongAudience);
        }
        Ok(User {
            subject: resp.subject,
            client_id: resp.client_id,
            expires_at: resp.expires_at,
            token_id: (!resp.token_id.is_empty()).then_some(resp.token_id),
            grant_id: (!resp.grant_id.is_empty()).then_some(resp.grant_id),
        })
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
    }
}
