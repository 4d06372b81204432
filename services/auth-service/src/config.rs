//! auth-service configuration: built-in defaults → TOML file → `MCPAUTH_AUTH__…` environment
//! (the older `MCPAUTH__…` still applies where this service knows the key).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use mcpauth_runtime::grpc_client::{DEV_SERVICE_CREDENTIAL, DEV_SERVICE_CREDENTIAL_SHA256};
use mcpauth_runtime::{
    AdminConfig, ConfigError, EnvReport, LogConfig, Secret, ShutdownConfig, TelemetryConfig,
};
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
    /// Accept plaintext `http://` gRPC addresses of non-loopback hosts (`vault.addr`).
    pub allow_plaintext_grpc: bool,
    pub http: HttpConfig,
    /// The admin listener of `/healthz`, `/readyz`, `/metrics`; empty: on `http.addr`.
    pub admin: AdminConfig,
    /// The drain between SIGTERM and closing the listeners.
    pub shutdown: ShutdownConfig,
    pub grpc: GrpcConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub log: LogConfig,
    /// Traces (OTLP); off unless `telemetry.otlp_endpoint` is set.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    pub login: LoginConfig,
    pub tokens: TokenConfig,
    /// RFC 8628 device authorization (`http::device`).
    pub device: DeviceConfig,
    pub registration: RegistrationConfig,
    pub cimd: CimdConfig,
    pub rate_limit: RateLimitConfig,
    /// Protected resources tokens may be issued for (RFC 8707 `resource` values).
    pub resources: Vec<ResourceConfig>,
    /// Who may use RFC 7662 `POST /introspect` beyond the resources' own introspection clients.
    #[serde(default)]
    pub introspection: IntrospectionConfig,
    /// RFC 8693 token exchange: which clients may exchange which tokens for which resources.
    #[serde(default)]
    pub token_exchange: TokenExchangeConfig,
    /// Pre-registered clients.
    #[serde(default)]
    pub clients: Vec<StaticClientConfig>,
    /// Upstream identity and API providers (login delegation and the connect flow).
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// token-vault, where upstream tokens are stored. Required once a provider is configured.
    #[serde(default)]
    pub vault: Option<VaultConfig>,
}

/// What `auth-service migrate` reads: the database, logs and traces. Every other section may be
/// absent or incomplete (a migration Job has no signing keys) and is not looked at.
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
        let (cfg, report) = mcpauth_runtime::service_env::AUTH
            .load_part::<MigrateConfig, Config>(DEFAULTS, file, env)?;
        cfg.telemetry.validate()?;
        Ok((cfg, report))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    /// actix workers; 0 = one per core.
    pub workers: usize,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_timeout_secs: u64,
    /// Networks (CIDR blocks or single addresses) of the reverse proxies in front of the service.
    /// Only a peer in one of them may name the client in `client_ip_header` (`crate::proxy`).
    /// A list, or one string of comma-separated entries (environment variables).
    #[serde(deserialize_with = "list_or_csv")]
    pub trusted_proxies: Vec<String>,
    /// The header the trusted proxies write: `x-forwarded-for` or `forwarded` (RFC 7239).
    pub client_ip_header: String,
    /// Parsed `trusted_proxies` and `client_ip_header`, set by [`Config::load`].
    #[serde(skip)]
    pub proxies: crate::proxy::TrustedProxies,
}

/// A list of strings, or one string of comma-separated entries.
fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match ListOrCsv::deserialize(d)? {
        ListOrCsv::List(l) => l,
        ListOrCsv::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
    })
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
    /// Hex SHA-256 of the caller's bearer credential (`auth-service hash-secret`), inline or
    /// `file:/path` (as `init-secrets` writes it).
    #[serde(deserialize_with = "mcpauth_runtime::string_or_file")]
    pub credential_sha256: String,
    /// The RPCs this caller may use (`introspect`, `start_connect`, `admin`; see
    /// [`GrpcPermission`]). Required outside dev mode; in dev mode a caller without the key gets
    /// `introspect` and `start_connect` (never `admin`).
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    /// The audiences (configured resource URIs) of the user access tokens this caller may
    /// present to `StartConnect`. Required with `start_connect` outside dev mode; in dev mode
    /// it defaults to every configured resource. When set, `Introspect` also describes only
    /// tokens of these audiences to this caller (others answer `active = false`).
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    /// OAuth clients whose refresh tokens `Introspect` may describe to this caller (a service
    /// acting for those clients; `*`: every client's, for tests and debugging tools). Empty by
    /// default: HTTP introspection describes a refresh token to its own client only, and a
    /// service credential is no client.
    #[serde(default)]
    pub refresh_token_clients: Vec<String>,
}

/// What a gRPC caller of auth-service may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrpcPermission {
    /// `TokenIntrospection.Introspect` (mcp-service, token-vault, internal resource servers).
    Introspect,
    /// `UpstreamConnect.StartConnect` (mcp-service).
    StartConnect,
    /// `UserAdmin.*`: incident response (an operator's tooling only).
    Admin,
    /// `TokenIntrospection.Exchange` (RFC 8693 token exchange for internal services), within
    /// `[[token_exchange.policies]]` naming the caller.
    Exchange,
}

impl GrpcPermission {
    pub const ALL: [GrpcPermission; 4] = [
        GrpcPermission::Introspect,
        GrpcPermission::StartConnect,
        GrpcPermission::Admin,
        GrpcPermission::Exchange,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GrpcPermission::Introspect => "introspect",
            GrpcPermission::StartConnect => "start_connect",
            GrpcPermission::Admin => "admin",
            GrpcPermission::Exchange => "exchange",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }
}

impl GrpcCaller {
    /// The caller's permissions (the configuration was validated: unknown names are gone).
    pub fn granted(&self, dev_mode: bool) -> Vec<GrpcPermission> {
        match &self.permissions {
            Some(p) => p.iter().filter_map(|p| GrpcPermission::parse(p)).collect(),
            None if dev_mode => vec![GrpcPermission::Introspect, GrpcPermission::StartConnect],
            None => Vec::new(),
        }
    }

    /// The audiences accepted from this caller by `StartConnect`.
    pub fn start_connect_resources(&self, all: &[String]) -> Vec<String> {
        self.resources.clone().unwrap_or_else(|| all.to_vec())
    }
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
    /// `[redis.tls]` for a `rediss://` URL: CA file and optional client certificate.
    #[serde(default)]
    pub tls: Option<mcpauth_runtime::RedisTls>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LoginProviderKind {
    /// A fixed user, no password, auto-consent (development only).
    Dev,
    /// Users from configuration with argon2 password hashes.
    Local,
    /// Delegated to `login.upstream_provider` (OpenID Connect or plain OAuth 2.0).
    Upstream,
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
    /// With `provider = "upstream"`: the name of the `upstream.providers` entry users log in with.
    #[serde(default)]
    pub upstream_provider: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Lifetime of the `state` of an upstream authorization (consent → callback).
    #[serde(default = "default_state_ttl")]
    pub state_ttl_secs: u64,
    /// Total timeout of every upstream HTTP call (discovery, JWKS, token, userinfo).
    #[serde(default = "default_upstream_timeout")]
    pub timeout_ms: u64,
    /// Largest upstream response body read.
    #[serde(default = "default_upstream_max_bytes")]
    pub max_response_bytes: usize,
    /// Lifetime of a connect link (`UpstreamConnect.StartConnect`).
    #[serde(default = "default_state_ttl")]
    pub connect_ttl_secs: u64,
    /// A scope the user's access token must carry for `StartConnect` (empty: any scope of the
    /// token's resource, but at least one).
    #[serde(default)]
    pub connect_scope: String,
    #[serde(default)]
    pub providers: std::collections::BTreeMap<String, UpstreamProviderConfig>,
}

fn default_state_ttl() -> u64 {
    600
}
fn default_upstream_timeout() -> u64 {
    5000
}
fn default_upstream_max_bytes() -> usize {
    256 * 1024
}
fn default_auth_method() -> String {
    "client_secret_basic".into()
}
fn default_jwks_refetch() -> u64 {
    30
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// OpenID Connect: discovery from `issuer`, identity from the verified ID token.
    Oidc,
    /// Plain OAuth 2.0: explicit endpoints, identity from `userinfo_endpoint`.
    Oauth2,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamProviderConfig {
    pub kind: UpstreamKind,
    /// Shown on the consent and connect pages.
    #[serde(default)]
    pub display_name: Option<String>,
    /// OIDC: the issuer (discovery, ID token `iss`). OAuth 2.0: optional; names the identity
    /// namespace of linked accounts (default: the authorization endpoint's origin).
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<Secret>,
    #[serde(default = "default_auth_method")]
    pub token_endpoint_auth_method: String,
    /// Scopes requested upstream (`openid` is added for OIDC providers).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Dotted path of the user's stable id in the userinfo JSON (required for OAuth 2.0).
    #[serde(default)]
    pub subject_claim: Option<String>,
    /// Dotted path of a display name in the ID token or userinfo JSON.
    #[serde(default)]
    pub username_claim: Option<String>,
    /// Floor between two JWKS fetches triggered by an unknown `kid`.
    #[serde(default = "default_jwks_refetch")]
    pub jwks_min_refetch_secs: u64,
}

impl UpstreamProviderConfig {
    /// The name shown to users.
    pub fn display<'a>(&'a self, name: &'a str) -> &'a str {
        self.display_name.as_deref().unwrap_or(name)
    }

    /// The scopes requested at the upstream authorization endpoint.
    pub fn requested_scopes(&self) -> Vec<String> {
        let mut s = self.scopes.clone();
        if self.kind == UpstreamKind::Oidc && !s.iter().any(|x| x == "openid") {
            s.insert(0, "openid".into());
        }
        s
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// token-vault's gRPC address, e.g. `http://127.0.0.1:9091` (`https://` needs a CA file).
    pub addr: String,
    /// auth-service's service credential at token-vault (permission `put`).
    pub credential: Secret,
    /// PEM CA bundle for an `https://` address: the older spelling of `tls.ca_file`, still
    /// accepted (not both).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// `[vault.tls]`: CA (and client certificate for mTLS) for an `https://` addr.
    #[serde(default)]
    pub tls: Option<mcpauth_runtime::GrpcClientTls>,
    #[serde(default = "default_upstream_timeout")]
    pub timeout_ms: u64,
}

impl VaultConfig {
    /// The client TLS in the shared shape, `vault.ca_file` folded into `tls.ca_file`.
    pub fn client_tls(&self) -> Result<Option<mcpauth_runtime::GrpcClientTls>, ConfigError> {
        match (&self.ca_file, &self.tls) {
            (Some(_), Some(t)) if t.ca_file.is_some() => Err(ConfigError::new(
                "vault.ca_file: give the CA once, as vault.tls.ca_file",
            )),
            (Some(ca), tls) => Ok(Some(mcpauth_runtime::GrpcClientTls {
                ca_file: Some(ca.clone()),
                ..tls.clone().unwrap_or_default()
            })),
            (None, tls) => Ok(tls.clone()),
        }
    }
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
    /// How new access tokens are sealed (`docs/tokens.md`): `v2`, or `v1` only for the first
    /// step of a rolling upgrade from a release that cannot open v2. Both are always opened.
    pub access_token_format: crate::domain::token::AccessFormat,
    #[serde(default)]
    pub keys: Vec<TokenKeyConfig>,
    /// Id of the key that signs new JWT access tokens (resources with `token_format = "jwt"`).
    /// Empty with no `signing_keys` in dev mode means an ephemeral ES256 key.
    #[serde(default)]
    pub signing_key: String,
    /// RFC 9068 JWT signing keys; every one is published at `jwks_uri` and verifies, only
    /// `signing_key` signs (rotation: docs/tokens.md, "JWT signing keys").
    #[serde(default)]
    pub signing_keys: Vec<SigningKeyConfig>,
    /// How often each replica re-reads the revocation list from Postgres (safety net beside
    /// the Redis fan-out).
    pub revocation_resync_ms: u64,
}

/// RFC 8628 device authorization grant: lifetimes, polling interval, user codes and the limits
/// on entering them (docs/device-flow.md has the entropy argument behind the defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Lifetime of a device code and its user code.
    pub code_ttl_secs: u64,
    /// Least seconds between two polls of one device code.
    pub interval_secs: u64,
    /// Characters of a user code (6 to 16).
    pub user_code_length: usize,
    /// User codes one client IP may submit per rate-limit window.
    pub entries_per_ip: u64,
    /// Wrong user codes accepted from everyone per rate-limit window.
    pub failure_budget: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenKeyConfig {
    pub id: String,
    /// ≥ 32 bytes, base64. `file:/path` reads it from a mounted secret.
    pub secret: Secret,
}

/// One JWT signing key: its `kid` and its private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    pub id: String,
    /// PKCS#8 PEM (`openssl genpkey`: P-256, Ed25519 or RSA ≥ 2048 bit) or a private JWK
    /// (EC P-256 or OKP Ed25519). `file:/path` reads it from a mounted secret.
    pub key: Secret,
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
    /// Hex SHA-256 of the initial access tokens (RFC 7591 §3) an operator handed out, inline or
    /// `file:/path`. A registration that presents one as `Authorization: Bearer` may ask for
    /// `client_credentials` and any configured scope; without one, only `authorization_code` +
    /// `refresh_token` and the resources' default scopes (docs/security.md).
    #[serde(default)]
    pub initial_access_tokens_sha256: Vec<HashOrFile>,
}

/// A hex SHA-256 (`auth-service hash-secret`), inline or `file:/path`.
#[derive(Debug, Clone, Deserialize)]
pub struct HashOrFile(#[serde(deserialize_with = "mcpauth_runtime::string_or_file")] pub String);

/// `[introspection]`: callers of RFC 7662 `POST /introspect` besides each resource's own
/// `introspection_clients`. Everyone else is told `{"active": false}` (docs/security.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// Client ids that may introspect access tokens of every resource.
    #[serde(default)]
    pub clients: Vec<String>,
}

/// `[token_exchange]`: the RFC 8693 grant (docs/tokens.md "Token exchange"). Nothing may be
/// exchanged unless a policy names the client, the subject token's audience and the target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangeConfig {
    /// Off: the grant is not offered (metadata, registration, `/token`, gRPC `Exchange`) even
    /// with policies configured — a switch for an incident, settable from the environment.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Longest lifetime of an exchanged token; 0: `tokens.access_ttl_secs`. Never longer than
    /// what the subject token has left.
    #[serde(default)]
    pub max_ttl_secs: i64,
    #[serde(default)]
    pub policies: Vec<ExchangePolicyConfig>,
}

impl Default for TokenExchangeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_ttl_secs: 0,
            policies: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// One `[[token_exchange.policies]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangePolicyConfig {
    /// Who may exchange: confidential client ids at `POST /token`, and `grpc.callers` names
    /// (with the `exchange` permission) at the gRPC `Exchange`.
    pub clients: Vec<String>,
    /// Audiences (configured resource URIs) of the subject tokens this policy accepts.
    pub from: Vec<String>,
    /// The configured resource the exchanged token is for.
    pub to: String,
    /// Subject-token scope → the scopes of `to` it may become. A scope not listed becomes
    /// nothing; the exchanged token has at most the union of what the subject's scopes map to.
    pub scopes: std::collections::BTreeMap<String, Vec<String>>,
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
    /// Longest wait for one of the fetch slots; the fetch's own `timeout_ms` starts after it.
    pub queue_wait_ms: u64,
    /// How long a failed fetch is remembered (the same URL fails at once meanwhile); 0: never.
    pub failure_cache_secs: u64,
    /// Cap on stored CIMD clients (rows kept for consents and grants); a new document URL past
    /// it is refused until the sweeper makes room.
    pub max_clients: i64,
    /// CIMD clients without a live grant and not used for this long are removed; 0: never.
    pub unused_client_ttl_secs: i64,
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
    /// `/token` requests per window and client (per client and IP for a public client), beside
    /// the per-IP `token` limit: one client's burst cannot use up its neighbours' budget.
    pub token_per_client: u64,
    /// Fetches of Client ID Metadata Documents a client IP may cause per window, from any
    /// endpoint (`/authorize`, `/token`, `/revoke`, `/introspect`); cache hits are free.
    pub cimd_fetch: u64,
    /// Removed: it believed the left-most `X-Forwarded-For` entry, which any client writes.
    /// `true` is refused with a pointer to `http.trusted_proxies`; `false` (the old default)
    /// is accepted and means nothing.
    #[serde(default)]
    pub trust_forwarded_for: Option<bool>,
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
    /// Client ids of this resource's servers: they may introspect access tokens issued for it
    /// over HTTP (RFC 7662).
    #[serde(default)]
    pub introspection_clients: Vec<String>,
    /// Format of the access tokens issued for this resource: `sealed` (opaque, our own
    /// verifiers) or `jwt` (RFC 9068, verifiable by anyone against `jwks_uri`).
    #[serde(default)]
    pub token_format: ResourceTokenFormat,
}

/// The access-token format of one resource (docs/tokens.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceTokenFormat {
    /// `mcpat_…`: sealed, opaque to everyone but auth-service and its introspection.
    #[default]
    Sealed,
    /// RFC 9068 JWT signed with `tokens.signing_key`.
    Jwt,
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
    /// The path of the issuer identifier (`/auth` for `https://example.com/auth`), or `""`.
    /// The issuer is validated at load: no query, fragment or trailing slash.
    pub fn issuer_path(&self) -> &str {
        let rest = self.issuer.split_once("://").map_or("", |(_, r)| r);
        rest.find('/').map_or("", |i| &rest[i..])
    }

    /// The resources whose access tokens are RFC 9068 JWTs.
    pub fn jwt_resources(&self) -> Vec<String> {
        self.resources
            .iter()
            .filter(|r| r.token_format == ResourceTokenFormat::Jwt)
            .map(|r| r.uri.clone())
            .collect()
    }

    /// JWT resources need a signing key (outside dev mode); listed keys need a current one.
    fn validate_signing_keys(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError::new(m));
        if let Some(i) = self
            .resources
            .iter()
            .position(|r| r.token_format == ResourceTokenFormat::Jwt)
            && self.tokens.signing_keys.is_empty()
            && !self.dev_mode
        {
            return err(format!(
                "resources[{i}].token_format = \"jwt\" needs tokens.signing_keys and tokens.signing_key"
            ));
        }
        if !self.tokens.signing_keys.is_empty() && self.tokens.signing_key.is_empty() {
            return err("tokens.signing_key: required with tokens.signing_keys".into());
        }
        if self.tokens.signing_keys.is_empty() && !self.tokens.signing_key.is_empty() {
            return err(format!(
                "tokens.signing_key: {:?} is not in tokens.signing_keys",
                self.tokens.signing_key
            ));
        }
        Ok(())
    }

    /// Loads and checks the configuration.
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::load_reporting(file, env).map(|(c, _)| c)
    }

    /// [`Config::load`], and what the environment contributed under the older prefix.
    pub fn load_reporting(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<(Self, EnvReport), ConfigError> {
        let (mut cfg, report): (Config, _) =
            mcpauth_runtime::service_env::AUTH.load(DEFAULTS, file, env)?;
        cfg.validate()?;
        cfg.http.proxies = cfg.trusted_proxies()?;
        Ok((cfg, report))
    }

    /// `http.trusted_proxies` and `http.client_ip_header`, parsed; errors name the key.
    pub fn trusted_proxies(&self) -> Result<crate::proxy::TrustedProxies, ConfigError> {
        let header = crate::proxy::ForwardHeader::parse(&self.http.client_ip_header)
            .map_err(|e| ConfigError::new(format!("http.client_ip_header: {e}")))?;
        crate::proxy::TrustedProxies::new(&self.http.trusted_proxies, header)
            .map_err(|e| ConfigError::new(format!("http.trusted_proxies{e}")))
    }

    /// Checks what serde cannot: one line naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError::new(m));
        self.telemetry.validate()?;
        if self.rate_limit.trust_forwarded_for == Some(true) {
            return err(
                "rate_limit.trust_forwarded_for: removed (it believed any client's X-Forwarded-For); \
                 list your reverse proxies' networks in http.trusted_proxies instead \
                 (docs/operations.md#client-addresses-behind-proxies)"
                    .into(),
            );
        }
        self.trusted_proxies()?;
        if self.cimd.enabled && (self.cimd.queue_wait_ms == 0 || self.cimd.timeout_ms == 0) {
            return err("cimd: timeout_ms and queue_wait_ms must be positive".into());
        }
        // The URL's shape and the TLS files are checked now, not at the first connection.
        mcpauth_runtime::redis_client("redis", self.redis.url.expose(), self.redis.tls.as_ref())?;
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
        self.validate_signing_keys()?;
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
            self.validate_caller_permissions(i, c)?;
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
        crate::config_clients::validate(self)?;
        crate::token_exchange::validate_config(self)?;
        if self.tokens.access_ttl_secs <= 0
            || self.tokens.refresh_ttl_secs <= 0
            || self.tokens.code_ttl_secs == 0
        {
            return err("tokens: lifetimes must be positive".into());
        }
        let d = &self.device;
        if d.code_ttl_secs == 0 || d.interval_secs == 0 || d.interval_secs >= d.code_ttl_secs {
            return err(
                "device: code_ttl_secs and interval_secs must be positive, the interval shorter"
                    .into(),
            );
        }
        if !(6..=16).contains(&d.user_code_length) {
            return err("device.user_code_length: must be 6 to 16".into());
        }
        if d.entries_per_ip == 0 || d.failure_budget == 0 {
            return err("device: entries_per_ip and failure_budget must be positive".into());
        }
        if self.tokens.keys.is_empty() && !self.dev_mode {
            return err("tokens.keys: at least one key is required outside dev mode".into());
        }
        if self.login.provider == LoginProviderKind::Dev && !self.dev_mode {
            return err("login.provider: dev login requires dev_mode = true".into());
        }
        let admin = self.admin.socket_addr("admin.addr")?;
        if self.dev_mode {
            for (name, addr) in [
                ("http.addr", Some(self.http.addr)),
                ("grpc.addr", Some(self.grpc.addr)),
                ("admin.addr", admin),
            ] {
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
        if self.login.provider == LoginProviderKind::Local && self.login.users.is_empty() {
            return err("login.users: the local provider needs at least one user".into());
        }
        self.validate_upstream()
    }

    /// `grpc.callers[i].permissions` and `.resources`: known names, present outside dev mode.
    fn validate_caller_permissions(&self, i: usize, c: &GrpcCaller) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError::new(m));
        let known = GrpcPermission::ALL.map(GrpcPermission::name).join(", ");
        match &c.permissions {
            None if !self.dev_mode => {
                return err(format!(
                    "grpc.callers[{i}].permissions: missing; list the RPCs {:?} may call ({known})",
                    c.name
                ));
            }
            None => {}
            Some(p) if p.is_empty() => {
                return err(format!(
                    "grpc.callers[{i}].permissions: must not be empty ({known})"
                ));
            }
            Some(p) => {
                if let Some(bad) = p.iter().find(|p| GrpcPermission::parse(p).is_none()) {
                    return err(format!(
                        "grpc.callers[{i}].permissions: unknown permission {bad:?} (known: {known})"
                    ));
                }
            }
        }
        match &c.resources {
            Some(list) => {
                if let Some(bad) = list
                    .iter()
                    .find(|r| !self.resources.iter().any(|c| &c.uri == *r))
                {
                    return err(format!(
                        "grpc.callers[{i}].resources: {bad:?} is not a configured resource"
                    ));
                }
            }
            None if !self.dev_mode && c.granted(false).contains(&GrpcPermission::StartConnect) => {
                return err(format!(
                    "grpc.callers[{i}].resources: required with start_connect (the audiences of the user tokens {:?} may present)",
                    c.name
                ));
            }
            None => {}
        }
        Ok(())
    }

    fn validate_upstream(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError::new(m));
        if self.login.provider == LoginProviderKind::Upstream {
            let name = &self.login.upstream_provider;
            if name.is_empty() {
                return err(
                    "login.upstream_provider: required when login.provider = \"upstream\"".into(),
                );
            }
            if !self.upstream.providers.contains_key(name) {
                return err(format!(
                    "login.upstream_provider: {name:?} is not configured in upstream.providers"
                ));
            }
        }
        if self.upstream.state_ttl_secs == 0 || self.upstream.connect_ttl_secs == 0 {
            return err("upstream: state_ttl_secs and connect_ttl_secs must be positive".into());
        }
        for (name, p) in &self.upstream.providers {
            let key = format!("upstream.providers.{name}");
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return err(format!("{key}: names are 1-64 characters of [A-Za-z0-9_-]"));
            }
            if p.client_id.is_empty() {
                return err(format!("{key}.client_id: required"));
            }
            if !["none", "client_secret_basic", "client_secret_post"]
                .contains(&p.token_endpoint_auth_method.as_str())
            {
                return err(format!(
                    "{key}.token_endpoint_auth_method: must be client_secret_basic, client_secret_post or none"
                ));
            }
            if (p.token_endpoint_auth_method == "none") != p.client_secret.is_none() {
                return err(format!(
                    "{key}.client_secret: required exactly when token_endpoint_auth_method is not none"
                ));
            }
            match p.kind {
                UpstreamKind::Oidc if p.issuer.is_none() => {
                    return err(format!("{key}.issuer: required for kind = \"oidc\""));
                }
                UpstreamKind::Oauth2 => {
                    for (field, v) in [
                        ("authorization_endpoint", &p.authorization_endpoint),
                        ("token_endpoint", &p.token_endpoint),
                        ("userinfo_endpoint", &p.userinfo_endpoint),
                        ("subject_claim", &p.subject_claim),
                    ] {
                        if v.as_deref().is_none_or(str::is_empty) {
                            return err(format!("{key}.{field}: required for kind = \"oauth2\""));
                        }
                    }
                }
                UpstreamKind::Oidc => {}
            }
            for (field, v) in [
                ("issuer", &p.issuer),
                ("authorization_endpoint", &p.authorization_endpoint),
                ("token_endpoint", &p.token_endpoint),
                ("userinfo_endpoint", &p.userinfo_endpoint),
                ("jwks_uri", &p.jwks_uri),
            ] {
                if let Some(u) = v
                    && let Err(e) = crate::upstream::check_endpoint(u)
                {
                    return err(format!("{key}.{field}: {e}"));
                }
            }
            for (field, v) in [
                ("subject_claim", &p.subject_claim),
                ("username_claim", &p.username_claim),
            ] {
                if let Some(path) = v
                    && path.split('.').any(str::is_empty)
                {
                    return err(format!(
                        "{key}.{field}: not a dotted path like \"result.sys_id\""
                    ));
                }
            }
        }
        if !self.upstream.providers.is_empty() {
            let Some(v) = &self.vault else {
                return err(
                    "vault: required when upstream.providers are configured (token-vault addr and credential)"
                        .into(),
                );
            };
            // Address and TLS files are read and checked now, not at the first stored credential.
            mcpauth_runtime::grpc_endpoint("vault", &v.addr, v.client_tls()?.as_ref())?;
            mcpauth_runtime::grpc_plaintext_check("vault", &v.addr, self.allow_plaintext_grpc)?;
            if v.credential.expose().is_empty() {
                return err("vault.credential: required".into());
            }
        }
        Ok(())
    }

    /// The listener `auth-service healthcheck` probes for `/readyz`: the admin listener when
    /// there is one, else the public HTTP listener.
    pub fn health_addr(&self) -> SocketAddr {
        self.admin
            .socket_addr("admin.addr")
            .ok()
            .flatten()
            .unwrap_or(self.http.addr)
    }

    /// Outside dev mode, the public credentials of the repository's dev configuration
    /// (`config/dev.toml`) are refused wherever they would let someone in.
    fn refuse_dev_secrets(&self) -> Result<(), ConfigError> {
        for (i, c) in self.grpc.callers.iter().enumerate() {
            if c.credential_sha256
                .eq_ignore_ascii_case(DEV_SERVICE_CREDENTIAL_SHA256)
            {
                return Err(mcpauth_runtime::grpc_client::dev_secret_refused(
                    &format!("grpc.callers[{i}].credential_sha256"),
                    "dev-service-credential",
                ));
            }
        }
        if let Some(v) = &self.vault
            && v.credential.expose() == DEV_SERVICE_CREDENTIAL
        {
            return Err(mcpauth_runtime::grpc_client::dev_secret_refused(
                "vault.credential",
                "dev-service-credential",
            ));
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

    fn upstream_config(toml: &str, pairs: &[(&str, &str)]) -> String {
        let dir = std::env::temp_dir().join(format!("mcpauth-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, toml).unwrap();
        let mut e = vec![("MCPAUTH__DEV_MODE", "true")];
        e.extend_from_slice(pairs);
        let r = Config::load(Some(&dir), &env(&e));
        let _ = std::fs::remove_file(&dir);
        match r {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    const OIDC: &str = "[upstream.providers.corp]\nkind = \"oidc\"\nissuer = \"https://sso.example\"\n\
                        client_id = \"c\"\nclient_secret = \"s\"\n";
    const VAULT: &str = "[vault]\naddr = \"http://127.0.0.1:9091\"\ncredential = \"v\"\n";

    #[test]
    fn upstream_configuration_errors_name_the_key() {
        let upstream = [("MCPAUTH__LOGIN__PROVIDER", "upstream")];
        let named = [
            ("MCPAUTH__LOGIN__PROVIDER", "upstream"),
            ("MCPAUTH__LOGIN__UPSTREAM_PROVIDER", "corp"),
        ];
        assert_eq!(upstream_config(&format!("{OIDC}{VAULT}"), &named), "ok");
        let e = upstream_config(&format!("{OIDC}{VAULT}"), &upstream);
        assert!(e.contains("login.upstream_provider: required"), "{e}");
        let e = upstream_config(VAULT, &named);
        assert!(
            e.contains("login.upstream_provider: \"corp\" is not configured"),
            "{e}"
        );
        let e = upstream_config(OIDC, &named);
        assert!(e.contains("vault: required when upstream.providers"), "{e}");
        let oauth2 = "[upstream.providers.sn]\nkind = \"oauth2\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
                      authorization_endpoint = \"https://sn.example/oauth_auth.do\"\n\
                      token_endpoint = \"https://sn.example/oauth_token.do\"\n";
        let e = upstream_config(&format!("{oauth2}{VAULT}"), &[]);
        assert!(
            e.contains("upstream.providers.sn.userinfo_endpoint: required"),
            "{e}"
        );
        let e = upstream_config(
            &format!("{oauth2}userinfo_endpoint = \"https://sn.example/me\"\n{VAULT}"),
            &[],
        );
        assert!(
            e.contains("upstream.providers.sn.subject_claim: required"),
            "{e}"
        );
        let e = upstream_config(
            &format!(
                "{oauth2}userinfo_endpoint = \"http://sn.example/me\"\nsubject_claim = \"result.sys_id\"\n{VAULT}"
            ),
            &[],
        );
        assert!(
            e.contains("upstream.providers.sn.userinfo_endpoint: must be https"),
            "{e}"
        );
        let e = upstream_config(
            &format!(
                "{oauth2}userinfo_endpoint = \"https://sn.example/me\"\nsubject_claim = \"result..id\"\n{VAULT}"
            ),
            &[],
        );
        assert!(e.contains("subject_claim: not a dotted path"), "{e}");
        let e = upstream_config(
            "[upstream.providers.corp]\nkind = \"oidc\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
            &[],
        );
        assert!(
            e.contains("upstream.providers.corp.issuer: required"),
            "{e}"
        );
        let e = upstream_config(
            &format!(
                "[upstream.providers.corp]\nkind = \"oidc\"\nissuer = \"https://sso.example\"\nclient_id = \"c\"\n{VAULT}"
            ),
            &[],
        );
        assert!(e.contains("upstream.providers.corp.client_secret"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn vault_tls_takes_the_old_ca_file_or_a_tls_table() {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!("mcpauth-vault-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let client = CertificateParams::new(vec!["auth-service".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("client.pem"), client.pem()).unwrap();
        std::fs::write(dir.join("client.key"), key.serialize_pem()).unwrap();
        let d = dir.display();
        let https = "[vault]\naddr = \"https://vault.internal:9091\"\ncredential = \"v\"\n";
        let identity = format!("cert_file = \"{d}/client.pem\"\nkey_file = \"{d}/client.key\"\n");
        let case = |vault: String| upstream_config(&format!("{OIDC}{vault}"), &[]);

        let e = case(https.to_owned());
        assert!(
            e.ends_with(
                "vault.tls.ca_file: required for an https:// vault.addr (system roots are not used)"
            ),
            "{e}"
        );
        // The older flat key alone, and with a client certificate from [vault.tls].
        assert_eq!(case(format!("{https}ca_file = \"{d}/ca.pem\"\n")), "ok");
        assert_eq!(
            case(format!(
                "{https}ca_file = \"{d}/ca.pem\"\n[vault.tls]\n{identity}"
            )),
            "ok"
        );
        assert_eq!(
            case(format!(
                "{https}[vault.tls]\nca_file = \"{d}/ca.pem\"\n{identity}"
            )),
            "ok"
        );
        let e = case(format!(
            "{https}ca_file = \"{d}/ca.pem\"\n[vault.tls]\nca_file = \"{d}/ca.pem\"\n"
        ));
        assert!(
            e.ends_with("vault.ca_file: give the CA once, as vault.tls.ca_file"),
            "{e}"
        );
        let e = case(format!("{https}ca_file = \"{d}/absent.pem\"\n"));
        assert!(e.contains("vault.tls.ca_file: "), "{e}");
        let e = case(format!(
            "{https}[vault.tls]\nca_file = \"{d}/ca.pem\"\ncert_file = \"{d}/client.pem\"\n"
        ));
        assert!(
            e.ends_with("vault.tls.key_file: required with vault.tls.cert_file"),
            "{e}"
        );
        let e = case(format!("{VAULT}[vault.tls]\nca_file = \"{d}/ca.pem\"\n"));
        assert!(
            e.ends_with("vault.tls: set, but vault.addr is http:// (use https://)"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn caller_hash_can_come_from_a_file() {
        let hash_file =
            std::env::temp_dir().join(format!("mcpauth-caller-{}", uuid::Uuid::new_v4()));
        let callers = format!(
            "[[grpc.callers]]\nname = \"mcp-service\"\ncredential_sha256 = \"file:{}\"\n",
            hash_file.display()
        );
        std::fs::write(&hash_file, format!("{}\n", "ab".repeat(32))).unwrap();
        let path = std::env::temp_dir().join(format!("mcpauth-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, &callers).unwrap();
        let env = env(&[("MCPAUTH__DEV_MODE", "true")]);
        let cfg = Config::load(Some(&path), &env).unwrap();
        assert_eq!(cfg.grpc.callers[0].credential_sha256, "ab".repeat(32));
        // The file's content is validated like an inline value, and a missing file is named.
        std::fs::write(&hash_file, "not-hex\n").unwrap();
        let e = Config::load(Some(&path), &env).unwrap_err().to_string();
        assert!(
            e.contains("grpc.callers[0].credential_sha256: must be 64 hex"),
            "{e}"
        );
        std::fs::remove_file(&hash_file).unwrap();
        let e = Config::load(Some(&path), &env).unwrap_err().to_string();
        assert!(
            e.contains(&format!("cannot read file {}", hash_file.display())),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn access_token_format_is_v2_unless_v1_is_asked_for() {
        use crate::domain::token::AccessFormat;
        let dev = ("MCPAUTH__DEV_MODE", "true");
        let cfg = Config::load(None, &env(&[dev])).unwrap();
        assert_eq!(cfg.tokens.access_token_format, AccessFormat::V2);
        let key = "MCPAUTH__TOKENS__ACCESS_TOKEN_FORMAT";
        let cfg = Config::load(None, &env(&[dev, (key, "v1")])).unwrap();
        assert_eq!(cfg.tokens.access_token_format, AccessFormat::V1);
        let e = Config::load(None, &env(&[dev, (key, "v3")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokens.access_token_format"), "{e}");
        assert!(!e.contains('\n'), "{e}");
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
