//! Verification of RFC 9068 JWT access tokens against the issuer's JWKS (`verifier.mode = "jwt"`).
//!
//! Only asymmetric algorithms are accepted (never `none`, never HS*: a public key must not be
//! usable as an HMAC secret). The JWKS is fetched without redirects and with a timeout, cached by
//! `kid`, and refetched when a token names an unknown `kid`, at most once per
//! `min_refetch_secs`, so a flood of made-up `kid`s cannot hammer the issuer.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{Principal, TokenVerifier, VerifyError};
use crate::config::JwtConfig;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;

#[derive(Clone)]
struct Key {
    key: DecodingKey,
    /// The JWK's `alg`, when it names one: then only that algorithm may use the key.
    alg: Option<Algorithm>,
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Key>,
    /// Keys published without a `kid` (tried for tokens without one).
    anonymous: Vec<Key>,
}

pub struct JwtVerifier {
    http: reqwest::Client,
    issuer: String,
    jwks_uri: String,
    resource: String,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    min_refetch: Duration,
    keys: RwLock<Arc<KeySet>>,
    /// When the JWKS was last fetched (successfully or not); serialises fetches.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    client_id: Option<String>,
    exp: i64,
    jti: Option<String>,
    scope: Option<Value>,
    scp: Option<Value>,
}

fn parse_algorithms(names: &[String]) -> anyhow::Result<Vec<Algorithm>> {
    let mut out = Vec::new();
    for n in names {
        let alg = Algorithm::from_str(n)
            .map_err(|_| anyhow::anyhow!("verifier.jwt.algorithms: unknown algorithm {n:?}"))?;
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            anyhow::bail!(
                "verifier.jwt.algorithms: {n} is symmetric; only public-key algorithms are allowed"
            );
        }
        out.push(alg);
    }
    if out.is_empty() {
        anyhow::bail!("verifier.jwt.algorithms: at least one algorithm is required");
    }
    Ok(out)
}

/// Parses a JWKS document, keeping the signature keys this verifier can use and skipping the
/// rest (encryption keys, symmetric keys, unknown key types).
fn parse_jwks(body: &[u8]) -> Result<KeySet, String> {
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
        {
            continue;
        }
        if raw.get("kty").and_then(Value::as_str) == Some("oct") {
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

/// `scope` (space-delimited string, or an array) or `scp` (array, or a string).
fn scopes(claims: &Claims) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for v in [&claims.scope, &claims.scp].into_iter().flatten() {
        match v {
            Value::String(s) => out.extend(s.split_whitespace().map(str::to_owned)),
            Value::Array(a) => out.extend(a.iter().filter_map(Value::as_str).map(str::to_owned)),
            _ => {}
        }
    }
    out
}

impl JwtVerifier {
    pub fn new(cfg: &JwtConfig, resource: &str) -> anyhow::Result<Self> {
        url::Url::parse(&cfg.jwks_uri)
            .map_err(|e| anyhow::anyhow!("verifier.jwt.jwks_uri: {e}"))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            http,
            issuer: cfg.issuer.clone(),
            jwks_uri: cfg.jwks_uri.clone(),
            resource: resource.to_owned(),
            algorithms: parse_algorithms(&cfg.algorithms)?,
            leeway: cfg.leeway_secs,
            min_refetch: Duration::from_secs(cfg.min_refetch_secs),
            keys: RwLock::default(),
            last_fetch: tokio::sync::Mutex::new(None),
        })
    }

    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Key> {
        let keys = self.keys.read().expect("jwks lock").clone();
        let usable = |k: &Key| k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => keys.by_kid.get(kid).filter(|k| usable(k)).cloned(),
            None => keys.anonymous.iter().find(|k| usable(k)).cloned(),
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let resp = self
            .http
            .get(&self.jwks_uri)
            .header("accept", "application/json, application/jwk-set+json")
            .send()
            .await
            .map_err(|e| format!("JWKS fetch failed: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("JWKS fetch answered {}", resp.status()));
        }
        let body = mcpauth_runtime::http_body::read_limited(resp, MAX_JWKS_BYTES)
            .await
            .map_err(|e| match e {
                mcpauth_runtime::http_body::BodyError::TooLarge => "JWKS too large".to_owned(),
                e => format!("JWKS fetch failed: {e}"),
            })?;
        parse_jwks(&body)
    }

    /// The key for `kid`, refetching the JWKS when it is unknown and the last fetch is older
    /// than `min_refetch_secs` (or there never was one).
    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<Key, VerifyError> {
        if let Some(k) = self.find(kid, alg) {
            return Ok(k);
        }
        let mut last = self.last_fetch.lock().await;
        // Another request may have refetched while we waited.
        if let Some(k) = self.find(kid, alg) {
            return Ok(k);
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            metrics::counter!("mcpauth_mcp_jwks_fetch_total", "result" => "throttled").increment(1);
            let keys = self.keys.read().expect("jwks lock").clone();
            if keys.by_kid.is_empty() && keys.anonymous.is_empty() {
                // No key set yet (the last fetch failed): the issuer is the problem, not the token.
                return Err(VerifyError::Unavailable("JWKS not available".into()));
            }
            return Err(VerifyError::Malformed);
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(set) => {
                metrics::counter!("mcpauth_mcp_jwks_fetch_total", "result" => "ok").increment(1);
                *self.keys.write().expect("jwks lock") = Arc::new(set);
            }
            Err(e) => {
                metrics::counter!("mcpauth_mcp_jwks_fetch_total", "result" => "error").increment(1);
                tracing::warn!(jwks_uri = %self.jwks_uri, error = %e, "JWKS fetch failed");
                return Err(VerifyError::Unavailable(e));
            }
        }
        drop(last);
        self.find(kid, alg).ok_or(VerifyError::Malformed)
    }

    async fn check(&self, token: &str) -> Result<Principal, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(VerifyError::Malformed);
        }
        // RFC 9068 §2.1: access tokens are typed `at+jwt` (keeps ID tokens and other JWTs out).
        let typ = header.typ.as_deref().unwrap_or("").to_ascii_lowercase();
        if typ != "at+jwt" && typ != "application/at+jwt" {
            return Err(VerifyError::Malformed);
        }
        let key = self.key(header.kid.as_deref(), header.alg).await?;
        let mut v = Validation::new(header.alg);
        v.leeway = self.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.resource]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.key, &v).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => VerifyError::Expired,
                ErrorKind::ImmatureSignature => VerifyError::Inactive,
                ErrorKind::InvalidAudience => VerifyError::WrongAudience,
                ErrorKind::InvalidIssuer => VerifyError::WrongIssuer,
                _ => VerifyError::Malformed,
            })?;
        let c = data.claims;
        let scopes = scopes(&c);
        let client_id = c.client_id.unwrap_or_default();
        Ok(Principal {
            subject: c.sub.unwrap_or_else(|| client_id.clone()),
            client_id,
            scopes,
            expires_at: c.exp,
            token_id: c.jti,
            grant_id: None,
            access_token: None,
        })
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, VerifyError>> {
        Box::pin(self.check(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_and_unknown_algorithms_are_refused() {
        assert!(parse_algorithms(&["HS256".into()]).is_err());
        assert!(parse_algorithms(&["none".into()]).is_err());
        assert!(parse_algorithms(&[]).is_err());
        assert_eq!(
            parse_algorithms(&["RS256".into(), "ES256".into()]).unwrap(),
            vec![Algorithm::RS256, Algorithm::ES256]
        );
    }

    #[test]
    fn jwks_keeps_only_signature_keys() {
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r", "alg": "RS256", "use": "sig", "e": "AQAB",
             "n": "pofFLbGwljANmi8Y65fRznWRZSX2fGX2AcyyqOf1joa18Vitbxvd3V-AGwbxgA-q4l5yYREvIaGNmxGfUvisXYGHvqHwtk0kjw"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "e": "AQAB", "n": "pofF"},
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "weird", "kid": "w"},
        ]});
        let set = parse_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.by_kid.len(), 1);
        assert_eq!(set.by_kid["r"].alg, Some(Algorithm::RS256));
        assert!(parse_jwks(b"{}").is_err());
    }

    /// A JWKS endpoint that counts its requests.
    fn jwks_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { continue };
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, hits)
    }

    #[tokio::test]
    async fn a_flood_of_unknown_kids_fetches_the_jwks_once() {
        use base64::Engine as _;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (url, hits) = jwks_server();
        let cfg: JwtConfig = serde_json::from_value(serde_json::json!({
            "issuer": "https://as.example", "jwks_uri": url, "min_refetch_secs": 30}))
        .unwrap();
        let v = JwtVerifier::new(&cfg, "https://mcp.example/mcp").unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = b64.encode(r#"{"iss":"https://as.example","exp":9999999999}"#);
        for i in 0..50 {
            let head = b64.encode(format!(
                r#"{{"alg":"ES256","typ":"at+jwt","kid":"nope-{i}"}}"#
            ));
            let t = format!("{head}.{payload}.c2ln");
            assert_eq!(v.verify(&t).await, Err(VerifyError::Malformed));
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The known key is served from the cache (its bad signature is refused without a fetch).
        let head = b64.encode(r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#);
        let t = format!("{head}.{payload}.c2ln");
        assert_eq!(v.verify(&t).await, Err(VerifyError::Malformed));
        // A disallowed algorithm is refused before any key lookup.
        let head = b64.encode(r#"{"alg":"RS512","typ":"at+jwt","kid":"x"}"#);
        let t = format!("{head}.{payload}.c2ln");
        assert_eq!(v.verify(&t).await, Err(VerifyError::Malformed));
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn scopes_from_scope_string_or_scp_array() {
        let c: Claims = serde_json::from_value(serde_json::json!({
            "exp": 1, "scope": "a b", "scp": ["c"]}))
        .unwrap();
        let s = scopes(&c);
        assert_eq!(s.into_iter().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    }
}
