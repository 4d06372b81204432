//! Wiring: state from configuration, the gRPC server, the optional metrics/health HTTP
//! listener, the revocation follower, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use mcpauth_runtime::MetricsHandle;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::cache::{CredentialCache, Invalidations};
use crate::config::Config;
use crate::events::ConnectionEvents;
use crate::grpc::VaultService;
use crate::introspect::Introspector;
use crate::lock::RefreshLocks;
use crate::store::CredentialStore;
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
    let keys = config.key_ring()?;
    let pool = crate::store::connect_postgres(
        config.database.url.expose(),
        config.database.max_connections,
    )
    .await
    .map_err(|e| anyhow::anyhow!("database.url: {e}"))?;
    let (redis_client, redis) = mcpauth_runtime::start_redis(
        "redis",
        config.redis.url.expose(),
        config.redis.tls.as_ref(),
        config.redis.pool_size,
    )
    .await?;
    let introspector = Introspector::new(&config.introspection)?;
    let (audit, audit_writer) = AuditLog::start(pool.clone());
    let upstream = UpstreamClient::new(Duration::from_millis(config.refresh.upstream_timeout_ms))?;
    let vault = Vault::new(
        CredentialStore::new(pool.clone()),
        keys,
        upstream,
        RefreshLocks::new(
            redis.clone(),
            &config.redis.key_prefix,
            Duration::from_millis(config.refresh.lock_ttl_ms),
        ),
        ConnectionEvents::new(redis.clone(), &config.redis.key_prefix),
        audit,
        config.providers.clone(),
        config.refresh.clone(),
        CredentialCache::new(crate::cache::TTL, crate::cache::MAX_ENTRIES),
        Invalidations::new(redis.clone(), &config.redis.key_prefix),
    );
    let tls = match &config.grpc.tls {
        Some(t) => Some(crate::grpc::tls_config(t)?),
        None => None,
    };
    let cancel = CancellationToken::new();
    let tasks = vec![
        mcpauth_runtime::pool_metrics::spawn(Some(pool.clone()), Some(redis.clone())),
        tokio::spawn(crate::revocations::follow(
            redis_client.clone(),
            format!("{}:events", config.redis.auth_key_prefix),
            introspector.cache().clone(),
            cancel.clone(),
        )),
        tokio::spawn(crate::cache::follow(
            redis_client,
            crate::cache::channel(&config.redis.key_prefix),
            vault.cache().clone(),
            cancel.clone(),
        )),
    ];

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
                pool,
                redis,
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
    tracing::info!(%grpc_addr, ?http_addr, providers = ?config.providers.keys().collect::<Vec<_>>(), "token-vault started");
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
    pool: PgPool,
    redis: deadpool_redis::Pool,
    drain: mcpauth_runtime::Drain,
}

async fn metrics_route(state: web::Data<OpsState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// Ready when Postgres and Redis answer and no shutdown is under way (503 `draining` then).
async fn readyz(state: web::Data<OpsState>) -> HttpResponse {
    if state.drain.is_draining() {
        return mcpauth_runtime::ops::draining_response();
    }
    let pg = sqlx::query("SELECT 1").execute(&state.pool).await.is_ok();
    let redis = async {
        let mut c = state.redis.get().await.ok()?;
        redis::cmd("PING").query_async::<String>(&mut c).await.ok()
    }
    .await
    .is_some();
    if pg && redis {
        HttpResponse::Ok().body("ready")
    } else {
        HttpResponse::ServiceUnavailable().body(format!("postgres: {pg}, redis: {redis}"))
    }
}
