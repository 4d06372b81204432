//! RFC 7662 introspection at an external authorization server over HTTP, authenticated with
//! client_secret_basic and answered from a [`VerificationCache`] keyed by the token's SHA-256.
//! The cache is not fed by auth-service's revocation feed (it does not cover another server's
//! tokens): `cache_ttl_ms` bounds how long a revoked token is still accepted.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{HttpIntrospectionConfig, Refusal, Verified, check_url, http_client};
use crate::ConfigError;
use crate::revocation::{Refusal as CacheRefusal, Revocable, VerificationCache, now_secs};

/// Largest introspection response accepted.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The introspecting verifier, with its cache of `V` (the service's principal) and `E` (its
/// refusal).
#[derive(Clone)]
pub struct HttpIntrospection<V, E> {
    http: reqwest::Client,
    endpoint: Arc<str>,
    /// `Basic base64(urlencode(client_id) ":" urlencode(client_secret))` (RFC 6749 §2.3.1).
    authorization: Arc<str>,
    issuer: Option<Arc<str>>,
    accepted: Arc<[String]>,
    cache: VerificationCache<V, E>,
    cache_ttl: Duration,
    cache_metric: &'static str,
}

#[derive(Deserialize)]
struct IntrospectionResponse {
    active: bool,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    aud: Option<Value>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    /// RFC 7662: the RFC 6749 §5.1 type (`Bearer`, `DPoP`), or, at some servers, the kind of
    /// token (`refresh_token`, a token-exchange type URI).
    #[serde(default)]
    token_type: Option<String>,
    /// The kind of token as auth-service and Ory Hydra say it (`access_token`, `refresh_token`).
    #[serde(default)]
    token_use: Option<String>,
    /// The kind of token as Keycloak says it (`Bearer`, `Refresh`, `ID`).
    #[serde(default)]
    typ: Option<String>,
}

/// Whether what the server says of the token's kind allows it to be an access token. Absent
/// fields say nothing (RFC 7662 makes `token_type` optional); any field that names another kind —
/// a refresh token, an ID token, a token-exchange `N_A` — refuses it.
fn is_access_token(r: &IntrospectionResponse) -> bool {
    let access_type = |t: &str| {
        [
            "bearer",
            "dpop",
            "access_token",
            "urn:ietf:params:oauth:token-type:access_token",
        ]
        .iter()
        .any(|a| t.eq_ignore_ascii_case(a))
    };
    r.token_type.as_deref().is_none_or(access_type)
        && r.token_use
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case("access_token"))
        && r.typ.as_deref().is_none_or(access_type)
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Whether `aud` (a string or an array of strings) contains one of `accepted`.
fn audience_accepted(aud: Option<&Value>, accepted: &[String]) -> bool {
    let ok = |a: &str| accepted.iter().any(|r| r == a);
    match aud {
        Some(Value::String(a)) => ok(a),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).any(ok),
        _ => false,
    }
}

impl<V, E> HttpIntrospection<V, E>
where
    V: Revocable + From<Verified>,
    E: CacheRefusal + From<Refusal>,
{
    /// `section` names the configuration section in errors (`verifier.http`); `accepted` are
    /// the audiences this service accepts; `cache_max_entries` bounds the cache.
    pub fn new(
        section: &str,
        cfg: &HttpIntrospectionConfig,
        accepted: Vec<String>,
        cache_max_entries: usize,
        cache_metric: &'static str,
    ) -> Result<Self, ConfigError> {
        check_url(&format!("{section}.endpoint"), &cfg.endpoint)?;
        if accepted.is_empty() {
            return Err(ConfigError::new(format!(
                "{section}: at least one accepted resource is required"
            )));
        }
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form_encode(&cfg.client_id),
            form_encode(cfg.client_secret.expose())
        ));
        let http = http_client().map_err(|e| ConfigError::new(format!("{section}: {e}")))?;
        let cache_ttl = Duration::from_millis(cfg.cache_ttl_ms);
        Ok(Self {
            http,
            endpoint: cfg.endpoint.as_str().into(),
            authorization: format!("Basic {basic}").into(),
            issuer: cfg.issuer.as_deref().map(Into::into),
            accepted: accepted.into(),
            cache: VerificationCache::new(cache_ttl, cache_max_entries),
            cache_ttl,
            cache_metric,
        })
    }

    /// The cache (tests; no revocation feed covers it).
    pub fn cache(&self) -> &VerificationCache<V, E> {
        &self.cache
    }

    /// What `token` stands for, from the cache or the authorization server.
    pub async fn verify(&self, token: &str) -> Result<V, E> {
        let verify = async { self.introspect(token).await.map(V::from).map_err(E::from) };
        crate::introspection::verify_cached(&self.cache, self.cache_metric, token, verify).await
    }

    async fn introspect(&self, token: &str) -> Result<Verified, Refusal> {
        let unavailable = |what: String| Refusal::Unavailable(what);
        let resp = self
            .http
            .post(&*self.endpoint)
            .header("authorization", &*self.authorization)
            .header("accept", "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| {
                unavailable(format!("introspection request failed: {}", e.without_url()))
            })?;
        let status = resp.status();
        if !status.is_success() {
            // 5xx: the server is down; 4xx: our own credentials or request are wrong. Neither
            // says anything about the token.
            return Err(unavailable(format!("introspection answered {status}")));
        }
        let body = crate::http_body::read_limited(resp, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| unavailable(format!("introspection response: {e}")))?;
        let r: IntrospectionResponse = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("introspection response is not RFC 7662: {e}")))?;
        self.accept(r)
    }

    fn accept(&self, r: IntrospectionResponse) -> Result<Verified, Refusal> {
        accept(
            r,
            &self.accepted,
            self.issuer.as_deref(),
            self.cache_ttl,
            now_secs(),
        )
    }
}

/// The checks of an introspection answer, in the order their refusals take precedence.
fn accept(
    r: IntrospectionResponse,
    accepted: &[String],
    issuer: Option<&str>,
    cache_ttl: Duration,
    now: i64,
) -> Result<Verified, Refusal> {
    if !r.active || !is_access_token(&r) {
        return Err(Refusal::Inactive);
    }
    if !audience_accepted(r.aud.as_ref(), accepted) {
        return Err(Refusal::WrongAudience);
    }
    if let (Some(want), Some(got)) = (issuer, &r.iss)
        && want != got
    {
        return Err(Refusal::WrongIssuer);
    }
    if r.exp.is_some_and(|exp| exp <= now) {
        return Err(Refusal::Expired);
    }
    if r.nbf.is_some_and(|nbf| nbf > now) {
        return Err(Refusal::Inactive);
    }
    let scopes: BTreeSet<String> = r
        .scope
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let client_id = r.client_id.unwrap_or_default();
    Ok(Verified {
        subject: r.sub.unwrap_or_else(|| client_id.clone()),
        client_id,
        scopes,
        // Without `exp`, trust the answer only as long as it is cached.
        expires_at: r.exp.unwrap_or(now + cache_ttl.as_secs().max(1) as i64),
        token_id: r.jti,
        issuer: r.iss.or_else(|| issuer.map(str::to_owned)),
        grant_id: None,
        issued_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MCP: &str = "https://mcp.example/mcp";

    fn resp(v: Value) -> IntrospectionResponse {
        serde_json::from_value(v).unwrap()
    }

    fn check(v: Value) -> Result<Verified, Refusal> {
        accept(
            resp(v),
            &[MCP.to_owned()],
            Some("https://as.example"),
            Duration::from_secs(30),
            now_secs(),
        )
    }

    #[test]
    fn credentials_are_form_encoded_before_basic() {
        assert_eq!(form_encode("rs:1"), "rs%3A1");
        assert_eq!(form_encode("s e"), "s+e");
        assert_eq!(form_encode("a&b=c"), "a%26b%3Dc");
    }

    #[test]
    fn checks_active_audience_issuer_and_times() {
        let exp = now_secs() + 60;
        let ok = check(json!({"active": true, "aud": ["x", MCP],
                "iss": "https://as.example", "exp": exp, "scope": "a b", "client_id": "c", "jti": "j"}))
        .unwrap();
        assert_eq!(ok.subject, "c");
        assert_eq!(ok.scopes.len(), 2);
        assert_eq!(ok.token_id.as_deref(), Some("j"));
        assert_eq!(ok.issuer.as_deref(), Some("https://as.example"));
        let e = |v: Value| check(v).unwrap_err();
        assert_eq!(e(json!({"active": false})), Refusal::Inactive);
        // Only an access token: a refresh token (however the server says so) is refused even
        // with the right audience.
        for kind in [
            json!({"token_type": "refresh_token"}),
            json!({"token_use": "refresh_token"}),
            json!({"typ": "Refresh"}),
            json!({"token_type": "N_A"}),
            json!({"token_type": "urn:ietf:params:oauth:token-type:refresh_token"}),
        ] {
            let mut body = json!({"active": true, "aud": MCP, "exp": exp, "client_id": "c"});
            body.as_object_mut()
                .unwrap()
                .extend(kind.as_object().unwrap().clone());
            assert_eq!(e(body.clone()), Refusal::Inactive, "{body}");
        }
        for kind in [
            json!({"token_type": "Bearer", "token_use": "access_token"}),
            json!({"token_type": "DPoP"}),
            json!({"typ": "Bearer"}),
            json!({}),
        ] {
            let mut body = json!({"active": true, "aud": MCP, "exp": exp, "client_id": "c"});
            body.as_object_mut()
                .unwrap()
                .extend(kind.as_object().unwrap().clone());
            assert!(check(body.clone()).is_ok(), "{body}");
        }
        assert_eq!(
            e(json!({"active": true, "aud": "https://other/mcp", "exp": exp})),
            Refusal::WrongAudience
        );
        assert_eq!(
            e(json!({"active": true, "exp": exp})),
            Refusal::WrongAudience
        );
        assert_eq!(
            e(json!({"active": true, "aud": MCP, "iss": "https://evil", "exp": exp})),
            Refusal::WrongIssuer
        );
        assert_eq!(
            e(json!({"active": true, "aud": MCP, "exp": now_secs() - 1})),
            Refusal::Expired
        );
        assert_eq!(
            e(json!({"active": true, "aud": MCP, "exp": exp, "nbf": exp})),
            Refusal::Inactive
        );
    }
}
