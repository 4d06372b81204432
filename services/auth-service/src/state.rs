//! The state every request handler (HTTP and gRPC) and background task shares, and how it is
//! built from configuration and [`Stores`]. It depends on no HTTP module: `http/*` and `grpc*`
//! import it, `app` wires the servers around it, and the admin CLI builds it without them.

use std::sync::Arc;

use mcpauth_runtime::MetricsHandle;
use tokio::task::JoinHandle;

use crate::audit::AuditLog;
use crate::cimd::CimdFetcher;
use crate::clients::ClientRegistry;
use crate::config::Config;
use crate::domain::jwt::JwtKeys;
use crate::domain::resource;
use crate::domain::scope::ScopeSet;
use crate::domain::token::{AccessFormat, KeyRing, unhex};
use crate::error::OAuthError;
use crate::login::LoginProvider;
use crate::store::clients::{Client, ClientSource};
use crate::store::consents::ConsentStore;
use crate::store::ephemeral::{Ephemeral, ReplicaEvent};
use crate::store::grants::GrantStore;
use crate::store::health::Durable;
use crate::store::revocations::{DenyList, RevocationStore};
use crate::store::user_admin::UserAdminStore;
use crate::store::users::UserStore;
use crate::stores::Stores;
use crate::tokens::TokenService;

/// Everything a request handler needs. Cheap to clone (handles and `Arc`s).
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub tokens: TokenService,
    pub clients: ClientRegistry,
    pub users: Arc<dyn UserStore>,
    pub consents: Arc<dyn ConsentStore>,
    pub user_admin: Arc<dyn UserAdminStore>,
    pub grants: Arc<dyn GrantStore>,
    pub revocations: Arc<dyn RevocationStore>,
    pub ephemeral: Ephemeral,
    pub audit: AuditLog,
    pub login: LoginProvider,
    /// The durable store as a whole (readiness).
    pub durable: Arc<dyn Durable>,
    pub metrics: MetricsHandle,
    pub rate_limiter: crate::ratelimit::RateLimiter,
    /// Configured upstream providers (login delegation and the connect flow).
    pub upstream: crate::upstream::UpstreamProviders,
    /// token-vault, where upstream tokens go; present whenever a provider is configured.
    pub vault: Option<crate::vault::VaultClient>,
    /// Union of the scopes of every configured resource (metadata `scopes_supported`).
    pub supported_scopes: Vec<String>,
    /// Set at the shutdown signal: `/readyz` answers 503 while the service drains.
    pub drain: mcpauth_runtime::Drain,
    pub(crate) resources: Arc<Vec<String>>,
}

impl AppState {
    /// Resolves a request's `resource` (RFC 8707) to a configured resource identifier. Without
    /// one, a server that protects exactly one resource uses it.
    pub fn resolve_resource(&self, requested: Option<&str>) -> Result<String, OAuthError> {
        match requested {
            Some(r) => resource::find(&self.resources, r)
                .map(str::to_owned)
                .ok_or_else(|| OAuthError::invalid_target(format!("unknown resource {r:?}"))),
            None if self.resources.len() == 1 => Ok(self.resources[0].clone()),
            None => Err(OAuthError::invalid_target(
                "resource is required: this server protects several resources",
            )),
        }
    }

    /// Resolves the scope of a request for `resource`: `offline_access` is dropped (refresh
    /// tokens follow from the client's grant types), every other scope must belong to the
    /// resource (and to the registered scope where that is a ceiling, see below); none requested
    /// gives the defaults.
    pub fn resolve_scope(
        &self,
        client: &Client,
        resource: &str,
        requested: Option<&str>,
        user_delegated: bool,
    ) -> Result<ScopeSet, OAuthError> {
        let res = self
            .config
            .resources
            .iter()
            .find(|r| r.uri == resource)
            .ok_or_else(|| OAuthError::invalid_target("unknown resource"))?;
        let allowed = ScopeSet::from_strings(res.scopes.iter().cloned());
        // The registered scope is a ceiling for operator-configured clients and for grants
        // without a user (client_credentials). For dynamically registered and CIMD clients it
        // is where they start: MCP clients register with the scope of the first challenge and
        // step up later (a 403 insufficient_scope names the wider scope), and the user sees and
        // approves every scope on the consent page.
        let ceiling = !user_delegated || client.source == ClientSource::Static;
        let client_scope = client
            .scope
            .as_deref()
            .filter(|_| ceiling)
            .and_then(|s| ScopeSet::parse(s).ok());
        let mut asked = ScopeSet::parse(requested.unwrap_or(""))
            .map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
        asked.remove("offline_access");
        if asked.is_empty() {
            let defaults = ScopeSet::from_strings(res.default_scopes.iter().cloned());
            return Ok(match client_scope {
                Some(c) => defaults.intersection(&c),
                None => defaults,
            });
        }
        let unknown = asked.difference(&allowed);
        if !unknown.is_empty() {
            return Err(OAuthError::invalid_scope(format!(
                "scope not supported for this resource: {unknown}"
            )));
        }
        if let Some(c) = client_scope {
            let extra = asked.difference(&c);
            if !extra.is_empty() {
                return Err(OAuthError::invalid_scope(format!(
                    "scope not registered for this client: {extra}"
                )));
            }
        }
        Ok(asked)
    }

    /// A client changed or went away: forget it here and on every other replica.
    pub async fn client_changed(&self, client_id: &str) {
        self.clients.invalidate(client_id);
        if let Err(e) = self
            .ephemeral
            .events
            .publish(&ReplicaEvent::ClientChanged(client_id.to_owned()))
            .await
        {
            tracing::warn!(error = %e, "client change fan-out failed; other replicas expire it within 30 s");
        }
    }
}

/// The JWT signing keys: configured ones, or in dev mode an ephemeral ES256 key when a resource
/// wants JWTs and none is configured (its tokens die with the process); `None` when unused.
fn jwt_keys(config: &Config) -> anyhow::Result<Option<JwtKeys>> {
    if config.tokens.signing_keys.is_empty() {
        if config.jwt_resources().is_empty() {
            return Ok(None);
        }
        tracing::warn!(
            "dev mode: no JWT signing keys configured, using an ephemeral ES256 key (tokens die with the process)"
        );
        return Ok(Some(JwtKeys::ephemeral()));
    }
    let pairs: Vec<(String, String)> = config
        .tokens
        .signing_keys
        .iter()
        .map(|k| (k.id.clone(), k.key.expose().to_owned()))
        .collect();
    JwtKeys::new(&pairs, &config.tokens.signing_key)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("configuration error: {e}"))
}

/// Builds the state from configuration: connects Postgres and Redis, loads keys and clients.
pub async fn build_state(
    config: Config,
    metrics: MetricsHandle,
) -> anyhow::Result<(AppState, JoinHandle<()>)> {
    let stores = Stores::from_config(&config).await?;
    build_state_with(config, stores, metrics).await
}

/// [`build_state`] on the given stores (production or embedded); Redis as configured.
pub async fn build_state_with(
    config: Config,
    stores: Stores,
    metrics: MetricsHandle,
) -> anyhow::Result<(AppState, JoinHandle<()>)> {
    let config = Arc::new(config);
    let ephemeral = match stores.in_process.clone() {
        Some(bus) => Ephemeral::memory(bus, &config.redis.key_prefix),
        None => {
            let (redis_client, redis) = mcpauth_runtime::start_redis(
                "redis",
                config.redis.url.expose(),
                config.redis.tls.as_ref(),
                config.redis.pool_size,
            )
            .await?;
            let bus = mcpauth_runtime::bus::RedisBus::new(redis_client, redis.clone());
            Ephemeral::redis(redis, &config.redis.key_prefix, Arc::new(bus))
        }
    };
    let keys = if config.tokens.keys.is_empty() {
        tracing::warn!(
            "dev mode: no token keys configured, using an ephemeral key (tokens die with the process)"
        );
        KeyRing::ephemeral()
    } else {
        let pairs: Vec<(String, String)> = config
            .tokens
            .keys
            .iter()
            .map(|k| (k.id.clone(), k.secret.expose().to_owned()))
            .collect();
        KeyRing::new(&pairs, &config.tokens.current_key)
            .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?
    }
    .with_format(config.tokens.access_token_format);
    if config.tokens.access_token_format == AccessFormat::V1 {
        tracing::warn!(
            "tokens.access_token_format = \"v1\": access tokens are sealed in the format bounded to 2^32 tokens per key; switch to \"v2\" once every replica runs this release"
        );
    }
    let grants = stores.grants.clone();
    let revocations = stores.revocations.clone();
    let deny = DenyList::default();
    let tokens = TokenService::new(
        keys,
        deny,
        config.tokens.access_ttl_secs,
        grants.clone(),
        revocations.clone(),
        ephemeral.clone(),
        &config.issuer,
    );
    let tokens = match jwt_keys(&config)? {
        Some(keys) => tokens.with_jwt(keys, config.jwt_resources()),
        None => tokens,
    };
    let rate_limiter = crate::ratelimit::RateLimiter::new(
        ephemeral.rate_limits.clone(),
        config.rate_limit.window_secs,
    );
    let clients = ClientRegistry::new(stores.clients.clone(), CimdFetcher::new(&config.cimd))
        .with_cimd_limits(
            config
                .rate_limit
                .enabled
                .then(|| (rate_limiter.clone(), config.rate_limit.cimd_fetch)),
            config.cimd.max_clients,
        );
    for c in &config.clients {
        clients
            .store()
            .upsert(&Client {
                client_id: c.client_id.clone(),
                source: ClientSource::Static,
                client_name: c.client_name.clone(),
                redirect_uris: c.redirect_uris.clone(),
                grant_types: c.grant_types.clone(),
                response_types: if c.grant_types.iter().any(|g| g == "authorization_code") {
                    vec!["code".into()]
                } else {
                    vec![]
                },
                token_endpoint_auth_method: c.token_endpoint_auth_method.clone(),
                scope: c.scope.clone(),
                secret_sha256: c.client_secret_sha256.as_deref().and_then(unhex),
                registration_token_sha256: None,
                metadata: serde_json::json!({}),
                created_at: chrono::Utc::now(),
            })
            .await?;
    }
    let (audit, audit_writer) = AuditLog::start(stores.audit.clone());
    let mut supported: Vec<String> = config
        .resources
        .iter()
        .flat_map(|r| r.scopes.iter().cloned())
        .collect();
    supported.sort();
    supported.dedup();
    let state = AppState {
        tokens,
        clients,
        users: stores.users.clone(),
        consents: stores.consents.clone(),
        user_admin: stores.user_admin.clone(),
        grants,
        revocations,
        ephemeral,
        audit,
        login: LoginProvider::from_config(&config.login),
        rate_limiter,
        upstream: crate::upstream::UpstreamProviders::new(&config.upstream)?,
        vault: config
            .vault
            .as_ref()
            .map(crate::vault::VaultClient::new)
            .transpose()?,
        durable: stores.durable.clone(),
        metrics,
        supported_scopes: supported,
        drain: mcpauth_runtime::Drain::default(),
        resources: Arc::new(config.resource_uris()),
        config,
    };
    Ok((state, audit_writer))
}
