//! Wiring: state, the HTTP server, revocation fan-out, graceful shutdown. [`start`] connects the
//! production stores from the configuration; [`start_with`] runs on the stores it is given (the
//! embedded ones of the single-process mode).

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{App, HttpServer, web};
use mcpauth_runtime::MetricsHandle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::{ScopePolicy, TokenVerifier};
use crate::config::Config;
use crate::store::Stores;
use crate::tools::{ToolRegistry, WhoAmI};
use crate::verify::cache::IntrospectionCache;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub verifier: Arc<dyn TokenVerifier>,
    pub cache: Option<IntrospectionCache>,
    pub scopes: ScopePolicy,
    pub tools: ToolRegistry,
    /// Session records and the event bus (Redis, or the embedded backends).
    pub stores: Stores,
    pub metrics: MetricsHandle,
    /// Host header values accepted on `/mcp`.
    pub allowed_hosts: Vec<String>,
    /// Cancelled at shutdown: ends every MCP session and SSE stream.
    pub cancel: CancellationToken,
    /// MCP sessions shared by all replicas through the stores, and cluster-wide notifications:
    /// `sessions.notify_tools_changed(subject)` (see [`crate::sessions::SessionHub`]).
    pub sessions: crate::sessions::SessionHub,
    /// Revocations received from auth-service, for open event streams to watch.
    pub revoked: tokio::sync::broadcast::Sender<crate::revocations::Revoked>,
    /// Set at the shutdown signal: `/readyz` answers 503 while the service drains.
    pub drain: mcpauth_runtime::Drain,
    /// Requests in flight (but event streams), which shutdown lets finish before ending sessions.
    pub in_flight: crate::inflight::InFlight,
}

pub struct Running {
    pub http_addr: SocketAddr,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`), when `admin.addr` is set.
    pub admin_addr: Option<SocketAddr>,
    pub state: AppState,
    admin: Option<mcpauth_runtime::ops::AdminServer>,
    handle: actix_web::dev::ServerHandle,
    http: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Closes the listener, lets the requests in flight finish (within
    /// `http.shutdown_timeout_secs`), then ends MCP sessions and event streams. The admin
    /// listener closes last, so probes see the drain until the end.
    pub async fn shutdown(self) {
        self.state.drain.begin();
        // Sent at once: the listener closes now, connections drain from here on.
        let stopped = self.handle.stop(true);
        let timeout = std::time::Duration::from_secs(self.state.config.http.shutdown_timeout_secs);
        if tokio::time::timeout(timeout, self.state.in_flight.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.state.in_flight.count(),
                "shutdown timeout: ending requests still in flight"
            );
        }
        // Open event streams would otherwise hold the server until its shutdown timeout.
        self.state.cancel.cancel();
        stopped.await;
        let _ = self.http.await;
        for t in self.tasks {
            t.abort();
        }
        if let Some(admin) = self.admin {
            admin.stop().await;
        }
    }

    /// Runs until `signal` resolves, then drains (`/readyz` 503 for `shutdown.drain_delay_secs`
    /// while serving goes on) and shuts down gracefully.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        let delay = self.state.config.shutdown.drain_delay();
        mcpauth_runtime::ops::drain(&self.state.drain, delay).await;
        self.shutdown().await;
    }
}

/// The `Host` header values accepted on `/mcp`: `http.allowed_hosts`, or by default the
/// resource's host (any loopback name when the resource is on loopback).
pub fn allowed_hosts(config: &Config) -> anyhow::Result<Vec<String>> {
    if !config.http.allowed_hosts.is_empty() {
        return Ok(config.http.allowed_hosts.clone());
    }
    let resource_host = url::Url::parse(&config.resource)?
        .host_str()
        .unwrap_or("localhost")
        .to_owned();
    // A loopback resource is reached under any loopback name.
    let loopback = ["localhost", "127.0.0.1", "[::1]"];
    Ok(if loopback.contains(&resource_host.as_str()) {
        loopback.iter().map(|h| (*h).to_owned()).collect()
    } else {
        vec![resource_host]
    })
}

/// Starts on the production stores (the configured Redis).
pub async fn start(config: Config, metrics: MetricsHandle) -> anyhow::Result<Running> {
    let config = Arc::new(config);
    let (verifier, cache, revoked) = crate::verify::build(&config).await?;
    let stores = Stores::production(&config).await?;
    start_verified(config, stores, verifier, cache, revoked, metrics).await
}

/// Starts on `stores` (e.g. [`Stores::embedded`]).
pub async fn start_with(
    config: Config,
    stores: Stores,
    metrics: MetricsHandle,
) -> anyhow::Result<Running> {
    let config = Arc::new(config);
    let (verifier, cache, revoked) = crate::verify::build(&config).await?;
    start_verified(config, stores, verifier, cache, revoked, metrics).await
}

async fn start_verified(
    config: Arc<Config>,
    stores: Stores,
    verifier: Arc<dyn TokenVerifier>,
    cache: Option<IntrospectionCache>,
    revoked: Option<crate::verify::revoked::RevokedIds>,
    metrics: MetricsHandle,
) -> anyhow::Result<Running> {
    // Principals carry the request's token for the user's own calls to token-vault.
    let verifier: Arc<dyn TokenVerifier> = Arc::new(crate::auth::CarryBearer(verifier));
    let tools = ToolRegistry::default();
    tools.register(Arc::new(WhoAmI::new(config.scopes_supported.clone())));
    if config.conformance_tools {
        // Validation refused it outside dev mode; still say so loudly.
        tracing::warn!(
            "conformance_tools = true: the MCP conformance suite's test tools are on /mcp (dev and tests only)"
        );
        crate::conformance::install(&tools, &config.scopes_supported);
    }
    let connectors = crate::connectors::install(&config, &tools)?;
    let allowed_hosts = allowed_hosts(&config)?;
    let sessions = crate::sessions::SessionHub::new(
        stores.sessions.clone(),
        stores.bus.clone(),
        &config.redis.key_prefix,
        std::time::Duration::from_secs(config.sessions.idle_timeout_secs),
    );
    let state = AppState {
        scopes: ScopePolicy::new(config.scope_implications.clone()),
        config: config.clone(),
        verifier,
        cache,
        tools,
        stores,
        metrics,
        allowed_hosts,
        cancel: CancellationToken::new(),
        sessions,
        revoked: tokio::sync::broadcast::channel(1024).0,
        drain: mcpauth_runtime::Drain::default(),
        in_flight: crate::inflight::InFlight::default(),
    };
    // mcp-service has no Postgres pool; the embedded stores have no Redis pool either.
    let mut tasks = vec![];
    if let Some(redis) = &state.stores.redis {
        tasks.push(mcpauth_runtime::pool_metrics::spawn(
            None,
            Some(redis.clone()),
        ));
    }
    if let Some(cache) = &state.cache {
        tasks.push(tokio::spawn(crate::revocations::follow(
            state.stores.bus.clone(),
            format!("{}:events", config.redis.auth_key_prefix),
            cache.clone(),
            state.revoked.clone(),
            state.cancel.clone(),
        )));
    }
    if let Some(revoked) = revoked {
        let cancel = state.cancel.clone();
        tasks.push(tokio::spawn(revoked.follow(
            state.stores.bus.clone(),
            format!("{}:events", config.redis.auth_key_prefix),
            state.revoked.clone(),
            async move { cancel.cancelled().await },
        )));
    }
    tasks.push(tokio::spawn(
        state.sessions.clone().run(state.cancel.clone()),
    ));
    if let Some(c) = connectors {
        tasks.push(tokio::spawn(crate::connectors::connections::follow(
            state.stores.bus.clone(),
            c.channel,
            c.cache,
            crate::connectors::tools_changed(&state),
            state.cancel.clone(),
        )));
    }
    let listener = std::net::TcpListener::bind(config.http.addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on http.addr {}: {e}", config.http.addr))?;
    let http_addr = listener.local_addr()?;
    let admin_addr = config
        .admin
        .socket_addr("admin.addr")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // With an admin listener the public port serves MCP only; without, the ops paths too.
    let public_ops = admin_addr.is_none();
    let data = web::Data::new(state.clone());
    let svc = web::Data::new(crate::http::mcp_service(&state));
    let routes_state = state.clone();
    let workers = match config.http.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    let server = HttpServer::new(move || {
        let st = routes_state.clone();
        App::new()
            .app_data(data.clone())
            .app_data(svc.clone())
            // Requests in flight, for the graceful stop (inflight.rs).
            .wrap(actix_web::middleware::from_fn(crate::inflight::track))
            // One span per request (method, route pattern, status), when traced.
            .wrap(actix_web::middleware::from_fn(
                mcpauth_runtime::telemetry::http_span,
            ))
            .configure(move |c| crate::http::routes(c, &st))
            .configure(|c| {
                if public_ops {
                    crate::http::ops_routes(c)
                }
            })
    })
    .workers(workers)
    // actix keeps the OS default (Nagle on). An event-stream answer goes out in several writes
    // (head, event, end of stream): with Nagle the later ones wait for the client's delayed ACK,
    // about 40 ms per tools/call (measured by scripts/bench.sh).
    .tcp_nodelay(true)
    .shutdown_timeout(config.http.shutdown_timeout_secs)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    let http = tokio::spawn(server);
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
    tracing::info!(%http_addr, ?admin_addr, resource = %config.resource, verifier = ?config.verifier.mode, "mcp-service started");
    Ok(Running {
        http_addr,
        admin_addr,
        state,
        admin,
        handle,
        http,
        tasks,
    })
}
