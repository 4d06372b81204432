//! token-vault configuration: built-in defaults → TOML file → `MCPAUTH_VAULT__…` environment
//! (the older `MCPAUTH__…` still applies where this service knows the key).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;

use mcpauth_runtime::grpc_client::{
    DEV_SERVICE_CREDENTIAL, DEV_SERVICE_CREDENTIAL_SHA256, dev_secret_refused,
};
use mcpauth_runtime::{
    AdminConfig, ConfigError, EnvReport, LogConfig, Secret, ShutdownConfig, TelemetryConfig,
};
use serde::Deserialize;

/// Built-in defaults; every key a deployment may set appears there.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// The public encryption key of `config/token-vault.dev.toml` (32 bytes of 0x64, base64).
pub const DEV_ENCRYPTION_KEY: &str = "ZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGQ=";

/// What `token-vault migrate` reads: the database, logs and traces. Every other section may be
/// absent or incomplete (a migration Job has no encryption keys) and is not looked at.
#[derive(Debug, Clone, Deserialize)]
pub struct MigrateConfig {
    pub database: DatabaseConfig,
    pub log: LogConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

impl MigrateConfig {
    /// Loads the sections `migrate` needs from the same file and environment as [`Config`].
    pub fn load_reporting(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<(Self, EnvReport), ConfigError> {
        // Which older-prefix variables belong to this service is decided by the whole Config.
        let (cfg, report) = mcpauth_runtime::service_env::VAULT
            .load_part::<MigrateConfig, Config>(DEFAULTS, file, env)?;
        cfg.telemetry.validate()?;
        Ok((cfg, report))
    }
}

/// The whole service configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Dev mode (`make run`): the public dev key and credential of `config/token-vault.dev.toml`
    /// are accepted, and every listener must be on loopback.
    pub dev_mode: bool,
    /// Accept a plaintext `http://` `introspection.addr` on a non-loopback host.
    pub allow_plaintext_grpc: bool,
    pub grpc: GrpcConfig,
    /// The older spelling of `admin.addr`.
    pub http: HttpConfig,
    /// The admin listener of `/healthz`, `/readyz`, `/metrics`; empty: none.
    pub admin: AdminConfig,
    /// The drain between SIGTERM and closing the gRPC listener.
    pub shutdown: ShutdownConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub log: LogConfig,
    /// Traces (OTLP); off unless `telemetry.otlp_endpoint` is set.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// How the vault verifies the user's MCP access token (and so knows the user).
    pub verifier: VerifierConfig,
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
    /// Hex SHA-256 of the caller's bearer credential, inline or `file:/path`.
    #[serde(deserialize_with = "mcpauth_runtime::string_or_file")]
    pub credential_sha256: String,
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The older spelling of `admin.addr` (`/metrics`, `/healthz`, `/readyz`); empty = unset.
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

/// Who issues the MCP access tokens the vault is shown: the same modes as mcp-service's
/// `verifier.mode` (`static_keys` aside: a static key is no user).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VerifierMode {
    /// auth-service's gRPC introspection (`[introspection]`).
    IntrospectionGrpc,
    /// RFC 7662 introspection at an external authorization server (`[verifier.http]`).
    IntrospectionHttp,
    /// RFC 9068 JWT access tokens of an external authorization server (`[verifier.jwt]`).
    Jwt,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifierConfig {
    pub mode: VerifierMode,
    /// Key users by `<iss>#<sub>` rather than `sub` (docs/token-vault.md "Users").
    pub qualify_subject_with_issuer: bool,
    /// MCP resources (audiences) whose tokens are accepted; empty: `introspection.accepted_resources`.
    #[serde(default)]
    pub accepted_resources: Vec<String>,
    #[serde(default)]
    pub http: Option<mcpauth_runtime::external::HttpIntrospectionConfig>,
    #[serde(default)]
    pub jwt: Option<mcpauth_runtime::external::JwtConfig>,
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
        Self::load_reporting(file, env).map(|(c, _)| c)
    }

    /// [`Config::load`], and what the environment contributed under the older prefix.
    pub fn load_reporting(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<(Self, EnvReport), ConfigError> {
        let (cfg, report): (Config, _) =
            mcpauth_runtime::service_env::VAULT.load(DEFAULTS, file, env)?;
        cfg.validate()?;
        Ok((cfg, report))
    }

    /// The admin listener: `admin.addr`, or the older `http.addr`; `None` when neither is set.
    pub fn admin_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        match (self.admin.addr.as_str(), self.http.addr.as_str()) {
            ("", "") => Ok(None),
            (a, h) if !a.is_empty() && !h.is_empty() && a != h => Err(ConfigError::new(
                "http.addr: the older spelling of admin.addr; give the address once, as admin.addr",
            )),
            ("", h) => mcpauth_runtime::ops::parse_listen_addr("http.addr", h),
            (a, _) => mcpauth_runtime::ops::parse_listen_addr("admin.addr", a),
        }
    }

    /// Outside dev mode, the public key and credential of `config/token-vault.dev.toml`.
    fn refuse_dev_secrets(&self) -> Result<(), ConfigError> {
        for (i, k) in self.encryption.keys.iter().enumerate() {
            if k.secret.expose().trim() == DEV_ENCRYPTION_KEY {
                return Err(dev_secret_refused(
                    &format!("encryption.keys[{i}].secret"),
                    "dev encryption key",
                ));
            }
        }
        for (i, c) in self.grpc.callers.iter().enumerate() {
            if c.credential_sha256
                .eq_ignore_ascii_case(DEV_SERVICE_CREDENTIAL_SHA256)
            {
                return Err(dev_secret_refused(
                    &format!("grpc.callers[{i}].credential_sha256"),
                    "dev-service-credential",
                ));
            }
        }
        if self.verifier.mode == VerifierMode::IntrospectionGrpc
            && self.introspection.credential.expose() == DEV_SERVICE_CREDENTIAL
        {
            return Err(dev_secret_refused(
                "introspection.credential",
                "dev-service-credential",
            ));
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError::new(m));
        self.telemetry.validate()?;
        let admin = self.admin_addr()?;
        if self.dev_mode {
            for (name, addr) in [("grpc.addr", Some(self.grpc.addr)), ("admin.addr", admin)] {
                if let Some(addr) = addr
                    && !addr.ip().is_loopback()
                {
                    return err(format!(
                        "{name}: dev mode refuses to listen on non-loopback {addr}"
                    ));
                }
            }
        } else {
            self.refuse_dev_secrets()?;
        }
        mcpauth_runtime::redis_client("redis", self.redis.url.expose(), self.redis.tls.as_ref())?;
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
        self.validate_verifier()?;
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
        Ok(())
    }

    /// The audiences whose tokens the vault accepts: `verifier.accepted_resources`, or else
    /// `introspection.accepted_resources`.
    pub fn accepted_resources(&self) -> &[String] {
        if self.verifier.accepted_resources.is_empty() {
            &self.introspection.accepted_resources
        } else {
            &self.verifier.accepted_resources
        }
    }

    /// The verifier of the configured mode: its section present and complete, its addresses
    /// and TLS files checked now rather than at first use.
    fn validate_verifier(&self) -> Result<(), ConfigError> {
        let err = |m: &str| Err(ConfigError::new(m));
        if self.accepted_resources().is_empty() {
            return err(
                "introspection.accepted_resources: at least one resource is required (or verifier.accepted_resources)",
            );
        }
        match self.verifier.mode {
            VerifierMode::IntrospectionGrpc => {
                mcpauth_runtime::grpc_plaintext_check(
                    "introspection",
                    &self.introspection.addr,
                    self.allow_plaintext_grpc,
                )?;
                mcpauth_runtime::grpc_endpoint(
                    "introspection",
                    &self.introspection.addr,
                    self.introspection.tls.as_ref(),
                )?;
                if self.introspection.credential.expose().is_empty() {
                    return err(
                        "introspection.credential: required (the vault's credential at auth-service)",
                    );
                }
                url::Url::parse(&self.introspection.addr)
                    .map_err(|e| ConfigError::new(format!("introspection.addr: {e}")))?;
            }
            // The verifiers' own checks (URLs, algorithms), each one line naming the key.
            VerifierMode::IntrospectionHttp => {
                let Some(h) = &self.verifier.http else {
                    return err("verifier.http: required for mode introspection_http");
                };
                mcpauth_runtime::external::HttpIntrospection::<
                    crate::introspect::User,
                    crate::introspect::IntrospectError,
                >::new(
                    "verifier.http",
                    h,
                    self.accepted_resources().to_vec(),
                    1,
                    "unused",
                )?;
            }
            VerifierMode::Jwt => {
                let Some(j) = &self.verifier.jwt else {
                    return err("verifier.jwt: required for mode jwt");
                };
                mcpauth_runtime::external::JwtVerifier::new(
                    "verifier.jwt",
                    j,
                    self.accepted_resources().to_vec(),
                )?;
            }
        }
        Ok(())
    }

    /// The listener `token-vault healthcheck` probes for `/readyz`: the admin listener
    /// (`admin.addr`, or the older `http.addr`; gRPC has no `/readyz`), an error when there is none.
    pub fn health_addr(&self) -> Result<SocketAddr, String> {
        match self.admin_addr() {
            Ok(Some(addr)) => Ok(addr),
            Ok(None) => {
                Err("no admin listener to probe: set admin.addr (e.g. 0.0.0.0:8182)".into())
            }
            Err(e) => Err(e.to_string()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid configuration with `extra` appended, loaded from a temporary file.
    fn load(extra: &str) -> Result<Config, String> {
        let toml = format!(
            "[introspection]\ncredential = \"c\"\naccepted_resources = [\"http://localhost:8081/mcp\"]\n\
             [encryption]\ncurrent_key = \"k1\"\n[[encryption.keys]]\nid = \"k1\"\nsecret = \"{}\"\n{extra}",
            crate::crypto::generate_key()
        );
        let path = std::env::temp_dir().join(format!("mcpauth-vault-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, toml).unwrap();
        let r = Config::load(Some(&path), &HashMap::new()).map_err(|e| e.to_string());
        let _ = std::fs::remove_file(&path);
        r
    }

    #[test]
    fn caller_hash_can_come_from_a_file() {
        let hash_file =
            std::env::temp_dir().join(format!("mcpauth-vault-caller-{}", uuid::Uuid::new_v4()));
        std::fs::write(&hash_file, format!("{}\n", "cd".repeat(32))).unwrap();
        let callers = format!(
            "[[grpc.callers]]\nname = \"auth-service\"\npermissions = [\"put\"]\ncredential_sha256 = \"file:{}\"\n",
            hash_file.display()
        );
        let cfg = load(&callers).unwrap();
        assert_eq!(cfg.grpc.callers[0].credential_sha256, "cd".repeat(32));
        std::fs::write(&hash_file, "short\n").unwrap();
        let e = load(&callers).unwrap_err();
        assert!(
            e.contains("grpc.callers[0].credential_sha256: must be 64 hex"),
            "{e}"
        );
        std::fs::remove_file(&hash_file).unwrap();
        let e = load(&callers).unwrap_err();
        assert!(e.contains("cannot read file"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn healthcheck_probes_the_admin_listener() {
        let cfg = load("[admin]\naddr = \"0.0.0.0:8182\"\n").unwrap();
        assert_eq!(cfg.health_addr(), Ok("0.0.0.0:8182".parse().unwrap()));
        // The older spelling still names the same listener.
        let cfg = load("[http]\naddr = \"0.0.0.0:8183\"\n").unwrap();
        assert_eq!(cfg.health_addr(), Ok("0.0.0.0:8183".parse().unwrap()));
        let e = load("").unwrap().health_addr().unwrap_err();
        assert!(e.contains("set admin.addr"), "{e}");
    }
}
