//! Verification of RFC 9068 JWT access tokens against the issuer's JWKS.
//!
//! Only asymmetric algorithms are accepted (never `none`, never HS*: a public key must not be
//! usable as an HMAC secret). The JWKS is fetched without redirects and with a timeout, cached by
//! `kid`, and refetched when a token names an unknown `kid`, at most once per
//! `min_refetch_secs`, so a flood of made-up `kid`s cannot hammer the issuer. Nothing is cached
//! per token: a signature check is cheaper than a cache of them.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::{JwtConfig, Refusal, Verified, check_url, http_client};
use crate::ConfigError;
use crate::jwks::{JwksCache, JwksError, Key};

/// The JWT verifier of one issuer.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    issuer: String,
    jwks_uri: String,
    accepted: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    /// The issuer's keys (refetched on an unknown `kid`, at most once per `min_refetch_secs`).
    jwks: JwksCache,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    client_id: Option<String>,
    exp: i64,
    jti: Option<String>,
    /// mcpauth auth-service's private claim: the grant the token belongs to.
    grant_id: Option<String>,
    iat: Option<i64>,
    scope: Option<Value>,
    scp: Option<Value>,
}

fn parse_algorithms(section: &str, names: &[String]) -> Result<Vec<Algorithm>, ConfigError> {
    let mut out = Vec::new();
    for n in names {
        let alg = Algorithm::from_str(n).map_err(|_| {
            ConfigError::new(format!("{section}.algorithms: unknown algorithm {n:?}"))
        })?;
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(ConfigError::new(format!(
                "{section}.algorithms: {n} is symmetric; only public-key algorithms are allowed"
            )));
        }
        out.push(alg);
    }
    if out.is_empty() {
        return Err(ConfigError::new(format!(
            "{section}.algorithms: at least one algorithm is required"
        )));
    }
    Ok(out)
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
    /// `section` names the configuration section in errors (`verifier.jwt`); `accepted` are
    /// the audiences this service accepts. JWKS fetches are counted in `metric` when given.
    pub fn new(section: &str, cfg: &JwtConfig, accepted: Vec<String>) -> Result<Self, ConfigError> {
        Self::with_metric(section, cfg, accepted, None)
    }

    /// [`JwtVerifier::new`], counting JWKS fetches in `metric` (`result` = ok, error, throttled).
    pub fn with_metric(
        section: &str,
        cfg: &JwtConfig,
        accepted: Vec<String>,
        metric: Option<&'static str>,
    ) -> Result<Self, ConfigError> {
        check_url(&format!("{section}.jwks_uri"), &cfg.jwks_uri)?;
        if cfg.issuer.is_empty() {
            return Err(ConfigError::new(format!("{section}.issuer: required")));
        }
        if accepted.is_empty() {
            return Err(ConfigError::new(format!(
                "{section}: at least one accepted resource is required"
            )));
        }
        let http = http_client().map_err(|e| ConfigError::new(format!("{section}: {e}")))?;
        let mut jwks = JwksCache::new(Duration::from_secs(cfg.min_refetch_secs));
        if let Some(m) = metric {
            jwks = jwks.with_metric(m);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                issuer: cfg.issuer.clone(),
                jwks_uri: cfg.jwks_uri.clone(),
                accepted,
                algorithms: parse_algorithms(section, &cfg.algorithms)?,
                leeway: cfg.leeway_secs,
                jwks,
            }),
        })
    }

    /// The key for `kid`, refetching the JWKS when it is unknown and the last fetch is older
    /// than `min_refetch_secs` (or there never was one).
    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<Key, Refusal> {
        let s = &self.inner;
        let fetch = || async {
            let fetched = crate::jwks::fetch(&s.http, &s.jwks_uri).await;
            if let Err(e) = &fetched {
                tracing::warn!(jwks_uri = %s.jwks_uri, error = %e, "JWKS fetch failed");
            }
            fetched
        };
        s.jwks.key(kid, alg, fetch).await.map_err(|e| match e {
            JwksError::UnknownKey => Refusal::Malformed,
            JwksError::Unavailable(e) => Refusal::Unavailable(e),
        })
    }

    /// What `token` stands for: signature, `typ`, `iss`, `aud`, `exp` and `nbf` checked.
    pub async fn verify(&self, token: &str) -> Result<Verified, Refusal> {
        let s = &self.inner;
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        if !s.algorithms.contains(&header.alg) {
            return Err(Refusal::Malformed);
        }
        // RFC 9068 §2.1: access tokens are typed `at+jwt` (keeps ID tokens and other JWTs out).
        let typ = header.typ.as_deref().unwrap_or("").to_ascii_lowercase();
        if typ != "at+jwt" && typ != "application/at+jwt" {
            return Err(Refusal::Malformed);
        }
        let key = self.key(header.kid.as_deref(), header.alg).await?;
        let mut v = Validation::new(header.alg);
        v.leeway = s.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[&s.issuer]);
        v.set_audience(&s.accepted);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.key, &v).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => Refusal::Expired,
                ErrorKind::ImmatureSignature => Refusal::Inactive,
                ErrorKind::InvalidAudience => Refusal::WrongAudience,
                ErrorKind::InvalidIssuer => Refusal::WrongIssuer,
                _ => Refusal::Malformed,
            })?;
        let c = data.claims;
        let scopes = scopes(&c);
        let client_id = c.client_id.unwrap_or_default();
        Ok(Verified {
            subject: c.sub.unwrap_or_else(|| client_id.clone()),
            client_id,
            scopes,
            expires_at: c.exp,
            token_id: c.jti,
            issuer: Some(s.issuer.clone()),
            grant_id: c.grant_id,
            issued_at: c.iat,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_and_unknown_algorithms_are_refused() {
        assert!(parse_algorithms("verifier.jwt", &["HS256".into()]).is_err());
        assert!(parse_algorithms("verifier.jwt", &["none".into()]).is_err());
        assert!(parse_algorithms("verifier.jwt", &[]).is_err());
        assert_eq!(
            parse_algorithms("verifier.jwt", &["RS256".into(), "ES256".into()]).unwrap(),
            vec![Algorithm::RS256, Algorithm::ES256]
        );
    }

    /// A JWKS endpoint that counts its requests.
    fn jwks_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
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
        let v =
            JwtVerifier::new("verifier.jwt", &cfg, vec!["https://mcp.example/mcp".into()]).unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = b64.encode(r#"{"iss":"https://as.example","exp":9999999999}"#);
        for i in 0..50 {
            let head = b64.encode(format!(
                r#"{{"alg":"ES256","typ":"at+jwt","kid":"nope-{i}"}}"#
            ));
            let t = format!("{head}.{payload}.c2ln");
            assert_eq!(v.verify(&t).await, Err(Refusal::Malformed));
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The known key is served from the cache (its bad signature is refused without a fetch).
        let head = b64.encode(r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#);
        let t = format!("{head}.{payload}.c2ln");
        assert_eq!(v.verify(&t).await, Err(Refusal::Malformed));
        // A disallowed algorithm is refused before any key lookup.
        let head = b64.encode(r#"{"alg":"RS512","typ":"at+jwt","kid":"x"}"#);
        let t = format!("{head}.{payload}.c2ln");
        assert_eq!(v.verify(&t).await, Err(Refusal::Malformed));
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
