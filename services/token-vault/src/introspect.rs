//! Who the user is: the vault introspects the user's own MCP access token at auth-service
//! (gRPC `TokenIntrospection`), so a caller cannot name another user. Results are cached in a
//! bounded, time-limited map keyed by the token's SHA-256 (never the token), never past the
//! token's expiry, and evicted when auth-service publishes a revocation (see `revocations`).
//! Mirrors mcp-service's `verify::{grpc, cache}`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use mcpauth_proto::v1::IntrospectRequest;
use mcpauth_proto::v1::token_introspection_client::TokenIntrospectionClient;
use mcpauth_runtime::telemetry::{TracedChannel, traced};
use tonic::metadata::{Ascii, MetadataValue};

use crate::config::IntrospectionConfig;
use crate::crypto::sha256;

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

#[derive(Clone)]
struct Entry {
    result: Result<User, IntrospectError>,
    until: Instant,
}

/// Introspected tokens (and, briefly, refused ones).
#[derive(Clone)]
pub struct IntrospectionCache {
    entries: Arc<RwLock<HashMap<[u8; 32], Entry>>>,
    ttl: Duration,
    negative_ttl: Duration,
    max: usize,
}

/// How long a refused token is remembered (bounds the cost of garbage tokens on auth-service).
const NEGATIVE_TTL: Duration = Duration::from_secs(5);

impl IntrospectionCache {
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            entries: Arc::default(),
            ttl,
            negative_ttl: NEGATIVE_TTL.min(ttl),
            max: max.max(1),
        }
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Result<User, IntrospectError>> {
        let map = self.entries.read().expect("cache lock");
        let e = map.get(key)?;
        if e.until <= Instant::now() {
            return None;
        }
        if let Ok(u) = &e.result
            && u.expires_at <= now_secs()
        {
            return Some(Err(IntrospectError::Inactive));
        }
        Some(e.result.clone())
    }

    pub fn put(&self, key: [u8; 32], result: Result<User, IntrospectError>) {
        if self.ttl.is_zero() || matches!(result, Err(IntrospectError::Unavailable(_))) {
            return;
        }
        let ttl = match &result {
            // Never beyond the token's own expiry.
            Ok(u) => self.ttl.min(Duration::from_secs(
                u.expires_at.saturating_sub(now_secs()).max(0) as u64,
            )),
            Err(_) => self.negative_ttl,
        };
        let mut map = self.entries.write().expect("cache lock");
        if map.len() >= self.max {
            let now = Instant::now();
            map.retain(|_, e| e.until > now);
            if map.len() >= self.max {
                // Still full of live entries: drop an arbitrary tenth rather than grow.
                let drop: Vec<[u8; 32]> = map.keys().take(self.max / 10 + 1).copied().collect();
                for k in drop {
                    map.remove(&k);
                }
            }
        }
        map.insert(
            key,
            Entry {
                result,
                until: Instant::now() + ttl,
            },
        );
    }

    /// Evicts every cached token that a revocation of `kind` (`token`, `grant`, `client`) and
    /// `id` covers.
    pub fn evict(&self, kind: &str, id: &str) {
        let mut map = self.entries.write().expect("cache lock");
        map.retain(|_, e| match &e.result {
            Ok(u) => !match kind {
                "token" => u.token_id.as_deref() == Some(id),
                "grant" => u.grant_id.as_deref() == Some(id),
                "client" => u.client_id == id,
                _ => false,
            },
            Err(_) => true,
        });
    }

    /// Forgets everything (after a gap in the revocation feed).
    pub fn clear(&self) {
        self.entries.write().expect("cache lock").clear();
    }

    pub fn len(&self) -> usize {
        self.entries.read().expect("cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        let key = sha256(token);
        if let Some(hit) = self.cache.get(&key) {
            metrics::counter!("mcpauth_vault_introspection_cache_total", "result" => "hit")
                .increment(1);
            return hit;
        }
        metrics::counter!("mcpauth_vault_introspection_cache_total", "result" => "miss")
            .increment(1);
        let result = self.introspect(token).await;
        self.cache.put(key, result.clone());
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

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(jti: &str, grant: &str, expires_in: i64) -> User {
        User {
            subject: "u".into(),
            client_id: "c".into(),
            expires_at: now_secs() + expires_in,
            token_id: Some(jti.into()),
            grant_id: Some(grant.into()),
        }
    }

    #[test]
    fn evicts_by_token_grant_and_client() {
        let c = IntrospectionCache::new(Duration::from_secs(60), 10);
        c.put(sha256("a"), Ok(user("j1", "g1", 60)));
        c.put(sha256("b"), Ok(user("j2", "g2", 60)));
        c.evict("token", "j1");
        assert!(c.get(&sha256("a")).is_none());
        assert!(c.get(&sha256("b")).is_some());
        c.evict("grant", "g2");
        assert!(c.get(&sha256("b")).is_none());
        c.put(sha256("c"), Ok(user("j3", "g3", 60)));
        c.evict("client", "c");
        assert!(c.is_empty());
    }

    #[test]
    fn never_served_past_the_token_expiry() {
        let c = IntrospectionCache::new(Duration::from_secs(60), 10);
        c.put(sha256("a"), Ok(user("j", "g", -1)));
        assert!(!matches!(c.get(&sha256("a")), Some(Ok(_))));
        c.put(sha256("b"), Ok(user("j", "g", 1)));
        std::thread::sleep(Duration::from_millis(1100));
        assert!(!matches!(c.get(&sha256("b")), Some(Ok(_))));
    }

    #[test]
    fn bounded_in_size_and_unavailable_never_cached() {
        let c = IntrospectionCache::new(Duration::from_secs(60), 5);
        for i in 0..50 {
            c.put(sha256(&i.to_string()), Ok(user(&i.to_string(), "g", 60)));
        }
        assert!(c.len() <= 5);
        c.put(
            sha256("x"),
            Err(IntrospectError::Unavailable("down".into())),
        );
        assert!(c.get(&sha256("x")).is_none());
    }
}
