//! Traces (docs/operations.md "Traces") against an in-test OTLP/gRPC receiver: one MCP
//! `tools/call` continues the caller's `traceparent` through mcp-service, its introspection at
//! auth-service, token-vault's GetAccessToken and the vault's own introspection at auth-service;
//! no exported byte carries a token or credential; the mcp-service binary exports (and flushes at
//! SIGTERM) only when `telemetry.otlp_endpoint` is set.
//!
//! The in-process test installs the process-wide subscriber, so it relies on nextest running
//! each test in its own process (as `make test` does).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcpauth_runtime::{LogConfig, LogFormat, TelemetryConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use serde_json::{Value, json};

use crate::harness::*;

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const INTERNAL: i32 = 1;

/// auth-service's credential at the vault (permission `put`).
const PUT_CREDENTIAL: &str = "auth-service-put-credential-otel";
/// The user's token at the upstream API, kept by the vault.
const ALICE_UPSTREAM: &str = "gho_alice-upstream-token-otel";

fn sha256_hex(s: &str) -> String {
    auth_service::domain::token::hex(&auth_service::domain::token::hash(s))
}
fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}
fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// An upstream API that answers `GET /repos/{owner}/{repo}` for alice's upstream token only.
async fn upstream_api() -> (String, actix_web::dev::ServerHandle) {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    async fn repo(req: HttpRequest) -> HttpResponse {
        let auth = req.headers().get("authorization");
        if auth.and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {ALICE_UPSTREAM}")) {
            return HttpResponse::Unauthorized().json(json!({"message": "Bad credentials"}));
        }
        let (owner, name) = (req.match_info().get("owner"), req.match_info().get("repo"));
        HttpResponse::Ok()
            .json(json!({"full_name": format!("{}/{}", owner.unwrap(), name.unwrap())}))
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(|| App::new().route("/repos/{owner}/{repo}", web::get().to(repo)))
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
    let handle = server.handle();
    tokio::spawn(server);
    (base, handle)
}

/// auth-service + mcp-service (harness) with one connector, token-vault (its own database),
/// and the upstream API.
struct Env {
    s: Stack,
    vault: token_vault::Running,
    vault_addr: String,
    vault_db: String,
    upstream: actix_web::dev::ServerHandle,
}

impl Env {
    async fn start() -> Env {
        let (upstream_base, upstream) = upstream_api().await;
        let vault_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let vault_addr = format!("http://127.0.0.1:{vault_port}");
        let vault_prefix = format!("mcptest-otelvault-{}", uuid::Uuid::new_v4().simple());
        let p = "MCPAUTH__UPSTREAM__PROVIDERS__GITHUB__";
        let auth_env: Vec<(&'static str, String)> = vec![
            (leak(format!("{p}KIND")), "oauth2".into()),
            (leak(format!("{p}DISPLAY_NAME")), "GitHub".into()),
            (
                leak(format!("{p}AUTHORIZATION_ENDPOINT")),
                "https://github.example/login/oauth/authorize".into(),
            ),
            (
                leak(format!("{p}TOKEN_ENDPOINT")),
                "https://github.example/login/oauth/access_token".into(),
            ),
            (
                leak(format!("{p}USERINFO_ENDPOINT")),
                "https://api.github.example/user".into(),
            ),
            (leak(format!("{p}SUBJECT_CLAIM")), "id".into()),
            (leak(format!("{p}CLIENT_ID")), "gh-client".into()),
            (leak(format!("{p}CLIENT_SECRET")), "gh-secret".into()),
            ("MCPAUTH__VAULT__ADDR", vault_addr.clone()),
            ("MCPAUTH__VAULT__CREDENTIAL", PUT_CREDENTIAL.into()),
        ];
        let mcp_toml = format!(
            r#"
[vault]
addr = "{vault_addr}"
credential = "{CREDENTIAL}"
key_prefix = "{vault_prefix}"

[providers.github]
display_name = "GitHub"
description = "Repositories."

[[connectors]]
name = "github_get_repo"
description = "Reads a repository."
provider = "github"
url = "{upstream_base}/repos/{{owner}}/{{repo}}"
input_schema = {{ type = "object", properties = {{ owner = {{ type = "string" }}, repo = {{ type = "string" }} }}, required = ["owner", "repo"] }}
"#
        );
        let s = Stack::start_with(StackOptions {
            auth_env,
            mcp_toml,
            ..Default::default()
        })
        .await;

        let vault_db = format!("mcpauth_mcpotel_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&admin_url()).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {vault_db}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let db_url = format!("{}/{vault_db}", admin_url().rsplit_once('/').unwrap().0);
        let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
        token_vault::store::migrate(&pool).await.unwrap();
        pool.close().await;
        let auth_grpc = s.auth.as_ref().unwrap().grpc_addr;
        let toml = format!(
            r#"
[grpc]
addr = "127.0.0.1:{vault_port}"

[[grpc.callers]]
name = "mcp-service"
credential_sha256 = "{mcp_digest}"
permissions = ["get"]

[[grpc.callers]]
name = "auth-service"
credential_sha256 = "{put_digest}"
permissions = ["put"]

[database]
url = "{db_url}"
max_connections = 4

[redis]
url = "{redis}"
key_prefix = "{vault_prefix}"
auth_key_prefix = "{vault_prefix}-auth"

[introspection]
addr = "http://{auth_grpc}"
credential = "{CREDENTIAL}"
accepted_resources = ["{resource}"]

[encryption]
current_key = "k1"

[[encryption.keys]]
id = "k1"
secret = "{key}"

[providers.github]
token_endpoint = "https://github.example/login/oauth/access_token"
client_id = "gh-client"
client_secret = "gh-secret"
"#,
            mcp_digest = sha256_hex(CREDENTIAL),
            put_digest = sha256_hex(PUT_CREDENTIAL),
            redis = redis_url(),
            resource = s.resource,
            key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [9u8; 32]),
        );
        let file = std::env::temp_dir().join(format!("{vault_prefix}.toml"));
        std::fs::write(&file, toml).unwrap();
        let cfg = token_vault::Config::load(Some(&file), &HashMap::new()).unwrap();
        let _ = std::fs::remove_file(&file);
        let vault = token_vault::start(cfg, mcpauth_runtime::init_metrics())
            .await
            .unwrap();
        Env {
            s,
            vault,
            vault_addr,
            vault_db,
            upstream,
        }
    }

    async fn stop(self) {
        self.vault.shutdown().await;
        self.upstream.stop(false).await;
        if let Ok(admin) = sqlx::PgPool::connect(&admin_url()).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.vault_db
            )))
            .execute(&admin)
            .await;
            admin.close().await;
        }
        self.s.stop().await;
    }

    /// What auth-service does after a connect: stores the user's upstream token.
    async fn put_credential(&self, user_id: &str) {
        use mcpauth_proto::v1::token_vault_client::TokenVaultClient;
        use mcpauth_proto::v1::{PutCredentialRequest, UpstreamTokens};
        let mut client = TokenVaultClient::connect(self.vault_addr.clone())
            .await
            .unwrap();
        let mut req = tonic::Request::new(PutCredentialRequest {
            user_id: user_id.to_owned(),
            provider: "github".into(),
            tokens: Some(UpstreamTokens {
                access_token: ALICE_UPSTREAM.to_owned(),
                refresh_token: String::new(),
                expires_at: now() + 3600,
                scopes: vec!["repo".into()],
                token_type: "Bearer".into(),
            }),
            upstream_issuer: "https://github.example".into(),
            upstream_subject: format!("gh-{user_id}"),
        });
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {PUT_CREDENTIAL}").parse().unwrap(),
        );
        client.put_credential(req).await.unwrap();
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn call(name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

/// The subject of `token` (the `whoami` tool).
async fn subject(s: &Stack, token: &str, sid: &str) -> String {
    let r = s
        .post(Some(token), call("whoami", json!({})), Some(sid))
        .await;
    let last = messages(r).await.last().unwrap().clone();
    let text = last["result"]["content"][0]["text"].as_str().unwrap();
    serde_json::from_str::<Value>(text).unwrap()["subject"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An OTLP/gRPC trace receiver that keeps every export request.
#[derive(Clone, Default)]
struct Collector {
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.received.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

impl Collector {
    /// Starts the receiver; returns it and its `http://` endpoint.
    async fn start() -> (Collector, String) {
        let c = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(c.clone()))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        (c, url)
    }

    fn spans(&self) -> Vec<Exported> {
        let mut out = vec![];
        for req in self.received.lock().unwrap().iter() {
            for rs in &req.resource_spans {
                let service = rs
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .map(|kv| text(&kv.value))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push(Exported {
                            service: service.clone(),
                            name: s.name.clone(),
                            kind: s.kind,
                            trace_id: hex(&s.trace_id),
                            span_id: hex(&s.span_id),
                            parent_span_id: hex(&s.parent_span_id),
                            attributes: s
                                .attributes
                                .iter()
                                .map(|kv| (kv.key.clone(), text(&kv.value)))
                                .collect(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Everything received, as text (every name, attribute, event and resource).
    fn dump(&self) -> String {
        format!("{:?}", self.received.lock().unwrap())
    }
}

/// A W3C `traceparent` with a fresh trace id; returns (header, trace id, parent span id).
fn traceparent() -> (String, String, String) {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    (format!("00-{trace}-{span}-01"), trace, span)
}

fn find<'a>(spans: &'a [Exported], name: &str, kind: i32) -> Vec<&'a Exported> {
    spans
        .iter()
        .filter(|s| s.name == name && s.kind == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tool_call_is_one_trace_across_mcp_auth_and_vault() {
    let (collector, endpoint) = Collector::start().await;
    let telemetry = mcpauth_runtime::telemetry::init(
        "mcpauth-it",
        &LogConfig {
            filter: "warn".into(),
            format: LogFormat::Json,
        },
        &TelemetryConfig {
            otlp_endpoint: endpoint,
            ..TelemetryConfig::default()
        },
    )
    .unwrap();
    assert!(
        telemetry.enabled(),
        "another subscriber owns this process: run with cargo nextest (one process per test)"
    );

    let e = Env::start().await;
    let s = &e.s;
    let first = s.access_token().await;
    let sid = s.session(&first).await;
    let user = subject(s, &first, &sid).await;
    e.put_credential(&user).await;
    // A second token of the same user: nothing has introspected it yet, so the traced call
    // below goes to auth-service from mcp-service and from token-vault.
    let token = s.access_token().await;
    let (header, trace_id, caller_span) = traceparent();
    let mut result = Value::Null;
    for _ in 0..50 {
        let r = s
            .http
            .post(format!("{}/mcp", s.mcp_base))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-11-25")
            .header("traceparent", &header)
            .bearer_auth(&token)
            .json(&call(
                "github_get_repo",
                json!({"owner": "octo", "repo": "hello"}),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        result = messages(r).await.last().unwrap().clone();
        // The connection reaches mcp-service's tool list asynchronously (Redis fan-out).
        if result["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("octo/hello"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        result["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("octo/hello")),
        "{result}"
    );

    // Export what is queued (blocking: off the runtime's workers).
    let flush = tokio::task::spawn_blocking(move || {
        telemetry.flush();
        telemetry
    });
    let mut telemetry = flush.await.unwrap();
    let all = collector.spans();
    let spans: Vec<Exported> = all
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .cloned()
        .collect();
    let listing = spans
        .iter()
        .map(|s| {
            format!(
                "{} kind={} {}<-{}",
                s.name, s.kind, s.span_id, s.parent_span_id
            )
        })
        .collect::<Vec<_>>()
        .join("\n");

    // mcp-service's request span continues the caller's trace.
    let http = find(&spans, "POST /mcp", SERVER);
    assert_eq!(http.len(), 1, "{listing}");
    let http = http[0];
    assert_eq!(http.parent_span_id, caller_span);
    assert_eq!(http.attributes["http.route"], "/mcp");
    assert_eq!(http.attributes["http.response.status_code"], "200");

    // mcp-service → auth-service: token introspection over gRPC, in the request.
    let introspect = "mcpauth.v1.TokenIntrospection/Introspect";
    let mcp_introspect = find(&spans, introspect, CLIENT)
        .into_iter()
        .find(|c| c.parent_span_id == http.span_id)
        .unwrap_or_else(|| panic!("mcp-service's introspection call:\n{listing}"));
    let auth_introspect = find(&spans, introspect, SERVER);
    assert!(
        auth_introspect
            .iter()
            .any(|s| s.parent_span_id == mcp_introspect.span_id),
        "auth-service continues mcp-service's introspection call:\n{listing}"
    );

    // The tool, then mcp-service → token-vault → auth-service.
    let tool = find(&spans, "tools/call github_get_repo", INTERNAL);
    assert_eq!(tool.len(), 1, "{listing}");
    assert_eq!(tool[0].parent_span_id, http.span_id);
    let get = "mcpauth.v1.TokenVault/GetAccessToken";
    let get_client = find(&spans, get, CLIENT);
    assert_eq!(get_client.len(), 1, "{listing}");
    assert_eq!(get_client[0].parent_span_id, tool[0].span_id);
    let get_server = find(&spans, get, SERVER);
    assert_eq!(get_server.len(), 1, "{listing}");
    assert_eq!(get_server[0].parent_span_id, get_client[0].span_id);
    assert_eq!(get_server[0].attributes["rpc.grpc.status_code"], "0");
    let vault_introspect = find(&spans, introspect, CLIENT)
        .into_iter()
        .find(|c| c.parent_span_id == get_server[0].span_id)
        .unwrap_or_else(|| panic!("token-vault's own introspection:\n{listing}"));
    assert!(
        auth_introspect
            .iter()
            .any(|s| s.parent_span_id == vault_introspect.span_id),
        "auth-service continues token-vault's introspection call:\n{listing}"
    );
    assert!(spans.iter().all(|s| s.service == "mcpauth-it"));

    // Nothing secret in anything exported during the whole test.
    let dump = collector.dump();
    assert!(!all.is_empty());
    for secret in [
        first.as_str(),
        token.as_str(),
        ALICE_UPSTREAM,
        CREDENTIAL,
        PUT_CREDENTIAL,
        &sid,
    ] {
        assert!(
            !dump.contains(secret),
            "an exported span carries a secret ({} chars)",
            secret.len()
        );
    }
    assert!(!dump.to_lowercase().contains("bearer"));

    e.stop().await;
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .unwrap();
}

/// A child process killed if the test fails before it exits.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The mcp-service binary with a static key (no auth-service needed), telemetry on or off;
/// one traced request, then SIGTERM. Returns what the collector received.
async fn run_binary(telemetry_on: bool) -> (Collector, String, String, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (collector, endpoint) = Collector::start().await;
    let key = format!("static-key-{}", uuid::Uuid::new_v4().simple());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prefix = format!("mcptest-otel-{}", uuid::Uuid::new_v4().simple());
    let config = format!(
        r#"
resource = "http://127.0.0.1:{port}/mcp"
authorization_servers = ["http://127.0.0.1:1"]

[http]
addr = "127.0.0.1:{port}"
workers = 1
shutdown_timeout_secs = 5

[log]
filter = "warn"

[verifier]
mode = "static_keys"

[[verifier.static_keys]]
name = "probe"
key_sha256 = "{}"
scopes = ["mcp:tools.read"]

[redis]
url = "{}"
key_prefix = "{prefix}"
auth_key_prefix = "{prefix}-auth"
"#,
        auth_service::domain::token::hex(&auth_service::domain::token::hash(&key)),
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    );
    let file = std::env::temp_dir().join(format!("{prefix}.toml"));
    std::fs::write(&file, config).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-service"));
    cmd.arg("--config")
        .arg(&file)
        .env_remove("RUST_LOG")
        // The SDK's own variable must not turn traces on by itself.
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint);
    if telemetry_on {
        cmd.env("MCPAUTH__TELEMETRY__OTLP_ENDPOINT", &endpoint);
    }
    let mut child = Child(cmd.spawn().unwrap());
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "mcp-service did not start");
    let (header, trace_id, caller_span) = traceparent();
    let r = http
        .post(format!("{base}/mcp?access_token={key}"))
        .header("accept", "application/json, text/event-stream")
        .header("traceparent", header)
        .header("cookie", format!("session={key}"))
        .bearer_auth(&key)
        .json(&initialize())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let _ = r.text().await;
    // Graceful stop: the spans still queued must be flushed before the process exits (the
    // batch exporter would otherwise wait 5 s, long after this process is gone).
    let pid = child.0.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut status = None;
    for _ in 0..150 {
        status = child.0.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = status.expect("mcp-service stops on SIGTERM within 15 s");
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_file(&file);
    (collector, trace_id, caller_span, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exports_when_configured_and_flushes_at_shutdown() {
    let (collector, trace_id, caller_span, key) = run_binary(true).await;
    let spans = collector.spans();
    let http = spans
        .iter()
        .find(|s| s.name == "POST /mcp" && s.kind == SERVER)
        .unwrap_or_else(|| panic!("no request span: {spans:?}"));
    assert_eq!(http.trace_id, trace_id, "the inbound traceparent continues");
    assert_eq!(http.parent_span_id, caller_span);
    assert_eq!(
        http.service, "mcp-service",
        "service.name defaults per service"
    );
    assert!(
        !spans.iter().any(|s| s.name.contains("healthz")),
        "probes are not traced: {spans:?}"
    );
    let dump = collector.dump();
    assert!(
        !dump.contains(&key),
        "the key (Authorization, query, cookie) reached an exported span"
    );
    assert!(!dump.contains("access_token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exports_nothing_when_telemetry_is_off() {
    let (collector, ..) = run_binary(false).await;
    // The process has exited: anything it would have sent has arrived.
    assert!(
        collector.received.lock().unwrap().is_empty(),
        "telemetry off, yet spans were exported: {}",
        collector.dump()
    );
}
