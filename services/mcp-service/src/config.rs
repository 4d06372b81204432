//! mcp-service configuration: built-in defaults → TOML file → `MCPAUTH_MCP__…` environment
//! (the older `MCPAUTH__…` still applies where this service knows the key).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use mcpauth_runtime::grpc_client::{DEV_SERVICE_CREDENTIAL, dev_secret_refused};
use mcpauth_runtime::{
    AdminConfig, ConfigError, EnvReport, LogConfig, Secret, ShutdownConfig, TelemetryConfig,
};
use serde::Deserialize;

/// Built-in defaults; every key appears there.
pub const DEFAULTS: &str = include_str!("defaults.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Dev mode (`make run`): the built-in dev credential (`verifier.grpc.credential`) is
    /// accepted, and every listener must be on loopback.
    pub dev_mode: bool,
    /// Accept plaintext `http://` gRPC addresses of non-loopback hosts (`verifier.grpc`,
    /// `vault`, `connect`).
    pub allow_plaintext_grpc: bool,
    /// The conformance tool set (`crate::conformance`): the reference tools the MCP conformance
    /// suite's scenarios call. Test/dev only: refused outside `dev_mode`.
    pub conformance_tools: bool,
    /// Canonical URL of the MCP endpoint (the protected resource identifier).
    pub resource: String,
    /// Authorization servers for the protected-resource metadata.
    pub authorization_servers: Vec<String>,
    /// Minimal scopes for basic use.
    pub scopes_supported: Vec<String>,
    /// Broad scopes and the narrower scopes each implies (besides the `scope.` prefix rule).
    #[serde(default)]
    pub scope_implications: HashMap<String, Vec<String>>,
    pub http: HttpConfig,
    /// The admin listener of `/healthz`, `/readyz`, `/metrics`; empty: on `http.addr`.
    pub admin: AdminConfig,
    /// The drain between SIGTERM and closing the listeners.
    pub shutdown: ShutdownConfig,
    pub log: LogConfig,
    /// Traces (OTLP); off unless `telemetry.otlp_endpoint` is set.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    pub verifier: VerifierConfig,
    pub redis: RedisConfig,
    pub sessions: SessionsConfig,
    /// token-vault (users' upstream tokens); required by `connectors`.
    #[serde(default)]
    pub vault: Option<crate::connectors::config::VaultConfig>,
    /// auth-service's connect service; default: `verifier.grpc`'s address and credential.
    #[serde(default)]
    pub connect: Option<crate::connectors::config::ConnectConfig>,
    /// Upstream providers by name (as token-vault and auth-service name them).
    #[serde(default)]
    pub providers: std::collections::BTreeMap<String, crate::connectors::config::ProviderConfig>,
    /// Declarative HTTP tools that call upstream APIs as the user (docs/connectors.md).
    #[serde(default)]
    pub connectors: Vec<crate::connectors::config::ConnectorConfig>,
}

/// MCP sessions (2025-06-18 / 2025-11-25), shared by all replicas through Redis.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// A session unused this long is forgotten cluster-wide (its next request gets 404).
    pub idle_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    pub workers: usize,
    pub shutdown_timeout_secs: u64,
    pub allowed_origins: Vec<String>,
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    pub url: Secret,
    pub auth_key_prefix: String,
    pub key_prefix: String,
    pub pool_size: usize,
    /// `[redis.tls]` for a `rediss://` URL: CA file and optional client certificate.
    #[serde(default)]
    pub tls: Option<mcpauth_runtime::RedisTls>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VerifierMode {
    IntrospectionGrpc,
    IntrospectionHttp,
    Jwt,
    StaticKeys,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifierConfig {
    pub mode: VerifierMode,
    pub grpc: GrpcIntrospectionConfig,
    #[serde(default)]
    pub http: Option<HttpIntrospectionConfig>,
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    #[serde(default)]
    pub static_keys: Vec<StaticKeyConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcIntrospectionConfig {
    /// auth-service gRPC address, e.g. `http://127.0.0.1:9090`.
    pub addr: String,
    /// This service's credential for auth-service.
    pub credential: Secret,
    pub cache_ttl_ms: u64,
    pub cache_max_entries: usize,
    /// `[verifier.grpc.tls]`: CA (and client certificate for mTLS) for an `https://` addr.
    #[serde(default)]
    pub tls: Option<mcpauth_runtime::GrpcClientTls>,
}

/// `[verifier.http]` and `[verifier.jwt]`: mcpauth-runtime's, shared with token-vault.
pub use mcpauth_runtime::external::{HttpIntrospectionConfig, JwtConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticKeyConfig {
    /// Who the key belongs to (becomes the subject).
    pub name: String,
    /// Hex SHA-256 of the key.
    pub key_sha256: String,
    pub scopes: Vec<String>,
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
            mcpauth_runtime::service_env::MCP.load(DEFAULTS, file, env)?;
        cfg.validate()?;
        Ok((cfg, report))
    }

    /// The gRPC clients this configuration starts: `(section, addr, credential)`.
    fn grpc_clients(&self) -> Vec<(&'static str, &str, &Secret)> {
        let mut out = vec![];
        if self.verifier.mode == VerifierMode::IntrospectionGrpc {
            let g = &self.verifier.grpc;
            out.push(("verifier.grpc", g.addr.as_str(), &g.credential));
        }
        if !self.connectors.is_empty() {
            if let Some(v) = &self.vault {
                out.push(("vault", v.addr.as_str(), &v.credential));
            }
            match &self.connect {
                Some(c) => out.push(("connect", c.addr.as_str(), &c.credential)),
                None => out.push((
                    "verifier.grpc",
                    self.verifier.grpc.addr.as_str(),
                    &self.verifier.grpc.credential,
                )),
            }
        }
        out
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError::new(m));
        self.telemetry.validate()?;
        let admin = self.admin.socket_addr("admin.addr")?;
        if self.conformance_tools && !self.dev_mode {
            return err(
                "conformance_tools: the conformance suite's test tools are refused outside dev mode (dev_mode = true)"
                    .into(),
            );
        }
        if self.dev_mode {
            for (name, addr) in [("http.addr", Some(self.http.addr)), ("admin.addr", admin)] {
                if let Some(addr) = addr
                    && !addr.ip().is_loopback()
                {
                    return err(format!(
                        "{name}: dev mode refuses to listen on non-loopback {addr}"
                    ));
                }
            }
        }
        mcpauth_runtime::redis_client("redis", self.redis.url.expose(), self.redis.tls.as_ref())?;
        match url::Url::parse(&self.resource) {
            Ok(u) if u.fragment().is_none() && !self.resource.ends_with('/') => {}
            _ => {
                return err(
                    "resource: must be an absolute URL without fragment or trailing slash".into(),
                );
            }
        }
        if self.authorization_servers.is_empty() {
            return err("authorization_servers: at least one is required".into());
        }
        if self.scopes_supported.iter().any(|s| s == "offline_access") {
            return err("scopes_supported: must not contain offline_access".into());
        }
        match self.verifier.mode {
            VerifierMode::IntrospectionHttp if self.verifier.http.is_none() => {
                return err("verifier.http: required for mode introspection_http".into());
            }
            VerifierMode::Jwt if self.verifier.jwt.is_none() => {
                return err("verifier.jwt: required for mode jwt".into());
            }
            VerifierMode::StaticKeys if self.verifier.static_keys.is_empty() => {
                return err(
                    "verifier.static_keys: at least one key is required for mode static_keys"
                        .into(),
                );
            }
            _ => {}
        }
        for (i, k) in self.verifier.static_keys.iter().enumerate() {
            if k.key_sha256.len() != 64 || !k.key_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return err(format!(
                    "verifier.static_keys[{i}].key_sha256: must be 64 hex characters"
                ));
            }
        }
        crate::connectors::config::validate(&self.connectors, &self.providers, self.vault.as_ref())
            .map_err(ConfigError::new)?;
        // The gRPC clients this configuration starts: their TLS files are read and checked now.
        if self.verifier.mode == VerifierMode::IntrospectionGrpc {
            let g = &self.verifier.grpc;
            mcpauth_runtime::grpc_endpoint("verifier.grpc", &g.addr, g.tls.as_ref())?;
        }
        if !self.connectors.is_empty() {
            if let Some(v) = &self.vault {
                mcpauth_runtime::grpc_endpoint("vault", &v.addr, v.tls.as_ref())?;
            }
            let (section, addr, tls) = self.connect_target();
            mcpauth_runtime::grpc_endpoint(section, addr, tls)?;
        }
        for (section, addr, credential) in self.grpc_clients() {
            // The built-in default credential is public: only dev mode may use it.
            if !self.dev_mode && credential.expose() == DEV_SERVICE_CREDENTIAL {
                return Err(dev_secret_refused(
                    &format!("{section}.credential"),
                    "dev-service-credential",
                ));
            }
            mcpauth_runtime::grpc_plaintext_check(section, addr, self.allow_plaintext_grpc)?;
        }
        Ok(())
    }

    /// auth-service's connect service: `[connect]`, or else `verifier.grpc`'s address and TLS
    /// (with the name of the section that gave them, for errors).
    pub fn connect_target(&self) -> (&'static str, &str, Option<&mcpauth_runtime::GrpcClientTls>) {
        match &self.connect {
            Some(c) => ("connect", &c.addr, c.tls.as_ref()),
            None => (
                "verifier.grpc",
                &self.verifier.grpc.addr,
                self.verifier.grpc.tls.as_ref(),
            ),
        }
    }

    /// The listener `mcp-service healthcheck` probes for `/readyz`: the admin listener when
    /// there is one, else the public HTTP listener.
    pub fn health_addr(&self) -> SocketAddr {
        self.admin
            .socket_addr("admin.addr")
            .ok()
            .flatten()
            .unwrap_or(self.http.addr)
    }

    /// Path of the MCP endpoint (from `resource`).
    pub fn mcp_path(&self) -> String {
        url::Url::parse(&self.resource)
            .map(|u| u.path().to_owned())
            .unwrap_or_else(|_| "/mcp".into())
    }

    /// The protected-resource metadata URL (RFC 9728 §3.1, path-inserted).
    pub fn metadata_url(&self) -> String {
        let u = url::Url::parse(&self.resource).expect("validated");
        let origin = u.origin().ascii_serialization();
        let path = u.path().trim_end_matches('/');
        format!("{origin}/.well-known/oauth-protected-resource{path}")
    }
}
