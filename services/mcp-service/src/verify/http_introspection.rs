//! Verification by RFC 7662 introspection at an external authorization server over HTTP
//! (`verifier.mode = "introspection_http"`), authenticated with client_secret_basic and cached
//! in-process.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;

use super::cache::{IntrospectionCache, now_secs, verify_cached};
use crate::auth::{Principal, TokenVerifier, VerifyError};
use crate::config::HttpIntrospectionConfig;

/// Entries kept in the introspection cache.
const CACHE_MAX_ENTRIES: usize = 100_000;
/// Largest introspection response accepted.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

pub struct HttpIntrospection {
    http: reqwest::Client,
    endpoint: String,
    /// `Basic base64(urlencode(client_id) ":" urlencode(client_secret))` (RFC 6749 §2.3.1).
    authorization: String,
    issuer: Option<String>,
    resource: String,
    cache: IntrospectionCache,
    cache_ttl: Duration,
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

/// Whether `aud` (a string or an array of strings) contains `resource`.
fn audience_contains(aud: Option<&Value>, resource: &str) -> bool {
    match aud {
        Some(Value::String(a)) => a == resource,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(resource)),
        _ => false,
    }
}

impl HttpIntrospection {
    pub fn new(cfg: &HttpIntrospectionConfig, resource: &str) -> anyhow::Result<Self> {
        url::Url::parse(&cfg.endpoint)
            .map_err(|e| anyhow::anyhow!("verifier.http.endpoint: {e}"))?;
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form_encode(&cfg.client_id),
            form_encode(cfg.client_secret.expose())
        ));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .build()?;
        let cache_ttl = Duration::from_millis(cfg.cache_ttl_ms);
        Ok(Self {
            http,
            endpoint: cfg.endpoint.clone(),
            authorization: format!("Basic {basic}"),
            issuer: cfg.issuer.clone(),
            resource: resource.to_owned(),
            cache: IntrospectionCache::new(cache_ttl, CACHE_MAX_ENTRIES),
            cache_ttl,
        })
    }

    pub fn cache(&self) -> &IntrospectionCache {
        &self.cache
    }

    async fn introspect(&self, token: &str) -> Result<Principal, VerifyError> {
        let unavailable = |what: String| VerifyError::Unavailable(what);
        let resp = self
            .http
            .post(&self.endpoint)
            .header("authorization", &self.authorization)
            .header("accept", "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| unavailable(format!("introspection request failed: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            // 5xx: the server is down; 4xx: our own credentials or request are wrong. Neither
            // says anything about the token.
            return Err(unavailable(format!("introspection answered {status}")));
        }
        let body = mcpauth_runtime::http_body::read_limited(resp, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| unavailable(format!("introspection response: {e}")))?;
        let r: IntrospectionResponse = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("introspection response is not RFC 7662: {e}")))?;
        self.principal(r)
    }

    fn principal(&self, r: IntrospectionResponse) -> Result<Principal, VerifyError> {
        if !r.active || !is_access_token(&r) {
            return Err(VerifyError::Inactive);
        }
        if !audience_contains(r.aud.as_ref(), &self.resource) {
            return Err(VerifyError::WrongAudience);
        }
        if let (Some(want), Some(got)) = (&self.issuer, &r.iss)
            && want != got
        {
            return Err(VerifyError::WrongIssuer);
        }
        let now = now_secs();
        if r.exp.is_some_and(|exp| exp <= now) {
            return Err(VerifyError::Expired);
        }
        if r.nbf.is_some_and(|nbf| nbf > now) {
            return Err(VerifyError::Inactive);
        }
        let scopes: BTreeSet<String> = r
            .scope
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let client_id = r.client_id.unwrap_or_default();
        Ok(Principal {
            subject: r.sub.unwrap_or_else(|| client_id.clone()),
            client_id,
            scopes,
            // Without `exp`, trust the answer only as long as it is cached.
            expires_at: r
                .exp
                .unwrap_or(now + self.cache_ttl.as_secs().max(1) as i64),
            token_id: r.jti,
            grant_id: None,
            access_token: None,
        })
    }
}

impl TokenVerifier for HttpIntrospection {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, VerifyError>> {
        Box::pin(verify_cached(&self.cache, token, self.introspect(token)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verifier() -> HttpIntrospection {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cfg: HttpIntrospectionConfig = serde_json::from_value(json!({
            "endpoint": "http://127.0.0.1:1/introspect", "client_id": "rs:1", "client_secret": "s e",
            "issuer": "https://as.example"}))
        .unwrap();
        HttpIntrospection::new(&cfg, "https://mcp.example/mcp").unwrap()
    }

    fn resp(v: Value) -> IntrospectionResponse {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn credentials_are_form_encoded_before_basic() {
        use base64::Engine as _;
        let v = verifier();
        let b64 = v.authorization.strip_prefix("Basic ").unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(raw, b"rs%3A1:s+e");
    }

    #[test]
    fn checks_active_audience_issuer_and_times() {
        let v = verifier();
        let exp = now_secs() + 60;
        let ok = v
            .principal(resp(json!({"active": true, "aud": ["x", "https://mcp.example/mcp"],
                "iss": "https://as.example", "exp": exp, "scope": "a b", "client_id": "c", "jti": "j"})))
            .unwrap();
        assert_eq!(ok.subject, "c");
        assert_eq!(ok.scopes.len(), 2);
        assert_eq!(ok.token_id.as_deref(), Some("j"));
        let e = |v2: Value| v.principal(resp(v2)).unwrap_err();
        assert_eq!(e(json!({"active": false})), VerifyError::Inactive);
        // Only an access token: a refresh token (however the server says so) is refused even
        // with the right audience.
        let aud = "https://mcp.example/mcp";
        for kind in [
            json!({"token_type": "refresh_token"}),
            json!({"token_use": "refresh_token"}),
            json!({"typ": "Refresh"}),
            json!({"token_type": "N_A"}),
            json!({"token_type": "urn:ietf:params:oauth:token-type:refresh_token"}),
        ] {
            let mut body = json!({"active": true, "aud": aud, "exp": exp, "client_id": "c"});
            body.as_object_mut()
                .unwrap()
                .extend(kind.as_object().unwrap().clone());
            assert_eq!(e(body.clone()), VerifyError::Inactive, "{body}");
        }
        for kind in [
            json!({"token_type": "Bearer", "token_use": "access_token"}),
            json!({"token_type": "DPoP"}),
            json!({"typ": "Bearer"}),
            json!({}),
        ] {
            let mut body = json!({"active": true, "aud": aud, "exp": exp, "client_id": "c"});
            body.as_object_mut()
                .unwrap()
                .extend(kind.as_object().unwrap().clone());
            assert!(v.principal(resp(body.clone())).is_ok(), "{body}");
        }
        assert_eq!(
            e(json!({"active": true, "aud": "https://other/mcp", "exp": exp})),
            VerifyError::WrongAudience
        );
        assert_eq!(
            e(json!({"active": true, "exp": exp})),
            VerifyError::WrongAudience
        );
        assert_eq!(
            e(
                json!({"active": true, "aud": "https://mcp.example/mcp", "iss": "https://evil", "exp": exp})
            ),
            VerifyError::WrongIssuer
        );
        assert_eq!(
            e(json!({"active": true, "aud": "https://mcp.example/mcp", "exp": now_secs() - 1})),
            VerifyError::Expired
        );
        assert_eq!(
            e(json!({"active": true, "aud": "https://mcp.example/mcp", "exp": exp, "nbf": exp})),
            VerifyError::Inactive
        );
    }

    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        let v = verifier();
        assert!(matches!(
            v.verify("t").await,
            Err(VerifyError::Unavailable(_))
        ));
    }
}
