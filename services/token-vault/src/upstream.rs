//! Calls to upstream providers: the refresh-token grant (RFC 6749 §6) at the token endpoint and
//! RFC 7009 revocation. Errors say what happened without echoing tokens or response bodies.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{ProviderConfig, TokenEndpointAuth};
use crate::credential::ProviderTokens;
use crate::introspect::now_secs;

/// Why a refresh did not produce tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream refused the refresh token: the user must connect again.
    #[error("the upstream refused the refresh token (invalid_grant)")]
    InvalidGrant,
    /// 5xx, timeout, connection failure: worth retrying, the credential stays.
    #[error("the upstream failed transiently: {0}")]
    Transient(String),
    /// Any other refusal (misconfigured client, malformed answer): retrying will not help.
    #[error("the upstream refused the request: {0}")]
    Refused(String),
}

impl UpstreamError {
    pub fn is_transient(&self) -> bool {
        matches!(self, UpstreamError::Transient(_))
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: String,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
}

/// An HTTP client for upstream token and revocation endpoints.
#[derive(Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
}

impl UpstreamClient {
    /// `timeout` bounds each request (connect + response).
    pub fn new(timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("mcpauth-token-vault/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http })
    }

    fn authenticated(
        &self,
        url: &str,
        provider: &ProviderConfig,
        form: &mut Vec<(&'static str, String)>,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json");
        let secret = provider
            .client_secret
            .as_ref()
            .map(|s| s.expose().to_owned())
            .unwrap_or_default();
        match provider.token_endpoint_auth_method {
            TokenEndpointAuth::ClientSecretBasic => {
                // RFC 6749 §2.3.1: both parts form-urlencoded before base64.
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                req = req.basic_auth(enc(&provider.client_id), Some(enc(&secret)));
            }
            TokenEndpointAuth::ClientSecretPost => {
                form.push(("client_id", provider.client_id.clone()));
                form.push(("client_secret", secret));
            }
            TokenEndpointAuth::None => form.push(("client_id", provider.client_id.clone())),
        }
        req
    }

    /// Redeems `refresh_token` at the provider's token endpoint.
    pub async fn refresh(
        &self,
        provider: &ProviderConfig,
        refresh_token: &str,
    ) -> Result<ProviderTokens, UpstreamError> {
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.to_owned()),
        ];
        let req = self.authenticated(&provider.token_endpoint, provider, &mut form);
        let resp = req.form(&form).send().await.map_err(transport)?;
        let status = resp.status();
        let body = match mcpauth_runtime::http_body::read_limited(resp, MAX_TOKEN_RESPONSE_BYTES)
            .await
        {
            Ok(b) => b,
            Err(mcpauth_runtime::http_body::BodyError::Transport(e)) => return Err(transport(e)),
            Err(e @ mcpauth_runtime::http_body::BodyError::TooLarge) => {
                return Err(UpstreamError::Transient(format!("token response: {e}")));
            }
        };
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            return Err(UpstreamError::Transient(format!(
                "HTTP {}",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorResponse>(&body) {
                Ok(e) if e.error == "invalid_grant" => UpstreamError::InvalidGrant,
                Ok(e) => UpstreamError::Refused(format!(
                    "HTTP {}, error {}",
                    status.as_u16(),
                    sanitize(&e.error)
                )),
                Err(_) => UpstreamError::Refused(format!("HTTP {}", status.as_u16())),
            });
        }
        // Some providers (GitHub) answer errors with 200 and an `error` member.
        if let Ok(e) = serde_json::from_slice::<ErrorResponse>(&body) {
            return Err(
                if e.error == "invalid_grant" || e.error == "bad_refresh_token" {
                    UpstreamError::InvalidGrant
                } else {
                    UpstreamError::Refused(format!("error {}", sanitize(&e.error)))
                },
            );
        }
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| UpstreamError::Refused("malformed token response".into()))?;
        if t.access_token.is_empty() {
            return Err(UpstreamError::Refused("empty access_token".into()));
        }
        Ok(ProviderTokens {
            access_token: t.access_token,
            refresh_token: t.refresh_token.unwrap_or_default(),
            expires_at: t
                .expires_in
                .filter(|s| *s > 0)
                .map(|s| now_secs().saturating_add(s))
                .unwrap_or(0),
            scopes: t
                .scope
                .unwrap_or_default()
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            token_type: t.token_type,
        })
    }

    /// RFC 7009: revokes `token` (a refresh token when `hint` says so). True when the upstream
    /// answered 200.
    pub async fn revoke(
        &self,
        provider: &ProviderConfig,
        endpoint: &str,
        token: &str,
        hint: &'static str,
    ) -> Result<bool, UpstreamError> {
        let mut form = vec![
            ("token", token.to_owned()),
            ("token_type_hint", hint.to_owned()),
        ];
        let req = self.authenticated(endpoint, provider, &mut form);
        let resp = req.form(&form).send().await.map_err(transport)?;
        Ok(resp.status().is_success())
    }
}

/// A token response is a few hundred bytes; anything near this is not one.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

fn transport(e: reqwest::Error) -> UpstreamError {
    // reqwest's message carries the URL but never the form body; keep only the kind.
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    UpstreamError::Transient(kind.into())
}

/// An upstream error code, trimmed to something safe to log.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}
