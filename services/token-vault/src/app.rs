//! Wiring: state from configuration, the gRPC server, the optional metrics/health HTTP
//! listener, the revocation follower, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use mcpauth_runtime::MetricsHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::cache::{CredentialCache, Invalidations};
use crate::changes::Changes;
use crate::config::Config;
use crate::events::ConnectionEvents;
use crate::grpc::VaultService;
use crate::introspect::Introspector;
use crate::store::Stores;
use crate::upstream::UpstreamClient;
use crate::vault::Vault;

/// A running token-vault: its bound addresses, and what shutdown stops.
pub struct Running {
    pub grpc_addr: SocketAddr,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`), when `admin.addr` (or the older
    /// `http.addr`) is set.
    pub http_addr: Option<SocketAddr>,
    pub vault: Vault,
    pub introspector: Introspector,
    shutdown: tokio::sync::watch::Sender<bool>,
    cancel: CancellationToken,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    admin: Option<mcpauth_runtime::ops::AdminServer>,
    drain: mcpauth_runtime::Drain,
    drain_delay: Duration,
    tasks: Vec<JoinHandle<()>>,
    audit_writer: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, drains in-flight calls, flushes the audit trail.
    pub async fn shutdown(self) {
        self.drain.begin();
        let _ = self.shutdown.send(true);
        self.cancel.cancel();
        let _ = self.grpc.await;
        if let Some(admin) = self.admin {
            admin.stop().await;
        }
        for t in self.tasks {
            t.abort();
        }
        let Running {
            vault,
            introspector,
            audit_writer,
            ..
        } = self;
        // The writer drains what is queued once the last handle is gone.
        drop(vault);
        drop(introspector);
        let _ = tokio::time::timeout(Duration::from_secs(30), audit_writer).await;
    }

    /// Runs until `signal` resolves, then drains (`/readyz` 503 and gRPC health `NOT_SERVING`
    /// for `shutdown.drain_delay_secs` while calls are still served) and shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        mcpauth_runtime::ops::drain(&self.drain, self.drain_delay).await;
        self.shutdown().await;
    }
}

/// Starts token-vault: connects Postgres and Redis, binds the gRPC listener (port 0 picks a
/// free one, for tests) and the optional HTTP listener. Migrations are not run here
/// (`token-vault migrate`), so replicas never race on them.
pub async fn start(config: Config, metrics: MetricsHandle) -> anyhow::Result<Running> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The key ring first: a configuration error is reported before any connection is tried.
    config.key_ring()?;
    let stores = Stores::connect(&config).await?;
    start_with(config, stores, metrics).await
}

/// Starts token-vault on `stores` (production: [`Stores::connect`]; the embedded single-process
/// mode: [`Stores::embedded`]). The rest is as [`start`].
pub async fn start_with(
    config: Config,
    stores: Stores,
    metrics: MetricsHandle,
) -> anyhow::Result<Running> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let keys = config.key_ring()?;
    let introspector = Introspector::new(&config)?;
    let (audit, audit_writer) = AuditLog::start(stores.audit.clone());
    let upstream = UpstreamClient::new(Duration::from_millis(config.refresh.upstream_timeout_ms))?;
    let changes = Changes {
        cache: CredentialCache::new(crate::cache::TTL, crate::cache::MAX_ENTRIES),
        invalidations: Invalidations::new(stores.bus.clone(), &config.redis.key_prefix),
        events: ConnectionEvents::new(stores.bus.clone(), &config.redis.key_prefix),
        audit,
    };
    let vault = Vault::new(
        stores.credentials.clone(),
        stores.locks.clone(),
        keys,
        upstream,
        changes,
        config.providers.clone(),
        config.refresh.clone(),
    );
    let tls = match &config.grpc.tls {
        Some(t) => Some(crate::grpc::tls_config(t)?),
        None => None,
    };
    let cancel = CancellationToken::new();
    let mut tasks = vec![tokio::spawn(crate::cache::follow(
        stores.bus.clone(),
        crate::cache::channel(&config.redis.key_prefix),
        vault.cache().clone(),
        cancel.clone(),
    ))];
    // auth-service's revocations evict what its introspection said (the external modes have
    // no such feed).
    if let Some(cache) = introspector.cache() {
        tasks.push(tokio::spawn(crate::revocations::follow(
            stores.bus.clone(),
            format!("{}:events", config.redis.auth_key_prefix),
            cache.clone(),
            cancel.clone(),
        )));
    }
    tasks.extend(stores.spawn_pool_metrics());

    let listener = TcpListener::bind(config.grpc.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on grpc.addr {}: {e}", config.grpc.addr))?;
    let grpc_addr = listener.local_addr()?;
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let drain = mcpauth_runtime::Drain::default();
    let service = VaultService::new(vault.clone(), introspector.clone(), &config.grpc.callers);
    let grpc = tokio::spawn(crate::grpc::serve(
        service,
        tls,
        listener,
        shutdown_rx,
        drain.clone(),
    ));

    let admin = match config.admin_addr()? {
        None => None,
        Some(addr) => {
            let state = web::Data::new(OpsState {
                metrics,
                stores: stores.clone(),
                drain: drain.clone(),
            });
            Some(mcpauth_runtime::ops::AdminServer::start(
                "admin.addr",
                addr,
                move |c| {
                    c.app_data(state.clone())
                        .route(
                            "/healthz",
                            web::get().to(|| async { HttpResponse::Ok().body("ok") }),
                        )
                        .route("/readyz", web::get().to(readyz))
                        .route("/metrics", web::get().to(metrics_route));
                },
            )?)
        }
    };
    let http_addr = admin.as_ref().map(|a| a.addr);
    tracing::info!(%grpc_addr, ?http_addr, providers = ?config.providers.keys().collect::<Vec<_>>(),
        storage = %stores.describe(), "token-vault started");
    Ok(Running {
        grpc_addr,
        http_addr,
        vault,
        introspector,
        shutdown,
        cancel,
        grpc,
        admin,
        drain,
        drain_delay: config.shutdown.drain_delay(),
        tasks,
        audit_writer,
    })
}

struct OpsState {
    metrics: MetricsHandle,
    stores: Stores,
    drain: mcpauth_runtime::Drain,
}

async fn metrics_route(state: web::Data<OpsState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// Ready when the stores answer (Postgres and Redis in production) and no shutdown is under way
/// (503 `draining` then).
async fn readyz(state: web::Data<OpsState>) -> HttpResponse {
    if state.drain.is_draining() {
        return mcpauth_runtime::ops::draining_response();
    }
    match state.stores.ready().await {
        Ok(()) => HttpResponse::Ok().body("ready"),
        Err(what) => HttpResponse::ServiceUnavailable().body(what),
    }
}
