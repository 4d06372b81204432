//! token-vault configuration: built-in defaults → TOML file → `MCPAUTH__…` environment.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;

use mcpauth_runtime::{ConfigError, LogConfig, Secret, TelemetryConfig};
use serde::Deserialize;

/// Built-in defaults; every key a deployment may set appears there.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// The whole service configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub grpc: GrpcConfig,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub log: LogConfig,
    /// Traces (OTLP); off unless `telemetry.otlp_endpoint` is set.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    pub introspection: IntrospectionConfig,
    pub encryption: EncryptionConfig,
    pub refresh: RefreshConfig,
    /// Upstream providers by name.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    pub addr: SocketAddr,
    #[serde(default)]
    pub callers: Vec<Caller>,
    #[serde(default)]
    pub tls: Option<GrpcTlsConfig>,
}

/// TLS of the gRPC listener; with `client_ca_file`, callers also need a client certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcTlsConfig {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    #[serde(default)]
    pub client_ca_file: Option<std::path::PathBuf>,
}

/// What a caller may do.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Store a credential for a user named in the request (auth-service after a login/connect).
    Put,
    /// Read or delete with the user's own MCP access token.
    Get,
    /// List or delete a named user's connections.
    Admin,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caller {
    pub name: String,
    /// Hex SHA-256 of the caller's bearer credential.
    pub credential_sha256: String,
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `/metrics`, `/healthz`, `/readyz`; empty = no HTTP listener.
    pub addr: String,
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
    pub key_prefix: String,
    pub auth_key_prefix: String,
    pub pool_size: usize,
    /// `[redis.tls]` for a `rediss://` URL: CA file and optional client certificate.
    #[serde(default)]
    pub tls: Option<mcpauth_runtime::RedisTls>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// auth-service gRPC address, e.g. `http://127.0.0.1:9090`.
    pub addr: String,
    /// The vault's credential at auth-service.
    pub credential: Secret,
    /// MCP resources (audiences) whose tokens are accepted.
    pub accepted_resources: Vec<String>,
    pub cache_ttl_ms: u64,
    pub cache_max_entries: usize,
    /// `[introspection.tls]`: CA (and client certificate for mTLS) for an `https://` addr.
    #[serde(default)]
    pub tls: Option<mcpauth_runtime::GrpcClientTls>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    pub current_key: String,
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub id: String,
    /// base64 of 32 bytes; `file:/path` reads it from a mounted secret.
    pub secret: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshConfig {
    pub buffer_secs: i64,
    pub upstream_timeout_ms: u64,
    pub retries: u32,
    pub retry_backoff_ms: u64,
    pub lock_ttl_ms: u64,
    pub wait_ms: u64,
}

/// How the vault authenticates at a provider's token endpoint.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub token_endpoint: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<Secret>,
    #[serde(default)]
    pub token_endpoint_auth_method: TokenEndpointAuth,
    /// RFC 7009 revocation endpoint, called on `DeleteCredential`.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
}

impl Config {
    /// Loads and validates the configuration (one-line errors naming the key).
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let cfg: Config = mcpauth_runtime::load_config(DEFAULTS, file, env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError::new(m));
        self.telemetry.validate()?;
        mcpauth_runtime::redis_client("redis", self.redis.url.expose(), self.redis.tls.as_ref())?;
        // The introspection client's address and TLS files are checked now, not at first use.
        mcpauth_runtime::grpc_endpoint(
            "introspection",
            &self.introspection.addr,
            self.introspection.tls.as_ref(),
        )?;
        for (i, c) in self.grpc.callers.iter().enumerate() {
            if crate::crypto::unhex(&c.credential_sha256).is_none_or(|h| h.len() != 32) {
                return err(format!(
                    "grpc.callers[{i}].credential_sha256: must be 64 hex characters"
                ));
            }
            if c.permissions.is_empty() {
                return err(format!("grpc.callers[{i}].permissions: must not be empty"));
            }
        }
        if self.introspection.accepted_resources.is_empty() {
            return err(
                "introspection.accepted_resources: at least one resource is required".into(),
            );
        }
        if self.introspection.credential.expose().is_empty() {
            return err(
                "introspection.credential: required (the vault's credential at auth-service)"
                    .into(),
            );
        }
        url::Url::parse(&self.introspection.addr)
            .map_err(|e| ConfigError::new(format!("introspection.addr: {e}")))?;
        self.key_ring()?;
        if self.refresh.retry_backoff_ms == 0 || self.refresh.lock_ttl_ms < 1000 {
            return err(
                "refresh.lock_ttl_ms: must be at least 1000 and retry_backoff_ms above 0".into(),
            );
        }
        if self.refresh.buffer_secs < 0 {
            return err("refresh.buffer_secs: must not be negative".into());
        }
        for (name, p) in &self.providers {
            if !valid_provider_name(name) {
                return err(format!(
                    "providers.{name}: names are 1-64 characters of a-z, 0-9, '-', '_'"
                ));
            }
            for (key, value) in [
                ("token_endpoint", Some(&p.token_endpoint)),
                ("revocation_endpoint", p.revocation_endpoint.as_ref()),
            ] {
                if let Some(v) = value {
                    let u = url::Url::parse(v)
                        .map_err(|e| ConfigError::new(format!("providers.{name}.{key}: {e}")))?;
                    if !matches!(u.scheme(), "https" | "http") {
                        return err(format!("providers.{name}.{key}: must be an http(s) URL"));
                    }
                }
            }
            if p.token_endpoint_auth_method != TokenEndpointAuth::None
                && p.client_secret
                    .as_ref()
                    .is_none_or(|s| s.expose().is_empty())
            {
                return err(format!(
                    "providers.{name}.client_secret: required unless token_endpoint_auth_method = \"none\""
                ));
            }
        }
        if !self.http.addr.is_empty() {
            self.http
                .addr
                .parse::<SocketAddr>()
                .map_err(|e| ConfigError::new(format!("http.addr: {e}")))?;
        }
        Ok(())
    }

    /// The key ring from `encryption`.
    pub fn key_ring(&self) -> Result<crate::crypto::KeyRing, ConfigError> {
        let pairs: Vec<(String, String)> = self
            .encryption
            .keys
            .iter()
            .map(|k| (k.id.clone(), k.secret.expose().to_owned()))
            .collect();
        crate::crypto::KeyRing::from_base64(&pairs, &self.encryption.current_key)
            .map_err(|e| ConfigError::new(format!("encryption: {e}")))
    }
}

/// Provider names appear in keys, events and logs: keep them plain.
pub fn valid_provider_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
