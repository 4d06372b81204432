//! For benchmarks only: mcp-service's `/mcp` **without authentication**, to measure what
//! authentication costs (`scripts/bench.sh`, scenario `mcp_whoami_noauth`). Never deploy it.
//!
//! It serves `/mcp` as mcp-service does (Origin/Host checks, then `http::serve_as`: the scope
//! gate, `tools/call` answered directly or through the same rmcp service — `McpServer`, the
//! `whoami` tool, sessions in Redis through `ClusterSessionManager`) from the same configuration
//! file, on the same number of actix workers. What it leaves out is exactly the authentication
//! step of `http::mcp`: reading the bearer token and verifying it (introspection cache or gRPC).
//! Every request runs as one fixed principal instead, holding every supported scope, so
//! `whoami` answers as usual.
//!
//! ```sh
//! cargo build --release -p mcp-service --example bench_noauth
//! target/release/examples/bench_noauth --config mcp.toml --addr 127.0.0.1:18083
//! ```
//!
//! It listens on loopback addresses only.
#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use clap::Parser;
use futures_util::future::BoxFuture;
use mcp_service::app::AppState;
use mcp_service::auth::{Principal, ScopePolicy, TokenVerifier, VerifyError};
use mcp_service::config::Config;
use mcp_service::http::{McpHttpService, check_origin_and_host, mcp_service, serve_as};
use mcp_service::sessions::SessionHub;
use mcp_service::tools::{ToolRegistry, WhoAmI};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "bench_noauth",
    about = "mcp-service's /mcp without authentication, for benchmarks only"
)]
struct Cli {
    /// mcp-service TOML configuration (resource, http, redis, sessions are used).
    #[arg(long)]
    config: PathBuf,
    /// Where to listen (loopback only) instead of http.addr.
    #[arg(long)]
    addr: SocketAddr,
}

/// `AppState` needs a verifier; this one is never called (nothing here verifies a token).
struct NoVerifier;

impl TokenVerifier for NoVerifier {
    fn verify<'a>(&'a self, _token: &'a str) -> BoxFuture<'a, Result<Principal, VerifyError>> {
        Box::pin(async {
            Err(VerifyError::Unavailable(
                "no verifier in bench_noauth".into(),
            ))
        })
    }
}

/// `/mcp` as `http::mcp` serves it, minus the bearer token and its verification.
async fn mcp(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    principal: web::Data<Principal>,
    svc: web::Data<McpHttpService>,
) -> actix_web::Result<HttpResponse> {
    if let Err(what) = check_origin_and_host(&state, &req) {
        return Ok(HttpResponse::Forbidden().json(
            json!({"error": "forbidden", "error_description": format!("{what} is not allowed")}),
        ));
    }
    serve_as(&req, payload, principal.get_ref().clone(), &state, &svc).await
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(
        cli.addr.ip().is_loopback(),
        "--addr must be a loopback address: this server has no authentication"
    );
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = Config::load(Some(&cli.config), &env).map_err(|e| anyhow::anyhow!("{e}"))?;
    mcpauth_runtime::init_logging("bench_noauth", &config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(config, cli.addr))
}

async fn serve(config: Config, addr: SocketAddr) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let stores = mcp_service::store::Stores::production(&config).await?;
    let tools = ToolRegistry::default();
    tools.register(Arc::new(WhoAmI::new(config.scopes_supported.clone())));
    let sessions = SessionHub::new(
        stores.sessions.clone(),
        stores.bus.clone(),
        &config.redis.key_prefix,
        std::time::Duration::from_secs(config.sessions.idle_timeout_secs),
    );
    let state = AppState {
        scopes: ScopePolicy::new(config.scope_implications.clone()),
        allowed_hosts: mcp_service::app::allowed_hosts(&config)?,
        config: config.clone(),
        verifier: Arc::new(NoVerifier),
        cache: None,
        tools,
        stores,
        metrics: mcpauth_runtime::init_metrics(),
        cancel: CancellationToken::new(),
        sessions,
        revoked: tokio::sync::broadcast::channel(1024).0,
        drain: mcpauth_runtime::Drain::default(),
        in_flight: Default::default(),
    };
    // The cluster channel, as mcp-service follows it.
    let hub = tokio::spawn(state.sessions.clone().run(state.cancel.clone()));
    let principal = web::Data::new(Principal {
        subject: "bench-noauth-user".into(),
        client_id: "bench-noauth-client".into(),
        scopes: config
            .scopes_supported
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        expires_at: mcp_service::verify::cache::now_secs() + 86_400,
        token_id: None,
        grant_id: None,
        access_token: None,
    });
    let svc = web::Data::new(mcp_service(&state));
    let data = web::Data::new(state.clone());
    let path = config.mcp_path();
    let workers = match config.http.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(svc.clone())
            .app_data(principal.clone())
            .route(&path, web::route().to(mcp))
            .route("/healthz", web::get().to(mcp_service::http::healthz))
    })
    .workers(workers)
    .tcp_nodelay(true) // as mcp-service
    .shutdown_timeout(config.http.shutdown_timeout_secs)
    .bind(addr)?
    .run();
    eprintln!("bench_noauth: /mcp WITHOUT authentication on http://{addr} (benchmarks only)");
    let result = server.await;
    state.cancel.cancel();
    hub.abort();
    Ok(result?)
}
