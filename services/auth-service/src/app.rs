//! Wiring: the HTTP and gRPC servers over the shared state ([`AppState`], built in `state.rs`
//! from configuration and [`Stores`]), background tasks, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use mcpauth_runtime::MetricsHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::state::{AppState, build_state_with};
use crate::stores::Stores;

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

/// Starts auth-service on the production stores configured (Postgres): see [`start_with`].
pub async fn start(config: Config, metrics: MetricsHandle) -> anyhow::Result<Running> {
    let stores = Stores::from_config(&config).await?;
    start_with(config, stores, metrics).await
}

/// Starts auth-service on `stores`: binds both listeners (port 0 picks a free one, for tests),
/// loads the deny list, and spawns the background tasks.
pub async fn start_with(
    config: Config,
    stores: Stores,
    metrics: MetricsHandle,
) -> anyhow::Result<Running> {
    let postgres_pool = stores.postgres_pool.clone();
    let (state, audit_writer) = build_state_with(config, stores, metrics).await?;
    crate::background::initial_sync(&state).await?;
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut tasks = crate::background::spawn(&state, shutdown_rx.clone());
    tasks.push(mcpauth_runtime::pool_metrics::spawn(
        postgres_pool,
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
