//! A bounded, time-limited cache of verified tokens, keyed by the token's SHA-256 (the token
//! itself is never kept), with eviction by token id, grant or client when a revocation arrives.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::auth::{Principal, VerifyError};

#[derive(Clone)]
struct Entry {
    result: Result<Principal, VerifyError>,
    until: Instant,
}

/// Verified (and briefly, refused) tokens.
#[derive(Clone)]
pub struct IntrospectionCache {
    entries: Arc<RwLock<HashMap<[u8; 32], Entry>>>,
    ttl: Duration,
    negative_ttl: Duration,
    max: usize,
}

/// How long a refused token is remembered (bounds the cost of garbage tokens on the issuer).
const NEGATIVE_TTL: Duration = Duration::from_secs(5);

pub fn token_key(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    k
}

impl IntrospectionCache {
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            entries: Arc::default(),
            ttl,
            negative_ttl: NEGATIVE_TTL.min(ttl),
            max: max.max(1),
        }
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Result<Principal, VerifyError>> {
        let map = self.entries.read().expect("cache lock");
        let e = map.get(key)?;
        if e.until <= Instant::now() {
            return None;
        }
        if let Ok(p) = &e.result
            && p.expires_at <= now_secs()
        {
            return Some(Err(VerifyError::Expired));
        }
        Some(e.result.clone())
    }

    pub fn put(&self, key: [u8; 32], result: Result<Principal, VerifyError>) {
        if self.ttl.is_zero() || matches!(result, Err(VerifyError::Unavailable(_))) {
            return;
        }
        let ttl = if result.is_ok() {
            self.ttl
        } else {
            self.negative_ttl
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

    /// Evicts every cached token that a revocation of `kind`/`id` covers.
    pub fn evict(&self, kind: &str, id: &str) {
        let mut map = self.entries.write().expect("cache lock");
        map.retain(|_, e| match &e.result {
            Ok(p) => !match kind {
                "token" => p.token_id.as_deref() == Some(id),
                "grant" => p.grant_id.as_deref() == Some(id),
                "client" => p.client_id == id,
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

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(jti: &str, grant: &str) -> Principal {
        Principal {
            subject: "u".into(),
            client_id: "c".into(),
            scopes: Default::default(),
            expires_at: now_secs() + 60,
            token_id: Some(jti.into()),
            grant_id: Some(grant.into()),
            access_token: None,
        }
    }

    #[test]
    fn evicts_by_token_grant_and_client() {
        let c = IntrospectionCache::new(Duration::from_secs(60), 10);
        c.put(token_key("a"), Ok(principal("j1", "g1")));
        c.put(token_key("b"), Ok(principal("j2", "g2")));
        c.evict("token", "j1");
        assert!(c.get(&token_key("a")).is_none());
        assert!(c.get(&token_key("b")).is_some());
        c.evict("grant", "g2");
        assert!(c.get(&token_key("b")).is_none());
        c.put(token_key("c"), Ok(principal("j3", "g3")));
        c.evict("client", "c");
        assert!(c.is_empty());
    }

    #[test]
    fn expired_tokens_are_not_served_from_cache() {
        let c = IntrospectionCache::new(Duration::from_secs(60), 10);
        let mut p = principal("j", "g");
        p.expires_at = now_secs() - 1;
        c.put(token_key("a"), Ok(p));
        assert_eq!(c.get(&token_key("a")), Some(Err(VerifyError::Expired)));
    }

    #[test]
    fn bounded_in_size_and_unavailable_never_cached() {
        let c = IntrospectionCache::new(Duration::from_secs(60), 5);
        for i in 0..50 {
            c.put(
                token_key(&i.to_string()),
                Ok(principal(&i.to_string(), "g")),
            );
        }
        assert!(c.len() <= 5);
        c.put(token_key("x"), Err(VerifyError::Unavailable("down".into())));
        assert!(c.get(&token_key("x")).is_none());
    }
}
