//! The upstream's signing keys (JWKS), cached by `kid` and refetched when an ID token names an
//! unknown one, at most once per `jwks_min_refetch_secs`, so forged `kid`s cannot make us hammer
//! the provider.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

#[derive(Clone)]
pub struct Key {
    pub key: DecodingKey,
    /// The JWK's `alg`, when it names one: then only that algorithm may use the key.
    pub alg: Option<Algorithm>,
}

#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Key>,
    anonymous: Vec<Key>,
}

impl KeySet {
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Key> {
        let usable = |k: &Key| k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => self.by_kid.get(kid).filter(|k| usable(k)).cloned(),
            None => self.anonymous.iter().find(|k| usable(k)).cloned(),
        }
    }
}

/// Parses a JWKS document, keeping the signature keys that can be used (no symmetric keys).
pub fn parse(body: &[u8]) -> Result<KeySet, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| "jwks is not json".to_owned())?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("jwks has no keys array")?;
    let mut set = KeySet::default();
    for raw in keys {
        if raw
            .get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
            || raw.get("kty").and_then(Value::as_str) == Some("oct")
        {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let alg = match raw.get("alg").and_then(Value::as_str) {
            Some(a) => match Algorithm::from_str(a) {
                Ok(alg) => Some(alg),
                Err(_) => continue,
            },
            None => None,
        };
        let key = Key { key, alg };
        match raw.get("kid").and_then(Value::as_str) {
            Some(kid) => {
                set.by_kid.insert(kid.to_owned(), key);
            }
            None => set.anonymous.push(key),
        }
    }
    Ok(set)
}

/// The cache of one provider's keys.
pub struct JwksCache {
    keys: RwLock<Arc<KeySet>>,
    /// When the JWKS was last fetched (successfully or not); serialises fetches.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_refetch: Duration,
}

impl JwksCache {
    pub fn new(min_refetch: Duration) -> Self {
        Self {
            keys: RwLock::default(),
            last_fetch: tokio::sync::Mutex::new(None),
            min_refetch,
        }
    }

    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Key> {
        self.keys.read().expect("jwks lock").find(kid, alg)
    }

    /// The key for (`kid`, `alg`), fetching the JWKS with `fetch` when it is unknown and the
    /// floor allows it.
    pub async fn key<F, Fut>(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        fetch: F,
    ) -> Result<Key, String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<KeySet, String>>,
    {
        if let Some(k) = self.find(kid, alg) {
            return Ok(k);
        }
        let mut last = self.last_fetch.lock().await;
        if let Some(k) = self.find(kid, alg) {
            return Ok(k);
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            return Err("id token signed with an unknown key".into());
        }
        *last = Some(Instant::now());
        let set = fetch().await?;
        *self.keys.write().expect("jwks lock") = Arc::new(set);
        drop(last);
        self.find(kid, alg)
            .ok_or_else(|| "id token signed with an unknown key".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_kids_refetch_once_per_floor() {
        let doc = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#;
        let cache = JwksCache::new(Duration::from_secs(30));
        let fetches = std::sync::atomic::AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            parse(doc)
        };
        assert!(cache.key(Some("k1"), Algorithm::ES256, fetch).await.is_ok());
        for i in 0..20 {
            let kid = format!("nope-{i}");
            assert!(
                cache
                    .key(Some(&kid), Algorithm::ES256, fetch)
                    .await
                    .is_err()
            );
        }
        // A key may only be used with its own algorithm; the HMAC key was never loaded.
        assert!(
            cache
                .key(Some("k1"), Algorithm::RS256, fetch)
                .await
                .is_err()
        );
        assert!(cache.key(Some("h"), Algorithm::HS256, fetch).await.is_err());
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
