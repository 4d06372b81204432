//! A signer's public keys (JWKS), cached by `kid` and refetched when a token names an unknown
//! one, at most once per `min_refetch`, so a flood of made-up `kid`s cannot make us hammer the
//! signer. One implementation for both of its users: auth-service verifying an upstream's ID
//! tokens, mcp-service verifying RFC 9068 access tokens (`verifier.mode = "jwt"`).
//!
//! Only signature keys are kept: no encryption keys (`use` other than `sig`), no symmetric keys
//! (a public key must never be usable as an HMAC secret), and a key whose JWK names an `alg` is
//! only ever used with that algorithm.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// One usable key of the set.
#[derive(Clone)]
pub struct Key {
    pub key: DecodingKey,
    /// The JWK's `alg`, when it names one: then only that algorithm may use the key.
    pub alg: Option<Algorithm>,
}

/// The usable keys of one JWKS document.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Key>,
    /// Keys published without a `kid` (tried for tokens without one).
    anonymous: Vec<Key>,
}

impl KeySet {
    /// The key for (`kid`, `alg`): by `kid` when the token names one, else the first key
    /// without a `kid` that `alg` may use.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Key> {
        let usable = |k: &Key| k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => self.by_kid.get(kid).filter(|k| usable(k)).cloned(),
            None => self.anonymous.iter().find(|k| usable(k)).cloned(),
        }
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.by_kid.len() + self.anonymous.len()
    }

    /// Whether the set holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `alg` of the key named `kid`, if any (tests and diagnostics).
    pub fn alg_of(&self, kid: &str) -> Option<Option<Algorithm>> {
        self.by_kid.get(kid).map(|k| k.alg)
    }
}

/// Parses a JWKS document, keeping the signature keys that can be used and skipping the rest
/// (encryption keys, symmetric keys, unknown key types or algorithms).
pub fn parse(body: &[u8]) -> Result<KeySet, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("JWKS has no keys array")?;
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

/// Largest JWKS document [`fetch`] accepts.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// GETs the JWKS at `uri` with `http` (whose redirect policy and timeouts are the caller's),
/// reading at most [`MAX_JWKS_BYTES`] of the body.
pub async fn fetch(http: &reqwest::Client, uri: &str) -> Result<KeySet, String> {
    let resp = http
        .get(uri)
        .header("accept", "application/json, application/jwk-set+json")
        .send()
        .await
        .map_err(|e| format!("JWKS fetch failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("JWKS fetch answered {}", resp.status()));
    }
    let body = crate::http_body::read_limited(resp, MAX_JWKS_BYTES)
        .await
        .map_err(|e| match e {
            crate::http_body::BodyError::TooLarge => "JWKS too large".to_owned(),
            e => format!("JWKS fetch failed: {e}"),
        })?;
    parse(&body)
}

/// Why no key was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The signer publishes no such key (after a refetch, or while refetching waits for the
    /// floor): the token is the problem.
    #[error("signed with an unknown key")]
    UnknownKey,
    /// The JWKS could not be fetched, or no fetch has succeeded yet and the floor forbids
    /// another: the signer is the problem, not the token.
    #[error("{0}")]
    Unavailable(String),
}

/// The cache of one signer's keys.
pub struct JwksCache {
    keys: RwLock<Arc<KeySet>>,
    /// When the JWKS was last fetched (successfully or not); serialises fetches.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_refetch: Duration,
    /// The counter of fetches (`result` = ok, error, throttled), when the service keeps one.
    metric: Option<&'static str>,
}

impl JwksCache {
    /// An empty cache that fetches at most once per `min_refetch`.
    pub fn new(min_refetch: Duration) -> Self {
        Self {
            keys: RwLock::default(),
            last_fetch: tokio::sync::Mutex::new(None),
            min_refetch,
            metric: None,
        }
    }

    /// Counts fetches in the counter `name`, labelled `result` = `ok`, `error` or `throttled`.
    pub fn with_metric(mut self, name: &'static str) -> Self {
        self.metric = Some(name);
        self
    }

    fn count(&self, result: &'static str) {
        if let Some(name) = self.metric {
            metrics::counter!(name, "result" => result).increment(1);
        }
    }

    fn keys(&self) -> Arc<KeySet> {
        self.keys.read().expect("jwks lock").clone()
    }

    /// The key for (`kid`, `alg`), fetching the JWKS with `fetch` when it is unknown and the
    /// last fetch is older than the floor (or there never was one). Concurrent misses wait for
    /// one fetch rather than each making their own.
    pub async fn key<F, Fut>(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        fetch: F,
    ) -> Result<Key, JwksError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<KeySet, String>>,
    {
        if let Some(k) = self.keys().find(kid, alg) {
            return Ok(k);
        }
        let mut last = self.last_fetch.lock().await;
        // Another request may have refetched while we waited.
        if let Some(k) = self.keys().find(kid, alg) {
            return Ok(k);
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            self.count("throttled");
            if self.keys().is_empty() {
                // No key set yet (the last fetch failed): the signer is the problem.
                return Err(JwksError::Unavailable("JWKS not available".into()));
            }
            return Err(JwksError::UnknownKey);
        }
        *last = Some(Instant::now());
        match fetch().await {
            Ok(set) => {
                self.count("ok");
                *self.keys.write().expect("jwks lock") = Arc::new(set);
            }
            Err(e) => {
                self.count("error");
                return Err(JwksError::Unavailable(e));
            }
        }
        drop(last);
        self.keys().find(kid, alg).ok_or(JwksError::UnknownKey)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const EC_AND_HMAC: &[u8] = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#;

    #[test]
    fn jwks_keeps_only_signature_keys() {
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r", "alg": "RS256", "use": "sig", "e": "AQAB",
             "n": "pofFLbGwljANmi8Y65fRznWRZSX2fGX2AcyyqOf1joa18Vitbxvd3V-AGwbxgA-q4l5yYREvIaGNmxGfUvisXYGHvqHwtk0kjw"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "e": "AQAB", "n": "pofF"},
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "weird", "kid": "w"},
        ]});
        let set = parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.alg_of("r"), Some(Some(Algorithm::RS256)));
        assert!(parse(b"{}").is_err());
        assert!(parse(b"not json").is_err());
    }

    #[tokio::test]
    async fn unknown_kids_refetch_once_per_floor() {
        let cache = JwksCache::new(Duration::from_secs(30));
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            parse(EC_AND_HMAC)
        };
        assert!(cache.key(Some("k1"), Algorithm::ES256, fetch).await.is_ok());
        for i in 0..20 {
            let kid = format!("nope-{i}");
            assert_eq!(
                cache.key(Some(&kid), Algorithm::ES256, fetch).await.err(),
                Some(JwksError::UnknownKey)
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
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_fetch_is_the_signers_problem_until_one_succeeds() {
        let cache = JwksCache::new(Duration::from_secs(30));
        let down = || async { Err::<KeySet, _>("JWKS fetch answered 503".to_owned()) };
        assert_eq!(
            cache.key(Some("k1"), Algorithm::ES256, down).await.err(),
            Some(JwksError::Unavailable("JWKS fetch answered 503".into()))
        );
        // Within the floor no second fetch, and still no key set: unavailable, not "unknown".
        let never = || async { panic!("fetched within the floor") };
        assert_eq!(
            cache.key(Some("k1"), Algorithm::ES256, never).await.err(),
            Some(JwksError::Unavailable("JWKS not available".into()))
        );
    }

    #[tokio::test]
    async fn fetch_reads_a_bounded_body() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut c, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf).await;
                let body = vec![b' '; MAX_JWKS_BYTES + 1];
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = c.write_all(head.as_bytes()).await;
                let _ = c.write_all(&body).await;
            }
        });
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        assert_eq!(
            fetch(&http, &url).await.err().as_deref(),
            Some("JWKS too large")
        );
    }
}
