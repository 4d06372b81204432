//! The `token_exchange` credential source (RFC 8693), not yet wired into the connector tools:
//! instead of a stored upstream credential from token-vault, the user's MCP access token is
//! exchanged at a configured token endpoint (ours or the organisation's authorization server) for
//! a token aimed at the downstream API (`audience` / `resource`), with mcp-service's own client
//! credentials. The MCP token itself is only ever sent to that token endpoint, never downstream.
//!
//! Exchanged tokens are cached per (SHA-256 of the user's token, audience) — never keyed by the
//! plaintext token — until `refresh_before_expiry_secs` before their expiry and never past the
//! user token's own expiry; the cache is bounded. The authorization server's refusals become an
//! [`ExchangeError`] that names only its RFC 6749 error code, never a token or description.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use mcpauth_runtime::Secret;
use mcpauth_runtime::revocation::{TokenKey, now_secs, token_key};
use serde::Deserialize;

/// RFC 8693 §3 token type of the subject token and of the token asked for.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// RFC 8693 grant type.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Largest token endpoint response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How mcp-service authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// `[providers.<name>.token_exchange]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangeConfig {
    pub token_endpoint: String,
    pub client_id: String,
    pub client_secret: Secret,
    #[serde(default)]
    pub token_endpoint_auth_method: ClientAuth,
    /// RFC 8693 `audience` of the downstream API.
    #[serde(default)]
    pub audience: Option<String>,
    /// RFC 8707 `resource` of the downstream API.
    #[serde(default)]
    pub resource: Option<String>,
    /// Space-separated scopes asked for; none: the server's policy decides.
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default = "default_refresh_before")]
    pub refresh_before_expiry_secs: u64,
    #[serde(default = "default_cache_max")]
    pub cache_max_entries: usize,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_refresh_before() -> u64 {
    30
}
fn default_cache_max() -> usize {
    10_000
}
fn default_timeout() -> u64 {
    10_000
}

impl TokenExchangeConfig {
    /// One line naming the key under `key` (`providers.<name>.token_exchange`).
    pub fn validate(&self, key: &str) -> Result<(), String> {
        match url::Url::parse(&self.token_endpoint) {
            Ok(u) if u.scheme() == "https" => {}
            Ok(u) if u.scheme() == "http" && is_loopback(&u) => {}
            Ok(_) => {
                return Err(format!(
                    "{key}.token_endpoint: must be https (http only for loopback hosts)"
                ));
            }
            Err(e) => return Err(format!("{key}.token_endpoint: {e}")),
        }
        if self.client_id.is_empty() || self.client_secret.expose().is_empty() {
            return Err(format!("{key}: client_id and client_secret are required"));
        }
        if self.audience.as_deref().unwrap_or("").is_empty()
            && self.resource.as_deref().unwrap_or("").is_empty()
        {
            return Err(format!(
                "{key}: audience or resource is required (the downstream API the token is for)"
            ));
        }
        if self.cache_max_entries == 0 || self.timeout_ms == 0 {
            return Err(format!(
                "{key}: cache_max_entries and timeout_ms must be above 0"
            ));
        }
        Ok(())
    }

    /// The cache's audience part: what the exchanged token is for.
    fn target(&self) -> String {
        format!(
            "{}|{}",
            self.audience.as_deref().unwrap_or(""),
            self.resource.as_deref().unwrap_or("")
        )
    }
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Why no downstream token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The authorization server refused the exchange (`invalid_target`, `unauthorized_client`,
    /// `invalid_grant`...): only its error code, checked to be plain.
    #[error("the authorization server refused the token exchange ({0})")]
    Refused(String),
    /// The server could not be reached or did not answer as RFC 8693 says.
    #[error("the token exchange is unavailable: {0}")]
    Unavailable(String),
}

impl ExchangeError {
    /// The tool error a user sees for `display` (a provider's display name): no token, no
    /// secret, no server-provided description.
    pub fn tool_message(&self, display: &str) -> String {
        match self {
            ExchangeError::Refused(code) => format!(
                "{display} cannot be used with your current sign-in: the authorization server refused to issue a token for it ({code})"
            ),
            ExchangeError::Unavailable(_) => format!(
                "{display} is temporarily unavailable (no token could be obtained for it); try again shortly"
            ),
        }
    }
}

#[derive(Deserialize)]
struct Issued {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    issued_token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
}

/// Exchanges users' tokens for one audience, with its cache.
pub struct TokenExchanger {
    http: reqwest::Client,
    cfg: TokenExchangeConfig,
    target: String,
    cache: Mutex<HashMap<(TokenKey, String), (String, i64)>>,
}

impl TokenExchanger {
    pub fn new(cfg: TokenExchangeConfig) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            // The user's token must not follow a redirect anywhere else.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .build()?;
        Ok(Self {
            http,
            target: cfg.target(),
            cfg,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// A token for the downstream API acting for the user of `user_token` (which expires at
    /// `user_token_expires_at`, Unix seconds), from the cache or the token endpoint.
    pub async fn token(
        &self,
        user_token: &str,
        user_token_expires_at: i64,
    ) -> Result<String, ExchangeError> {
        let key = (token_key(user_token), self.target.clone());
        let now = now_secs();
        if let Some((t, until)) = self.cache.lock().expect("exchange cache").get(&key)
            && *until > now
        {
            metrics::counter!("mcpauth_mcp_token_exchange_total", "result" => "cached")
                .increment(1);
            return Ok(t.clone());
        }
        let issued = self.exchange(user_token).await;
        let label = match &issued {
            Ok(_) => "issued",
            Err(ExchangeError::Refused(_)) => "refused",
            Err(ExchangeError::Unavailable(_)) => "unavailable",
        };
        metrics::counter!("mcpauth_mcp_token_exchange_total", "result" => label).increment(1);
        let issued = issued?;
        if let Some(expires_in) = issued.expires_in {
            let until = (now + expires_in - self.cfg.refresh_before_expiry_secs as i64)
                .min(user_token_expires_at);
            if until > now {
                self.remember(key, issued.access_token.clone(), until, now);
            }
        }
        Ok(issued.access_token)
    }

    fn remember(&self, key: (TokenKey, String), token: String, until: i64, now: i64) {
        let mut cache = self.cache.lock().expect("exchange cache");
        if cache.len() >= self.cfg.cache_max_entries {
            cache.retain(|_, (_, u)| *u > now);
            if cache.len() >= self.cfg.cache_max_entries {
                // Still full of live entries: start over rather than grow.
                cache.clear();
            }
        }
        cache.insert(key, (token, until));
    }

    /// Entries held (tests).
    pub fn cached(&self) -> usize {
        self.cache.lock().expect("exchange cache").len()
    }

    async fn exchange(&self, user_token: &str) -> Result<Issued, ExchangeError> {
        let c = &self.cfg;
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", user_token),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
        ];
        for (k, v) in [
            ("audience", &c.audience),
            ("resource", &c.resource),
            ("scope", &c.scope),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                form.push((k, v));
            }
        }
        let mut req = self.http.post(&c.token_endpoint);
        match c.token_endpoint_auth_method {
            ClientAuth::ClientSecretBasic => {
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                req = req.basic_auth(enc(&c.client_id), Some(enc(c.client_secret.expose())));
            }
            ClientAuth::ClientSecretPost => {
                form.push(("client_id", &c.client_id));
                form.push(("client_secret", c.client_secret.expose()));
            }
        }
        let resp = req
            .header("accept", "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| ExchangeError::Unavailable(e.without_url().to_string()))?;
        let status = resp.status();
        let body = mcpauth_runtime::http_body::read_limited(resp, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| ExchangeError::Unavailable(format!("token endpoint response: {e}")))?;
        if status.is_client_error() {
            let code = serde_json::from_slice::<OAuthError>(&body)
                .ok()
                .map(|e| e.error)
                .filter(|e| {
                    !e.is_empty()
                        && e.len() <= 64
                        && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                })
                .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
            return Err(ExchangeError::Refused(code));
        }
        if !status.is_success() {
            return Err(ExchangeError::Unavailable(format!(
                "token endpoint answered {status}"
            )));
        }
        let issued: Issued = serde_json::from_slice(&body).map_err(|_| {
            ExchangeError::Unavailable("token endpoint answer is not RFC 8693".into())
        })?;
        let bearer = issued
            .token_type
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case("bearer"));
        let access = issued
            .issued_token_type
            .as_deref()
            .is_none_or(|t| t == ACCESS_TOKEN_TYPE);
        if !bearer || !access || issued.access_token.is_empty() {
            return Err(ExchangeError::Unavailable(
                "token endpoint issued something other than a bearer access token".into(),
            ));
        }
        Ok(issued)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A token endpoint answering `status` and `body`, recording each request it gets.
    async fn endpoint(status: u16, body: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(vec![]));
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = listener.accept().await {
                let mut buf = vec![0u8; 16384];
                let mut n = 0;
                // Read headers and the (small) form body.
                loop {
                    let m = c.read(&mut buf[n..]).await.unwrap_or(0);
                    n += m;
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    if m == 0 {
                        break;
                    }
                    if let Some(h) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if n >= h + 4 + len {
                            break;
                        }
                    }
                }
                s.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).to_string());
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.write_all(reply.as_bytes()).await;
            }
        });
        (url, seen)
    }

    fn cfg(url: &str) -> TokenExchangeConfig {
        serde_json::from_value(serde_json::json!({
            "token_endpoint": url, "client_id": "mcp-service", "client_secret": "s3cret",
            "audience": "https://api.example", "scope": "items:read"}))
        .unwrap()
    }

    #[tokio::test]
    async fn exchanges_once_per_user_token_and_audience() {
        let (url, seen) = endpoint(
            200,
            r#"{"access_token":"downstream-1","token_type":"Bearer","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","expires_in":300}"#,
        )
        .await;
        let x = TokenExchanger::new(cfg(&url)).unwrap();
        let later = now_secs() + 3600;
        assert_eq!(
            x.token("user-token-A", later).await.unwrap(),
            "downstream-1"
        );
        assert_eq!(
            x.token("user-token-A", later).await.unwrap(),
            "downstream-1"
        );
        assert_eq!(seen.lock().unwrap().len(), 1, "the second call is cached");
        x.token("user-token-B", later).await.unwrap();
        assert_eq!(
            seen.lock().unwrap().len(),
            2,
            "another user token is exchanged"
        );
        let req = seen.lock().unwrap()[0].clone();
        let form = req.split("\r\n\r\n").nth(1).unwrap();
        let pairs: HashMap<String, String> = url::form_urlencoded::parse(form.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(pairs["grant_type"], GRANT_TYPE);
        assert_eq!(pairs["subject_token"], "user-token-A");
        assert_eq!(pairs["subject_token_type"], ACCESS_TOKEN_TYPE);
        assert_eq!(pairs["audience"], "https://api.example");
        assert_eq!(pairs["scope"], "items:read");
        assert!(
            !pairs.contains_key("client_secret"),
            "basic auth by default"
        );
        assert!(req.to_ascii_lowercase().contains("authorization: basic "));
        // The cache is keyed by the token's hash, never the token.
        let keys: Vec<_> = x.cache.lock().unwrap().keys().cloned().collect();
        assert!(keys.iter().all(|(k, _)| *k != [0u8; 32]));
        assert!(keys.iter().any(|(k, _)| *k == token_key("user-token-A")));
    }

    #[tokio::test]
    async fn never_cached_past_the_user_token_or_without_expiry() {
        let (url, seen) = endpoint(
            200,
            r#"{"access_token":"d","token_type":"Bearer","expires_in":300}"#,
        )
        .await;
        let x = TokenExchanger::new(cfg(&url)).unwrap();
        // The user's token expires now: nothing is kept.
        x.token("t", now_secs()).await.unwrap();
        x.token("t", now_secs()).await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert_eq!(x.cached(), 0);
        let (url, seen) = endpoint(200, r#"{"access_token":"d","token_type":"Bearer"}"#).await;
        let x = TokenExchanger::new(cfg(&url)).unwrap();
        x.token("t", now_secs() + 3600).await.unwrap();
        x.token("t", now_secs() + 3600).await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let (url, _) = endpoint(
            200,
            r#"{"access_token":"d","token_type":"Bearer","expires_in":300}"#,
        )
        .await;
        let mut c = cfg(&url);
        c.cache_max_entries = 3;
        let x = TokenExchanger::new(c).unwrap();
        for i in 0..10 {
            x.token(&format!("t{i}"), now_secs() + 3600).await.unwrap();
            assert!(x.cached() <= 3);
        }
    }

    #[tokio::test]
    async fn refusals_name_only_the_error_code() {
        let (url, _) = endpoint(
            400,
            r#"{"error":"invalid_target","error_description":"no policy for user-token-SECRET"}"#,
        )
        .await;
        let x = TokenExchanger::new(cfg(&url)).unwrap();
        let e = x
            .token("user-token-SECRET", now_secs() + 60)
            .await
            .unwrap_err();
        assert_eq!(e, ExchangeError::Refused("invalid_target".into()));
        let msg = e.tool_message("Corp API");
        assert!(
            msg.contains("invalid_target") && msg.contains("Corp API"),
            "{msg}"
        );
        assert!(!msg.contains("SECRET") && !msg.contains("s3cret"), "{msg}");
        // An odd error code is not echoed.
        let (url, _) = endpoint(401, r#"{"error":"<script>"}"#).await;
        let e = TokenExchanger::new(cfg(&url))
            .unwrap()
            .token("t", now_secs() + 60)
            .await
            .unwrap_err();
        assert_eq!(e, ExchangeError::Refused("HTTP 401".into()));
        let (url, _) = endpoint(503, "{}").await;
        let e = TokenExchanger::new(cfg(&url))
            .unwrap()
            .token("t", now_secs() + 60)
            .await
            .unwrap_err();
        assert!(matches!(e, ExchangeError::Unavailable(_)));
        assert!(!e.tool_message("Corp API").contains("503"));
        // Something other than a bearer access token is not used.
        let (url, _) = endpoint(200, r#"{"access_token":"x","token_type":"N_A","issued_token_type":"urn:ietf:params:oauth:token-type:id_token"}"#).await;
        let e = TokenExchanger::new(cfg(&url))
            .unwrap()
            .token("t", now_secs() + 60)
            .await
            .unwrap_err();
        assert!(matches!(e, ExchangeError::Unavailable(_)));
    }

    #[test]
    fn config_mistakes_are_one_line() {
        let k = "providers.corp.token_exchange";
        let mut c = cfg("http://idp.example/token");
        assert!(c.validate(k).unwrap_err().contains("must be https"));
        c.token_endpoint = "https://idp.example/token".into();
        assert!(c.validate(k).is_ok());
        c.audience = None;
        assert!(
            c.validate(k)
                .unwrap_err()
                .contains("audience or resource is required")
        );
        c.resource = Some("https://api.example".into());
        assert!(c.validate(k).is_ok());
        c.client_secret = Secret::new("");
        assert!(
            c.validate(k)
                .unwrap_err()
                .contains("client_secret are required")
        );
    }
}
