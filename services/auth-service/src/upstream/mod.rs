//! Upstream providers: the OpenID Connect or plain OAuth 2.0 servers that users log in with
//! (`login.provider = "upstream"`) or connect for their tools (the connect flow). This module is
//! the OAuth *client* side: discovery, the authorization URL (PKCE S256, `state`, `nonce`), the
//! code exchange, ID token verification against the provider's JWKS, and userinfo.
//!
//! Every upstream call is made without following redirects, with a total timeout and a cap on
//! the response size. Upstream tokens and error descriptions never reach a log line or an error
//! message: errors carry at most an HTTP status or an RFC 6749 error code.

pub mod claims;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, Validation};
use mcpauth_runtime::jwks::{self, JwksCache, JwksError};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::config::{UpstreamConfig, UpstreamKind, UpstreamProviderConfig};

/// Re-discovery interval of an OIDC provider's metadata.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Clock skew tolerated on ID token `exp`/`nbf`.
const LEEWAY_SECS: u64 = 60;
/// Algorithms an ID token may be signed with: public-key only (never `none` or HS*).
const ID_TOKEN_ALGS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Checks an upstream endpoint URL: absolute, https (http only on a loopback host), no
/// fragment, no user info.
pub fn check_endpoint(raw: &str) -> Result<Url, String> {
    let u = Url::parse(raw).map_err(|e| format!("not an absolute url ({e})"))?;
    if u.fragment().is_some() || !u.username().is_empty() || u.password().is_some() {
        return Err("must not have a fragment or user info".into());
    }
    let loopback = u
        .host()
        .is_some_and(|h| crate::domain::redirect_uri::is_loopback_host(&h));
    match u.scheme() {
        "https" => Ok(u),
        "http" if loopback => Ok(u),
        _ => Err("must be https (http only on loopback)".into()),
    }
}

/// Why an upstream step failed. Safe to log; never shown verbatim to the client.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream request failed: {0}")]
    Http(String),
    #[error("upstream answered http status {0}")]
    Status(u16),
    #[error("upstream token endpoint refused the request: {0}")]
    TokenRefused(String),
    #[error("invalid upstream response: {0}")]
    BadResponse(String),
    #[error("discovery failed: {0}")]
    Discovery(String),
    #[error("id token rejected: {0}")]
    IdToken(String),
    #[error("no usable identity: {0}")]
    Identity(String),
}

/// Longest upstream subject kept (OpenID Connect Core §2: `sub` is at most 255 ASCII characters).
const MAX_SUBJECT_BYTES: usize = 255;
/// Longest display name kept, in characters (as a client's name).
const MAX_USERNAME_CHARS: usize = 200;

/// An identity as stored: a subject of bounded size without control characters (else no usable
/// identity), and a display name cut to [`MAX_USERNAME_CHARS`] (the subject when unusable).
fn bounded_identity(
    issuer: String,
    subject: String,
    username: String,
) -> Result<UpstreamIdentity, UpstreamError> {
    if subject.is_empty()
        || subject.len() > MAX_SUBJECT_BYTES
        || crate::domain::input::has_control(&subject)
    {
        return Err(UpstreamError::Identity(format!(
            "the subject must be 1-{MAX_SUBJECT_BYTES} bytes without control characters"
        )));
    }
    let username = if username.trim().is_empty() || crate::domain::input::has_control(&username) {
        subject.clone()
    } else {
        username.chars().take(MAX_USERNAME_CHARS).collect()
    };
    Ok(UpstreamIdentity {
        issuer,
        subject,
        username,
    })
}

/// The endpoints of a provider, from configuration and (OIDC) discovery.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    pub userinfo: Option<String>,
    pub jwks_uri: Option<String>,
}

/// Tokens from the upstream token endpoint. `Debug` hides the secrets.
#[derive(Clone, Deserialize)]
pub struct ProviderTokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for ProviderTokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderTokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

/// Who the user is at the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamIdentity {
    /// The identity namespace: the OIDC issuer, or for plain OAuth 2.0 the configured `issuer`
    /// or else the authorization endpoint's origin.
    pub issuer: String,
    pub subject: String,
    pub username: String,
}

/// One configured provider and its caches.
pub struct UpstreamProvider {
    pub name: String,
    pub cfg: UpstreamProviderConfig,
    http: reqwest::Client,
    max_bytes: usize,
    discovered: tokio::sync::Mutex<Option<(Instant, Arc<Endpoints>)>>,
    /// The provider's signing keys (refetched on an unknown `kid`, at most once per
    /// `jwks_min_refetch_secs`).
    jwks: JwksCache,
}

/// Every configured provider, by name.
#[derive(Clone, Default)]
pub struct UpstreamProviders {
    by_name: Arc<HashMap<String, Arc<UpstreamProvider>>>,
}

impl UpstreamProviders {
    pub fn new(cfg: &UpstreamConfig) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .timeout(timeout)
            .user_agent("mcpauth-auth-service")
            .build()?;
        let by_name = cfg
            .providers
            .iter()
            .map(|(name, p)| {
                (
                    name.clone(),
                    Arc::new(UpstreamProvider {
                        name: name.clone(),
                        cfg: p.clone(),
                        http: http.clone(),
                        max_bytes: cfg.max_response_bytes,
                        discovered: tokio::sync::Mutex::new(None),
                        jwks: JwksCache::new(Duration::from_secs(p.jwks_min_refetch_secs)),
                    }),
                )
            })
            .collect();
        Ok(Self {
            by_name: Arc::new(by_name),
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<UpstreamProvider>> {
        self.by_name.get(name).cloned()
    }
}

/// Reads a response body up to `max` bytes.
async fn read_limited(resp: reqwest::Response, max: usize) -> Result<Vec<u8>, UpstreamError> {
    use mcpauth_runtime::http_body::{BodyError, read_limited};
    read_limited(resp, max).await.map_err(|e| match e {
        BodyError::TooLarge => UpstreamError::BadResponse(e.to_string()),
        BodyError::Transport(e) => UpstreamError::Http(e.without_url().to_string()),
    })
}

fn http_error(e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Http("timed out".into())
    } else {
        // Without the URL: it may carry query parameters.
        UpstreamError::Http(e.without_url().to_string())
    }
}

/// An RFC 6749 error code from an upstream error body, reduced to safe characters.
fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .map(|e| {
            e.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect()
        })
        .unwrap_or_else(|| "unknown".into())
}

impl UpstreamProvider {
    /// The name shown to users.
    pub fn display_name(&self) -> &str {
        self.cfg.display(&self.name)
    }

    async fn get_json(&self, url: &str, bearer: Option<&str>) -> Result<Value, UpstreamError> {
        let mut req = self.http.get(url).header("accept", "application/json");
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(http_error)?;
        let status = resp.status();
        let body = read_limited(resp, self.max_bytes).await?;
        if !status.is_success() {
            return Err(UpstreamError::Status(status.as_u16()));
        }
        serde_json::from_slice(&body).map_err(|_| UpstreamError::BadResponse("not json".into()))
    }

    /// The provider's endpoints: configuration, completed by discovery for OIDC providers.
    pub async fn endpoints(&self) -> Result<Arc<Endpoints>, UpstreamError> {
        let c = &self.cfg;
        if c.kind == UpstreamKind::Oauth2 {
            return Ok(Arc::new(Endpoints {
                authorization: c.authorization_endpoint.clone().unwrap_or_default(),
                token: c.token_endpoint.clone().unwrap_or_default(),
                userinfo: c.userinfo_endpoint.clone(),
                jwks_uri: c.jwks_uri.clone(),
            }));
        }
        let mut cached = self.discovered.lock().await;
        if let Some((at, e)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(e.clone());
        }
        match self.discover().await {
            Ok(e) => {
                let e = Arc::new(e);
                *cached = Some((Instant::now(), e.clone()));
                Ok(e)
            }
            // A provider that is briefly down keeps its last known endpoints.
            Err(err) => match cached.as_ref() {
                Some((_, e)) => {
                    tracing::warn!(provider = %self.name, error = %err, "re-discovery failed, keeping the previous metadata");
                    Ok(e.clone())
                }
                None => Err(err),
            },
        }
    }

    async fn discover(&self) -> Result<Endpoints, UpstreamError> {
        let c = &self.cfg;
        let issuer = c.issuer.as_deref().unwrap_or_default();
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc = self
            .get_json(&url, None)
            .await
            .map_err(|e| UpstreamError::Discovery(e.to_string()))?;
        // OpenID Connect Discovery §4.3: the document's issuer is exactly the configured one.
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(UpstreamError::Discovery(
                "the metadata issuer does not match the configured issuer".into(),
            ));
        }
        let field = |name: &str, over: &Option<String>| -> Result<Option<String>, UpstreamError> {
            let v = over
                .clone()
                .or_else(|| doc.get(name).and_then(Value::as_str).map(str::to_owned));
            if let Some(u) = &v {
                check_endpoint(u).map_err(|e| UpstreamError::Discovery(format!("{name}: {e}")))?;
            }
            Ok(v)
        };
        let missing = |n: &str| UpstreamError::Discovery(format!("{n} is missing"));
        Ok(Endpoints {
            authorization: field("authorization_endpoint", &c.authorization_endpoint)?
                .ok_or_else(|| missing("authorization_endpoint"))?,
            token: field("token_endpoint", &c.token_endpoint)?
                .ok_or_else(|| missing("token_endpoint"))?,
            userinfo: field("userinfo_endpoint", &c.userinfo_endpoint)?,
            jwks_uri: field("jwks_uri", &c.jwks_uri)?,
        })
    }

    /// The URL that sends the browser to the provider's authorization endpoint.
    pub fn authorization_url(
        &self,
        endpoints: &Endpoints,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        code_challenge: &str,
    ) -> String {
        let mut url = Url::parse(&endpoints.authorization).expect("checked at start");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.cfg.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("state", state)
                .append_pair("code_challenge", code_challenge)
                .append_pair("code_challenge_method", "S256");
            let scopes = self.cfg.requested_scopes();
            if !scopes.is_empty() {
                q.append_pair("scope", &scopes.join(" "));
            }
            if self.cfg.kind == UpstreamKind::Oidc {
                q.append_pair("nonce", nonce);
            }
        }
        url.into()
    }

    /// Exchanges an authorization code (with its PKCE verifier) at the token endpoint.
    pub async fn exchange_code(
        &self,
        endpoints: &Endpoints,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
    ) -> Result<ProviderTokenResponse, UpstreamError> {
        let c = &self.cfg;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ];
        let secret = c.client_secret.as_ref().map(|s| s.expose()).unwrap_or("");
        let mut req = self
            .http
            .post(&endpoints.token)
            .header("accept", "application/json");
        match c.token_endpoint_auth_method.as_str() {
            "client_secret_basic" => {
                // RFC 6749 §2.3.1: both parts form-urlencoded before Basic encoding.
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                req = req.basic_auth(enc(&c.client_id), Some(enc(secret)));
            }
            "client_secret_post" => {
                form.push(("client_id", &c.client_id));
                form.push(("client_secret", secret));
            }
            _ => form.push(("client_id", &c.client_id)),
        }
        let resp = req.form(&form).send().await.map_err(http_error)?;
        let status = resp.status();
        let body = read_limited(resp, self.max_bytes).await?;
        if !status.is_success() {
            return Err(UpstreamError::TokenRefused(format!(
                "http {} {}",
                status.as_u16(),
                error_code(&body)
            )));
        }
        let tokens: ProviderTokenResponse = serde_json::from_slice(&body)
            .map_err(|_| UpstreamError::BadResponse("token response is not valid".into()))?;
        if tokens.access_token.is_empty() {
            return Err(UpstreamError::BadResponse("empty access_token".into()));
        }
        if let Some(t) = &tokens.token_type
            && !t.eq_ignore_ascii_case("bearer")
            && !t.eq_ignore_ascii_case("dpop")
        {
            return Err(UpstreamError::BadResponse("unsupported token_type".into()));
        }
        Ok(tokens)
    }

    /// Establishes who the user is: the verified ID token for OIDC providers, the userinfo
    /// endpoint and `subject_claim` for plain OAuth 2.0 ones.
    pub async fn identity(
        &self,
        endpoints: &Endpoints,
        tokens: &ProviderTokenResponse,
        nonce: &str,
    ) -> Result<UpstreamIdentity, UpstreamError> {
        let c = &self.cfg;
        match c.kind {
            UpstreamKind::Oidc => {
                let id_token = tokens.id_token.as_deref().ok_or_else(|| {
                    UpstreamError::IdToken("the token response has no id_token".into())
                })?;
                let claims = self.verify_id_token(endpoints, id_token, nonce).await?;
                let subject = claims::string_at(&claims, "sub")
                    .ok_or_else(|| UpstreamError::IdToken("sub is missing".into()))?;
                let username = c
                    .username_claim
                    .as_deref()
                    .and_then(|p| claims::string_at(&claims, p))
                    .or_else(|| claims::string_at(&claims, "preferred_username"))
                    .or_else(|| claims::string_at(&claims, "email"))
                    .unwrap_or_else(|| subject.clone());
                bounded_identity(c.issuer.clone().unwrap_or_default(), subject, username)
            }
            UpstreamKind::Oauth2 => {
                let userinfo = endpoints
                    .userinfo
                    .as_deref()
                    .ok_or_else(|| UpstreamError::Identity("no userinfo_endpoint".into()))?;
                let doc = self
                    .get_json(userinfo, Some(&tokens.access_token))
                    .await
                    .map_err(|e| UpstreamError::Identity(format!("userinfo: {e}")))?;
                let path = c.subject_claim.as_deref().unwrap_or("sub");
                let subject = claims::string_at(&doc, path).ok_or_else(|| {
                    UpstreamError::Identity(format!("userinfo has no string at {path}"))
                })?;
                let username = c
                    .username_claim
                    .as_deref()
                    .and_then(|p| claims::string_at(&doc, p))
                    .unwrap_or_else(|| subject.clone());
                bounded_identity(self.identity_namespace(endpoints), subject, username)
            }
        }
    }

    /// The issuer a provider's identities are linked under.
    pub fn identity_namespace(&self, endpoints: &Endpoints) -> String {
        if let Some(i) = &self.cfg.issuer {
            return i.clone();
        }
        Url::parse(&endpoints.authorization)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default()
    }

    /// The `iss` an authorization response (RFC 9207) must carry when it carries one.
    pub fn expected_response_issuer(&self) -> Option<&str> {
        self.cfg.issuer.as_deref()
    }

    /// OpenID Connect Core §3.1.3.7: signature against the JWKS, `iss` exactly the issuer,
    /// `aud` containing our client id (and `azp` naming it when there are several audiences),
    /// `exp`, and the `nonce` we sent.
    async fn verify_id_token(
        &self,
        endpoints: &Endpoints,
        token: &str,
        nonce: &str,
    ) -> Result<Value, UpstreamError> {
        let bad = |m: &str| UpstreamError::IdToken(m.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("malformed"))?;
        if !ID_TOKEN_ALGS.contains(&header.alg) {
            return Err(bad("unsupported signature algorithm"));
        }
        let jwks_uri = endpoints
            .jwks_uri
            .as_deref()
            .ok_or_else(|| bad("the provider publishes no jwks_uri"))?;
        let key = self
            .jwks
            .key(header.kid.as_deref(), header.alg, || async {
                let doc = self
                    .get_json(jwks_uri, None)
                    .await
                    .map_err(|e| format!("jwks: {e}"))?;
                jwks::parse(doc.to_string().as_bytes())
            })
            .await
            .map_err(|e| match e {
                JwksError::UnknownKey => bad("id token signed with an unknown key"),
                JwksError::Unavailable(m) => UpstreamError::IdToken(m),
            })?;
        let issuer = self.cfg.issuer.as_deref().unwrap_or_default();
        let mut v = Validation::new(header.alg);
        v.leeway = LEEWAY_SECS;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[issuer]);
        v.set_audience(&[&self.cfg.client_id]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, &key.key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            bad(match e.kind() {
                ErrorKind::InvalidIssuer => "wrong issuer",
                ErrorKind::InvalidAudience => "wrong audience",
                ErrorKind::ExpiredSignature => "expired",
                ErrorKind::ImmatureSignature => "not yet valid",
                ErrorKind::InvalidSignature => "bad signature",
                _ => "invalid",
            })
        })?;
        let claims = data.claims;
        if let Some(Value::Array(auds)) = claims.get("aud")
            && auds.len() > 1
            && claims.get("azp").and_then(Value::as_str) != Some(self.cfg.client_id.as_str())
        {
            return Err(bad("azp does not name this client"));
        }
        let got = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            got.as_bytes(),
            nonce.as_bytes(),
        )) {
            return Err(bad("nonce mismatch"));
        }
        Ok(claims)
    }
}

/// Seconds since the epoch at which tokens that live `expires_in` seconds expire (0: unknown).
pub fn expires_at(expires_in: Option<i64>) -> i64 {
    expires_in
        .filter(|s| *s > 0)
        .map(|s| chrono::Utc::now().timestamp() + s)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_rules() {
        assert!(check_endpoint("https://idp.example/authorize").is_ok());
        assert!(check_endpoint("http://127.0.0.1:9000/auth").is_ok());
        assert!(check_endpoint("http://localhost/auth").is_ok());
        assert!(check_endpoint("http://idp.example/auth").is_err());
        assert!(check_endpoint("https://u:p@idp.example/").is_err());
        assert!(check_endpoint("https://idp.example/#x").is_err());
        assert!(check_endpoint("idp.example").is_err());
    }

    #[test]
    fn identities_are_bounded() {
        let id =
            |sub: &str, name: &str| bounded_identity("https://i".into(), sub.into(), name.into());
        assert_eq!(id("u1", "alice").unwrap().username, "alice");
        assert_eq!(
            id("u1", &"é".repeat(300)).unwrap().username.chars().count(),
            200
        );
        assert_eq!(id("u1", "bad\u{0}name").unwrap().username, "u1");
        assert!(id(&"s".repeat(255), "a").is_ok());
        assert!(id(&"s".repeat(256), "a").is_err());
        assert!(id("a\nb", "a").is_err());
        assert!(id("", "a").is_err());
    }

    #[test]
    fn error_codes_are_sanitised() {
        assert_eq!(error_code(br#"{"error":"invalid_grant"}"#), "invalid_grant");
        assert_eq!(error_code(br#"{"error":"<b>x</b> y"}"#), "bxby");
        assert_eq!(error_code(b"not json"), "unknown");
    }

    #[test]
    fn debug_hides_tokens() {
        let t: ProviderTokenResponse = serde_json::from_value(serde_json::json!({
            "access_token": "AT-secret", "refresh_token": "RT-secret", "id_token": "ID-secret",
            "token_type": "Bearer", "expires_in": 60}))
        .unwrap();
        let d = format!("{t:?}");
        assert!(!d.contains("secret"), "{d}");
    }
}
