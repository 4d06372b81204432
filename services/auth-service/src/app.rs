//! Wiring: shared state, the HTTP and gRPC servers, background tasks, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use mcpauth_runtime::MetricsHandle;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::audit::AuditLog;
use crate::cimd::CimdFetcher;
use crate::clients::ClientRegistry;
use crate::config::Config;
use crate::domain::resource;
use crate::domain::scope::ScopeSet;
use crate::domain::token::{AccessFormat, KeyRing, unhex};
use crate::error::OAuthError;
use crate::login::LoginProvider;
use crate::store::clients::{Client, ClientSource, ClientStore};
use crate::store::ephemeral::{Ephemeral, ReplicaEvent};
use crate::store::grants::GrantStore;
use crate::store::revocations::{DenyList, RevocationStore};
use crate::store::users::UserStore;
use crate::tokens::TokenService;

/// Everything a request handler needs. Cheap to clone (handles and `Arc`s).
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub tokens: TokenService,
    pub clients: ClientRegistry,
    pub users: UserStore,
    pub grants: GrantStore,
    pub revocations: RevocationStore,
    pub ephemeral: Ephemeral,
    pub audit: AuditLog,
    pub login: LoginProvider,
    pub pool: PgPool,
    /// The Redis client (plain or TLS as configured) pub/sub subscriptions are made from.
    pub redis: redis::Client,
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
    resources: Arc<Vec<String>>,
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

/// A running auth-service: its bound addresses, and a future that completes at shutdown.
pub struct Running {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`), when `admin.addr` is set.
    pub admin_addr: Option<SocketAddr>,
    pub state: AppState,
    admin: Option<mcpauth_runtime::ops::AdminServer>,
    handle: actix_web::dev::ServerHandle,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    audit_writer: JoinHandle<()>,
    http: JoinHandle<std::io::Result<()>>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Running {
    /// Stops accepting, drains in-flight requests, flushes the audit trail. The admin listener
    /// closes last, so probes see the drain until the end.
    pub async fn shutdown(self) {
        self.state.drain.begin();
        let _ = self.shutdown.send(true);
        self.handle.stop(true).await;
        let _ = self.http.await;
        let _ = self.grpc.await;
        for t in self.tasks {
            t.abort();
        }
        if let Some(admin) = self.admin {
            admin.stop().await;
        }
        let Running {
            state,
            audit_writer,
            ..
        } = self;
        // The writer drains everything queued once the last handle is gone.
        drop(state);
        let _ = tokio::time::timeout(Duration::from_secs(30), audit_writer).await;
    }

    /// Runs until `signal` resolves, then drains (`/readyz` 503 for `shutdown.drain_delay_secs`
    /// while serving goes on) and shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        let delay = self.state.config.shutdown.drain_delay();
        mcpauth_runtime::ops::drain(&self.state.drain, delay).await;
        self.shutdown().await;
    }
}

/// Builds the state from configuration: connects Postgres and Redis, loads keys and clients.
pub async fn build_state(
    config: Config,
    metrics: MetricsHandle,
) -> anyhow::Result<(AppState, JoinHandle<()>)> {
    let config = Arc::new(config);
    let pool = crate::store::connect_postgres(
        config.database.url.expose(),
        config.database.max_connections,
    )
    .await?;
    let (redis_client, redis) = mcpauth_runtime::start_redis(
        "redis",
        config.redis.url.expose(),
        config.redis.tls.as_ref(),
        config.redis.pool_size,
    )
    .await?;
    let bus = mcpauth_runtime::bus::RedisBus::new(redis_client.clone(), redis.clone());
    let ephemeral = Ephemeral::redis(redis, &config.redis.key_prefix, Arc::new(bus));
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
    let grants = GrantStore::new(pool.clone());
    let revocations = RevocationStore::new(pool.clone());
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
    let rate_limiter = crate::ratelimit::RateLimiter::new(
        ephemeral.rate_limits.clone(),
        config.rate_limit.window_secs,
    );
    let clients = ClientRegistry::new(
        ClientStore::new(pool.clone()),
        CimdFetcher::new(&config.cimd),
    )
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
    let (audit, audit_writer) = AuditLog::start(pool.clone());
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
        users: UserStore::new(pool.clone()),
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
        pool,
        redis: redis_client,
        metrics,
        supported_scopes: supported,
        drain: mcpauth_runtime::Drain::default(),
        resources: Arc::new(config.resource_uris()),
        config,
    };
    Ok((state, audit_writer))
}

/// Starts auth-service: binds both listeners (port 0 picks a free one, for tests), loads the
/// deny list, and spawns the background tasks.
pub async fn start(config: Config, metrics: MetricsHandle) -> anyhow::Result<Running> {
    let (state, audit_writer) = build_state(config, metrics).await?;
    crate::background::initial_sync(&state).await?;
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut tasks = crate::background::spawn(&state, shutdown_rx.clone());
    tasks.push(mcpauth_runtime::pool_metrics::spawn(
        Some(state.pool.clone()),
        state.ephemeral.pool().cloned(),
    ));

    let http_listener = std::net::TcpListener::bind(state.config.http.addr).map_err(|e| {
        anyhow::anyhow!("cannot listen on http.addr {}: {e}", state.config.http.addr)
    })?;
    let http_addr = http_listener.local_addr()?;
    let data = web::Data::new(state.clone());
    let workers = match state.config.http.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    let admin_addr = state
        .config
        .admin
        .socket_addr("admin.addr")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // With an admin listener the public port serves OAuth only; without, the ops paths too.
    let public_ops = admin_addr.is_none();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(64 * 1024))
            .wrap(actix_web::middleware::from_fn(
                crate::http::refuse_control_characters_in_path,
            ))
            .wrap(actix_web::middleware::from_fn(crate::http::cors))
            .wrap(actix_web::middleware::from_fn(
                crate::http::issuer_path_prefix,
            ))
            .wrap(actix_web::middleware::from_fn(crate::http::record_metrics))
            // Outermost: one span per request (method, route pattern, status), when traced.
            .wrap(actix_web::middleware::from_fn(
                mcpauth_runtime::telemetry::http_span,
            ))
            .configure(crate::http::routes)
            .configure(|c| {
                if public_ops {
                    crate::http::ops_routes(c)
                }
            })
    })
    .workers(workers)
    .shutdown_timeout(state.config.http.shutdown_timeout_secs)
    .disable_signals()
    .listen(http_listener)?
    .run();
    let handle = server.handle();
    let http = tokio::spawn(server);

    if let Some(tls) = &state.config.grpc.tls {
        let cfg = crate::grpc::tls_config(tls).map_err(|e| anyhow::anyhow!("grpc.tls: {e}"))?;
        tonic::transport::Server::builder()
            .tls_config(cfg)
            .map_err(|e| anyhow::anyhow!("grpc.tls: {e}"))?;
    }
    let grpc_listener = TcpListener::bind(state.config.grpc.addr)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot listen on grpc.addr {}: {e}", state.config.grpc.addr)
        })?;
    let grpc_addr = grpc_listener.local_addr()?;
    let grpc = tokio::spawn(crate::grpc::serve(
        state.clone(),
        grpc_listener,
        shutdown_rx,
    ));
    let admin = match admin_addr {
        Some(addr) => {
            let data = web::Data::new(state.clone());
            Some(mcpauth_runtime::ops::AdminServer::start(
                "admin.addr",
                addr,
                move |c| {
                    c.app_data(data.clone());
                    crate::http::ops_routes(c);
                },
            )?)
        }
        None => None,
    };
    let admin_addr = admin.as_ref().map(|a| a.addr);
    tracing::info!(%http_addr, %grpc_addr, ?admin_addr, issuer = %state.config.issuer, dev_mode = state.config.dev_mode, "auth-service started");
    Ok(Running {
        http_addr,
        grpc_addr,
        admin_addr,
        state,
        admin,
        handle,
        shutdown,
        tasks,
        audit_writer,
        http,
        grpc,
    })
}
