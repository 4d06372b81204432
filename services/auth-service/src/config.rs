//! auth-service configuration: built-in defaults → TOML file → `MCPAUTH__…` environment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use mcpauth_runtime::{ConfigError, LogConfig, Secret};
use serde::Deserialize;

/// Built-in defaults; every key a deployment may set appears here (docs/configuration.md).
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// The whole service configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The issuer identifier, byte-identical everywhere (metadata, `iss`, PRM). No trailing slash.
    pub issuer: String,
    /// Dev mode: the dev login, an ephemeral token key when none is configured. Refused unless
    /// every listener is on loopback.
    pub dev_mode: bool,
    pub http: HttpConfig,
    pub grpc: GrpcConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub log: LogConfig,
    pub login: LoginConfig,
    pub tokens: TokenConfig,
    pub registration: RegistrationConfig,
    pub cimd: CimdConfig,
    pub rate_limit: RateLimitConfig,
    /// Protected resources tokens may be issued for (RFC 8707 `resource` values).
    pub resources: Vec<ResourceConfig>,
    /// Pre-registered clients.
    #[serde(default)]
    pub clients: Vec<StaticClientConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    /// actix workers; 0 = one per core.
    pub workers: usize,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    pub addr: SocketAddr,
    /// Services allowed to call the gRPC API, each with the SHA-256 (hex) of its credential.
    #[serde(default)]
    pub callers: Vec<GrpcCaller>,
    /// TLS for the gRPC listener; with `client_ca_file`, callers must also present a client
    /// certificate signed by that CA (mTLS) besides their credential.
    #[serde(default)]
    pub tls: Option<GrpcTlsConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcTlsConfig {
    /// PEM certificate chain of the server.
    pub cert_file: std::path::PathBuf,
    /// PEM private key of the server.
    pub key_file: std::path::PathBuf,
    /// PEM CA bundle that client certificates must chain to (enables mTLS).
    #[serde(default)]
    pub client_ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcCaller {
    pub name: String,
    /// Hex SHA-256 of the caller's bearer credential (`auth-service hash-secret`).
    pub credential_sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: Secret,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    pub url: Secret,
    /// Prefix of every key and channel, so that several deployments (or tests) share one Redis.
    pub key_prefix: String,
    pub pool_size: usize,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LoginProviderKind {
    /// A fixed user, no password, auto-consent (development only).
    Dev,
    /// Users from configuration with argon2 password hashes.
    Local,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    pub provider: LoginProviderKind,
    /// Username of the dev user.
    pub dev_user: String,
    #[serde(default)]
    pub users: Vec<LocalUserConfig>,
    /// Browser session lifetime after a login.
    pub session_ttl_secs: u64,
    /// How long a user has to finish login and consent.
    pub pending_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalUserConfig {
    pub username: String,
    /// PHC string from `auth-service hash-password`.
    pub password_hash: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    pub code_ttl_secs: u64,
    /// See `domain::refresh`: how long a just-rotated refresh token stays usable.
    pub refresh_grace_secs: i64,
    /// Id of the key that seals new tokens. Empty in dev mode means an ephemeral key.
    pub current_key: String,
    #[serde(default)]
    pub keys: Vec<TokenKeyConfig>,
    /// How often each replica re-reads the revocation list from Postgres (safety net beside
    /// the Redis fan-out).
    pub revocation_resync_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenKeyConfig {
    pub id: String,
    /// ≥ 32 bytes, base64. `file:/path` reads it from a mounted secret.
    pub secret: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfig {
    /// Whether anyone may register a client (RFC 7591 open registration).
    pub open: bool,
    /// Non-loopback redirect hosts allowed at registration; empty = any https host.
    pub allowed_redirect_hosts: Vec<String>,
    /// Cap on dynamically registered clients.
    pub max_clients: i64,
    /// Dynamic clients never used within this many seconds are removed; 0 disables.
    pub unused_client_ttl_secs: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CimdConfig {
    pub enabled: bool,
    pub timeout_ms: u64,
    pub max_bytes: usize,
    /// Upper bound on caching a document, whatever its headers say.
    pub max_cache_secs: u64,
    /// TESTS ONLY: also fetch `http://` documents from loopback addresses.
    pub dangerous_allow_loopback: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub window_secs: u64,
    /// Requests per window and client IP.
    pub register: u64,
    pub token: u64,
    pub authorize: u64,
    /// Password attempts (`POST /login`) per window and client IP.
    pub login: u64,
    /// Take the client IP from the left-most `X-Forwarded-For` entry (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// The resource identifier, exactly as the resource server's PRM `resource` says it.
    pub uri: String,
    /// Scopes this resource understands.
    pub scopes: Vec<String>,
    /// Scopes granted when a request names none.
    #[serde(default)]
    pub default_scopes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticClientConfig {
    pub client_id: String,
    #[serde(default)]
    pub client_name: Option<String>,
    /// Hex SHA-256 of the secret; absent for a public client.
    #[serde(default)]
    pub client_secret_sha256: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    #[serde(default)]
    pub scope: Option<String>,
}

impl Config {
    /// Loads and checks the configuration.
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let cfg: Config = mcpauth_runtime::load_config(DEFAULTS, file, env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what serde cannot: one line naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError::new(m));
        let issuer = url::Url::parse(&self.issuer);
        match issuer {
            Err(e) => return err(format!("issuer: {e}")),
            Ok(u) => {
                if self.issuer.ends_with('/') {
                    return err("issuer: must not end with '/'".into());
                }
                if u.query().is_some() || u.fragment().is_some() {
                    return err("issuer: must not have a query or fragment".into());
                }
                let loopback = u
                    .host()
                    .is_some_and(|h| crate::domain::redirect_uri::is_loopback_host(&h));
                if u.scheme() != "https" && !(u.scheme() == "http" && loopback) {
                    return err("issuer: must be https (http only on loopback)".into());
                }
            }
        }
        if self.resources.is_empty() {
            return err("resources: at least one protected resource is required".into());
        }
        for (i, r) in self.resources.iter().enumerate() {
            if crate::domain::resource::canonicalize(&r.uri).is_none() {
                return err(format!(
                    "resources[{i}].uri: not an absolute URI without fragment"
                ));
            }
            for s in r.default_scopes.iter() {
                if !r.scopes.contains(s) {
                    return err(format!(
                        "resources[{i}].default_scopes: {s:?} is not in scopes"
                    ));
                }
            }
        }
        if let Some(tls) = &self.grpc.tls {
            for (key, path) in [
                ("grpc.tls.cert_file", Some(&tls.cert_file)),
                ("grpc.tls.key_file", Some(&tls.key_file)),
                ("grpc.tls.client_ca_file", tls.client_ca_file.as_ref()),
            ] {
                if let Some(p) = path
                    && !p.is_file()
                {
                    return err(format!("{key}: {} is not a readable file", p.display()));
                }
            }
        }
        for (i, c) in self.grpc.callers.iter().enumerate() {
            if crate::domain::token::unhex(&c.credential_sha256).is_none_or(|h| h.len() != 32) {
                return err(format!(
                    "grpc.callers[{i}].credential_sha256: must be 64 hex characters"
                ));
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            if let Some(h) = &c.client_secret_sha256
                && crate::domain::token::unhex(h).is_none_or(|h| h.len() != 32)
            {
                return err(format!(
                    "clients[{i}].client_secret_sha256: must be 64 hex characters"
                ));
            }
            if !["none", "client_secret_basic", "client_secret_post"]
                .contains(&c.token_endpoint_auth_method.as_str())
            {
                return err(format!(
                    "clients[{i}].token_endpoint_auth_method: unsupported"
                ));
            }
            if (c.token_endpoint_auth_method == "none") != c.client_secret_sha256.is_none() {
                return err(format!(
                    "clients[{i}]: a client_secret_sha256 is required exactly when token_endpoint_auth_method is not none"
                ));
            }
        }
        if self.tokens.access_ttl_secs <= 0
            || self.tokens.refresh_ttl_secs <= 0
            || self.tokens.code_ttl_secs == 0
        {
            return err("tokens: lifetimes must be positive".into());
        }
        if self.tokens.keys.is_empty() && !self.dev_mode {
            return err("tokens.keys: at least one key is required outside dev mode".into());
        }
        if self.login.provider == LoginProviderKind::Dev && !self.dev_mode {
            return err("login.provider: dev login requires dev_mode = true".into());
        }
        if self.dev_mode {
            for (name, addr) in [("http.addr", self.http.addr), ("grpc.addr", self.grpc.addr)] {
                if !addr.ip().is_loopback() {
                    return err(format!(
                        "{name}: dev mode refuses to listen on non-loopback {addr}"
                    ));
                }
            }
        }
        if self.login.provider == LoginProviderKind::Local && self.login.users.is_empty() {
            return err("login.users: the local provider needs at least one user".into());
        }
        Ok(())
    }

    /// The configured resource identifiers.
    pub fn resource_uris(&self) -> Vec<String> {
        self.resources.iter().map(|r| r.uri.clone()).collect()
    }

    /// Whether cookies get the `Secure` attribute.
    pub fn https(&self) -> bool {
        self.issuer.starts_with("https://")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_load_in_dev_mode() {
        let cfg = Config::load(None, &env(&[("MCPAUTH__DEV_MODE", "true")])).unwrap();
        assert_eq!(cfg.issuer, "http://127.0.0.1:8080");
        assert_eq!(cfg.grpc.addr.port(), 9090);
    }

    #[test]
    fn production_needs_keys() {
        let e = Config::load(None, &env(&[("MCPAUTH__LOGIN__PROVIDER", "local")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokens.keys") || e.contains("login"), "{e}");
    }

    #[test]
    fn dev_mode_refuses_public_listener() {
        let e = Config::load(
            None,
            &env(&[
                ("MCPAUTH__DEV_MODE", "true"),
                ("MCPAUTH__HTTP__ADDR", "0.0.0.0:8080"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("http.addr"), "{e}");
    }

    #[test]
    fn trailing_slash_issuer_is_refused() {
        let e = Config::load(
            None,
            &env(&[
                ("MCPAUTH__DEV_MODE", "true"),
                ("MCPAUTH__ISSUER", "http://127.0.0.1:8080/"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("issuer"), "{e}");
    }

    #[test]
    fn bad_number_names_key() {
        let e = Config::load(
            None,
            &env(&[
                ("MCPAUTH__DEV_MODE", "true"),
                ("MCPAUTH__TOKENS__ACCESS_TTL_SECS", "soon"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tokens.access_ttl_secs"), "{e}");
    }
}
