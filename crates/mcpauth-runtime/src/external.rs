//! Verifiers of access tokens issued by an external authorization server, one implementation
//! for both services that verify them: mcp-service (`verifier.mode = "introspection_http"` or
//! `"jwt"`) and token-vault (the same modes, to know which user a token speaks for). Either mode
//! yields a [`Verified`] token or a [`Refusal`]; each service converts them into its own
//! principal and error types (as with [`crate::introspection`]).

pub mod http_introspection;
pub mod jwt;

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::Secret;

pub use http_introspection::HttpIntrospection;
pub use jwt::JwtVerifier;

/// An access token the external authorization server vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `sub`; the client id when the token has no subject (client credentials).
    pub subject: String,
    pub client_id: String,
    pub scopes: BTreeSet<String>,
    /// Unix seconds.
    pub expires_at: i64,
    /// `jti`, when the server gives one.
    pub token_id: Option<String>,
    /// `iss` as the token (or the introspection answer) states it, or the configured issuer.
    pub issuer: Option<String>,
    /// mcpauth auth-service's private `grant_id` claim, when a JWT carries it (grant revocations
    /// name it).
    pub grant_id: Option<String>,
    /// `iat`, when the token states it (a user revocation covers tokens issued before it).
    pub issued_at: Option<i64>,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("token is not active")]
    Inactive,
    #[error("token was issued for another resource")]
    WrongAudience,
    #[error("token was issued by another issuer")]
    WrongIssuer,
    #[error("token has expired")]
    Expired,
    #[error("token is malformed")]
    Malformed,
    /// The authorization server (its introspection endpoint or JWKS) did not answer usefully:
    /// nothing is known about the token.
    #[error("token verification is unavailable: {0}")]
    Unavailable(String),
}

/// RFC 7662 introspection at the external authorization server (`[<section>.http]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpIntrospectionConfig {
    /// RFC 7662 endpoint of the external authorization server.
    pub endpoint: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Expected `iss` in the response, when the server reports one.
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl_ms: u64,
}

fn default_cache_ttl() -> u64 {
    30_000
}

/// RFC 9068 JWT access tokens checked against the issuer's JWKS (`[<section>.jwt]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: String,
    /// JWKS URL of the issuer.
    pub jwks_uri: String,
    /// Accepted signature algorithms.
    #[serde(default = "default_algs")]
    pub algorithms: Vec<String>,
    /// Minimum time between JWKS refetches triggered by an unknown `kid`.
    #[serde(default = "default_refetch")]
    pub min_refetch_secs: u64,
    /// Clock skew tolerated on `exp`/`nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// mcp-service: refuse JWTs that mcpauth's auth-service revoked, as published on its event
    /// channel (`redis.auth_key_prefix`): by `jti`, grant, client, subject. Harmless with another
    /// issuer (nothing is published there). token-vault does not read it: it follows the feed
    /// only in its gRPC mode.
    #[serde(default = "default_true")]
    pub follow_revocations: bool,
}

fn default_true() -> bool {
    true
}

fn default_algs() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}
fn default_refetch() -> u64 {
    30
}
fn default_leeway() -> u64 {
    30
}

/// The HTTP client of both verifiers: no redirects (a token or credential must not be re-sent
/// elsewhere), short timeouts.
fn http_client() -> reqwest::Result<reqwest::Client> {
    // Configuration checks build one before the service installs its TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(5))
        .build()
}

/// Checks that `value` is an absolute http(s) URL; the error names `key`.
fn check_url(key: &str, value: &str) -> Result<(), crate::ConfigError> {
    match reqwest::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        Ok(_) => Err(crate::ConfigError::new(format!(
            "{key}: must be an http(s) URL"
        ))),
        Err(e) => Err(crate::ConfigError::new(format!("{key}: {e}"))),
    }
}
