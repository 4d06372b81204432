//! Connector tools (docs/connectors.md): a real auth-service, a real token-vault (its own fresh
//! database, the same Redis under a unique prefix) and an in-test upstream API that accepts only
//! the users' upstream tokens and records every Authorization header it receives.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine as _;
use mcpauth_proto::v1::token_vault_client::TokenVaultClient;
use mcpauth_proto::v1::{PutCredentialRequest, UpstreamTokens};
use serde_json::{Value, json};

use crate::harness::*;

/// auth-service's credential at the vault in these tests (permission `put`).
pub(crate) const PUT_CREDENTIAL: &str = "auth-service-put-credential";
pub(crate) const ALICE_UPSTREAM: &str = "gho_alice-upstream-token";
const BOB_UPSTREAM: &str = "gho_bob-upstream-token";
/// What the upstream token endpoint issues when alice's token is refreshed.
const ALICE_REFRESHED: &str = "gho_alice-refreshed-token";
const ALICE_REFRESH: &str = "ghr_alice-refresh-token-1";

fn sha256_hex(s: &str) -> String {
    auth_service::domain::token::hex(&auth_service::domain::token::hash(s))
}
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}
fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// One request the upstream API received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path_and_query: String,
    authorization: String,
    body: String,
}

/// The upstream API: `/repos/{owner}/{repo}` (GET), `/repos/{owner}/{repo}/issues` (POST),
/// `/status/{code}` (answers that status). Only the two users' upstream tokens are accepted.
struct Upstream {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Tokens the upstream stopped accepting (as after a revocation at the provider).
    revoked: Revoked,
    handle: actix_web::dev::ServerHandle,
}

#[derive(Clone, Default)]
struct Revoked(Arc<Mutex<HashSet<String>>>);

async fn upstream_handler(
    req: HttpRequest,
    body: web::Bytes,
    seen: web::Data<Arc<Mutex<Vec<Seen>>>>,
    revoked: web::Data<Revoked>,
) -> HttpResponse {
    let authorization = req
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        path_and_query: req.uri().to_string(),
        authorization: authorization.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if req.path() == "/login/oauth/access_token" {
        // The upstream token endpoint: one refresh token, one rotation. It answers slowly, so
        // that concurrent callers overlap with the refresh in flight.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(&body).into_owned().collect();
        if form.get("grant_type").map(String::as_str) != Some("refresh_token")
            || form.get("refresh_token").map(String::as_str) != Some(ALICE_REFRESH)
        {
            return HttpResponse::BadRequest().json(json!({"error": "invalid_grant"}));
        }
        return HttpResponse::Ok().json(json!({
            "access_token": ALICE_REFRESHED, "token_type": "bearer", "expires_in": 3600,
            "refresh_token": "ghr_alice-refresh-token-2", "scope": "repo",
        }));
    }
    let refused = authorization
        .strip_prefix("Bearer ")
        .is_some_and(|t| revoked.0.lock().unwrap().contains(t));
    let user = match authorization.as_str() {
        _ if refused => {
            return HttpResponse::Unauthorized().json(json!({"message": "Bad credentials"}));
        }
        a if a == format!("Bearer {ALICE_UPSTREAM}") => "alice",
        a if a == format!("Bearer {ALICE_REFRESHED}") => "alice",
        a if a == format!("Bearer {BOB_UPSTREAM}") => "bob",
        _ => {
            return HttpResponse::Unauthorized().json(json!({"message": "Bad credentials"}));
        }
    };
    let path = req.path().to_owned();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method().as_str(), parts.as_slice()) {
        ("GET", ["repos", owner, repo]) => HttpResponse::Ok().json(json!({
            "full_name": format!("{owner}/{repo}"), "as": user, "query": req.query_string(),
        })),
        ("POST", ["repos", _, _, "issues"]) => {
            let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            HttpResponse::Created().json(json!({"number": 1, "title": b["title"], "as": user}))
        }
        ("GET", ["status", code]) => {
            let code: u16 = code.parse().unwrap();
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).json(
                json!({"message": format!("simulated failure {code}"), "documentation_url": "https://docs.example/errors"}),
            )
        }
        _ => HttpResponse::NotFound().json(json!({"message": "Not Found"})),
    }
}

impl Upstream {
    async fn start() -> Upstream {
        let seen: Arc<Mutex<Vec<Seen>>> = Default::default();
        let revoked = Revoked::default();
        let data = web::Data::new(seen.clone());
        let revoked_data = web::Data::new(revoked.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(revoked_data.clone())
                .default_service(web::to(upstream_handler))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Upstream {
            base,
            seen,
            revoked,
            handle,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn revoke(&self, token: &str) {
        self.revoked.0.lock().unwrap().insert(token.to_owned());
    }
}

/// Extra configuration for [`Env::start_configured`].
#[derive(Default)]
pub(crate) struct EnvExtra {
    /// TOML appended to auth-service's configuration (e.g. a static client).
    pub auth_toml: String,
    /// Whether token-vault gets an admin listener (`/readyz`) on a free port.
    pub vault_admin: bool,
}

/// auth-service + mcp-service (harness), token-vault and the upstream API.
pub(crate) struct Env {
    s: Stack,
    vault: Option<token_vault::Running>,
    /// The vault's configuration, to start more replicas of it.
    vault_toml: String,
    vault_port: u16,
    upstream: Upstream,
    vault_addr: String,
    vault_db: String,
    /// Every internal gRPC hop runs over mTLS with this PKI.
    tls: bool,
}

fn mcp_toml(vault_port: u16, vault_prefix: &str, upstream: &str) -> String {
    format!(
        r#"
[vault]
addr = "http://127.0.0.1:{vault_port}"
credential = "{CREDENTIAL}"
key_prefix = "{vault_prefix}"

[providers.github]
display_name = "GitHub"
description = "Repositories and issues."

[[connectors]]
name = "github_get_repo"
description = "Reads a repository."
provider = "github"
url = "{upstream}/repos/{{owner}}/{{repo}}"
input_schema = {{ type = "object", properties = {{ owner = {{ type = "string" }}, repo = {{ type = "string" }}, per_page = {{ type = "integer" }} }}, required = ["owner", "repo"] }}
query = ["per_page"]

[[connectors]]
name = "github_status"
description = "Answers with the given HTTP status."
provider = "github"
url = "{upstream}/status/{{code}}"
input_schema = '{{"type": "object", "properties": {{"code": {{"type": "integer"}}}}, "required": ["code"]}}'

[[connectors]]
name = "github_create_issue"
description = "Opens an issue."
provider = "github"
method = "POST"
url = "{upstream}/repos/{{owner}}/{{repo}}/issues"
input_schema = {{ type = "object", properties = {{ owner = {{ type = "string" }}, repo = {{ type = "string" }}, title = {{ type = "string" }} }}, required = ["owner", "repo", "title"] }}
body = ["title"]
scopes = ["mcp:tools.write"]
"#
    )
}

impl Env {
    async fn start() -> Env {
        Self::start_with(None).await
    }

    /// With `pki`, auth-service's and token-vault's gRPC listeners require client certificates
    /// and every client (mcp-service's verifier, connect and vault clients, token-vault's
    /// introspection, auth-service's vault client) has a `[<section>.tls]` table.
    pub(crate) async fn start_with(pki: Option<&crate::internal_tls::Pki>) -> Env {
        Self::start_configured(pki, EnvExtra::default()).await
    }

    /// [`Env::start_with`] with `extra` configuration (the fault tests).
    pub(crate) async fn start_configured(
        pki: Option<&crate::internal_tls::Pki>,
        extra: EnvExtra,
    ) -> Env {
        let upstream = Upstream::start().await;
        let vault_port = free_port();
        let vault_addr = match pki {
            Some(_) => format!("https://localhost:{vault_port}"),
            None => format!("http://127.0.0.1:{vault_port}"),
        };
        let vault_prefix = format!("mcptest-vault-{}", uuid::Uuid::new_v4().simple());
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
        let mut auth_env = auth_env;
        let mut mcp_env = vec![];
        let auth_grpc_port = free_port();
        if let Some(pki) = pki {
            use crate::internal_tls::leak_env;
            auth_env.extend(leak_env(pki.server_env("MCPAUTH__")));
            auth_env.extend(leak_env(pki.client_env("MCPAUTH__VAULT__", true)));
            auth_env.push(("MCPAUTH__GRPC__ADDR", format!("127.0.0.1:{auth_grpc_port}")));
            mcp_env.extend(leak_env(pki.client_env("MCPAUTH__VERIFIER__GRPC__", true)));
            mcp_env.push((
                "MCPAUTH__VERIFIER__GRPC__ADDR",
                format!("https://localhost:{auth_grpc_port}"),
            ));
            mcp_env.extend(leak_env(pki.client_env("MCPAUTH__VAULT__", true)));
            mcp_env.push(("MCPAUTH__VAULT__ADDR", vault_addr.clone()));
        }
        let s = Stack::start_with(StackOptions {
            auth_env,
            mcp_env,
            mcp_toml: mcp_toml(vault_port, &vault_prefix, &upstream.base),
            auth_toml: extra.auth_toml,
            ..Default::default()
        })
        .await;

        // token-vault: its own database, introspecting at the test's auth-service.
        let vault_db = format!("mcpauth_mcpvault_{}", uuid::Uuid::new_v4().simple());
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
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let (introspection_addr, tls_toml) = match pki {
            Some(pki) => (
                format!("https://localhost:{auth_grpc_port}"),
                format!(
                    "\n[grpc.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\n\
                     \n[introspection.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                    pki.file("server.pem"),
                    pki.file("server.key"),
                    pki.file("ca.pem"),
                    pki.file("ca.pem"),
                    pki.file("client.pem"),
                    pki.file("client.key"),
                ),
            ),
            None => (
                format!("http://{}", s.auth.as_ref().unwrap().grpc_addr),
                String::new(),
            ),
        };
        let vault_admin = if extra.vault_admin {
            "[admin]\naddr = \"127.0.0.1:0\"\n"
        } else {
            ""
        };
        let toml = format!(
            r#"{vault_admin}
[grpc]
addr = "127.0.0.1:{vault_port}"

[[grpc.callers]]
name = "mcp-service"
credential_sha256 = "{}"
permissions = ["get"]

[[grpc.callers]]
name = "auth-service"
credential_sha256 = "{}"
permissions = ["put"]

[database]
url = "{db_url}"
max_connections = 4

[redis]
url = "{}"
key_prefix = "{vault_prefix}"
auth_key_prefix = "{vault_prefix}-auth"

[introspection]
addr = "{introspection_addr}"
credential = "{CREDENTIAL}"
accepted_resources = ["{}"]

[encryption]
current_key = "k1"

[[encryption.keys]]
id = "k1"
secret = "{key}"

[providers.github]
token_endpoint = "{upstream_base}/login/oauth/access_token"
client_id = "gh-client"
client_secret = "gh-secret"
{tls_toml}"#,
            sha256_hex(CREDENTIAL),
            sha256_hex(PUT_CREDENTIAL),
            redis_url(),
            s.resource,
            upstream_base = upstream.base,
        );
        let vault = start_vault(&toml).await;
        Env {
            s,
            vault: Some(vault),
            vault_toml: toml,
            vault_port,
            upstream,
            vault_addr,
            vault_db,
            tls: pki.is_some(),
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(v) = self.vault.take() {
            v.shutdown().await;
        }
        self.upstream.handle.stop(false).await;
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

    /// The auth-service + mcp-service stack.
    pub(crate) fn stack(&self) -> &Stack {
        &self.s
    }

    /// The running token-vault.
    pub(crate) fn vault(&self) -> &token_vault::Running {
        self.vault.as_ref().unwrap()
    }

    /// The URL of token-vault's database.
    pub(crate) fn vault_db_url(&self) -> String {
        format!(
            "{}/{}",
            admin_url().rsplit_once('/').unwrap().0,
            self.vault_db
        )
    }

    /// The Authorization headers the upstream API received, in order.
    pub(crate) fn upstream_authorizations(&self) -> Vec<String> {
        self.upstream
            .seen()
            .into_iter()
            .map(|s| s.authorization)
            .collect()
    }

    /// What auth-service does after a connect: stores the user's upstream tokens.
    pub(crate) async fn put_credential(&self, user_id: &str, access_token: &str) {
        self.put_tokens(user_id, access_token, "", chrono_now() + 3600)
            .await;
    }

    async fn put_tokens(&self, user_id: &str, access_token: &str, refresh: &str, expires_at: i64) {
        if self.tls {
            // Over mTLS: through auth-service's own vault client, as after a real connect.
            let tokens = auth_service::upstream::ProviderTokenResponse {
                access_token: access_token.to_owned(),
                token_type: Some("Bearer".into()),
                refresh_token: (!refresh.is_empty()).then(|| refresh.to_owned()),
                expires_in: Some(expires_at - chrono_now()),
                scope: Some("repo".into()),
                id_token: None,
            };
            let vault = self.s.auth.as_ref().unwrap().state.vault.as_ref().unwrap();
            let version = vault
                .put_credential(
                    user_id,
                    "github",
                    &tokens,
                    "https://github.example",
                    &format!("gh-{user_id}"),
                )
                .await
                .unwrap();
            assert!(version >= 1);
            return;
        }
        let mut client = TokenVaultClient::connect(self.vault_addr.clone())
            .await
            .unwrap();
        let mut req = tonic::Request::new(PutCredentialRequest {
            user_id: user_id.to_owned(),
            provider: "github".into(),
            tokens: Some(UpstreamTokens {
                access_token: access_token.to_owned(),
                refresh_token: refresh.to_owned(),
                expires_at,
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

async fn start_vault(toml: &str) -> token_vault::Running {
    let file = std::env::temp_dir().join(format!(
        "mcptest-vault-{}.toml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&file, toml).unwrap();
    let cfg = token_vault::Config::load(Some(&file), &HashMap::new()).unwrap();
    let _ = std::fs::remove_file(&file);
    token_vault::start(cfg, mcpauth_runtime::init_metrics())
        .await
        .unwrap()
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

pub(crate) fn call(name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

/// A tools/call result.
async fn call_tool(s: &Stack, token: &str, sid: &str, name: &str, arguments: Value) -> Value {
    let r = s.post(Some(token), call(name, arguments), Some(sid)).await;
    assert_eq!(r.status().as_u16(), 200, "{name}");
    let msgs = messages(r).await;
    let last = msgs.last().unwrap().clone();
    assert!(
        last.get("error").is_none(),
        "a tool failure must be a tool result, not a protocol error: {last}"
    );
    last["result"].clone()
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"].as_str().unwrap().to_owned()
}

async fn tool_names(s: &Stack, token: &str, sid: &str) -> Vec<String> {
    let r = s
        .post(
            Some(token),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
            Some(sid),
        )
        .await;
    let msgs = messages(r).await;
    msgs.last().unwrap()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

pub(crate) async fn subject(s: &Stack, token: &str, sid: &str) -> String {
    let r = call_tool(s, token, sid, "whoami", json!({})).await;
    serde_json::from_str::<Value>(&text_of(&r)).unwrap()["subject"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until `tools/list` shows (or stops showing) `name`.
async fn eventually_listed(s: &Stack, token: &str, sid: &str, name: &str, listed: bool) -> bool {
    for _ in 0..50 {
        if tool_names(s, token, sid).await.iter().any(|n| n == name) == listed {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The dev-login code flow at another auth-service `base` (same deployment, another dev user).
async fn token_at(s: &Stack, base: &str) -> String {
    let login = mcpauth_testkit::DevLogin {
        client_name: "mcp test 2",
        resource: Some(&s.resource),
        grant_types: &["authorization_code"],
        ..Default::default()
    };
    let (_, body) = mcpauth_testkit::dev_login(&s.http, base, login).await;
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_authorize_tool_stands_in_until_the_provider_is_connected() {
    let e = Env::start().await;
    let s = &e.s;
    let token = s.access_token().await;
    let sid = s.session(&token).await;
    let names = tool_names(s, &token, &sid).await;
    assert!(names.contains(&"whoami".to_owned()), "{names:?}");
    assert!(names.contains(&"connect_github".to_owned()), "{names:?}");
    for hidden in [
        "github_get_repo",
        "github_create_issue",
        "disconnect_github",
    ] {
        assert!(!names.contains(&hidden.to_owned()), "{names:?}");
    }
    // The authorize tool says what it unlocks.
    let r = s
        .post(
            Some(&token),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
            Some(&sid),
        )
        .await;
    let tools = messages(r).await.last().unwrap()["result"]["tools"].clone();
    let connect = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "connect_github")
        .unwrap()
        .clone();
    let d = connect["description"].as_str().unwrap();
    assert!(
        d.contains("GitHub")
            && d.contains("github_get_repo")
            && d.contains("Repositories and issues."),
        "{d}"
    );

    // Calling it returns a connect URL on auth-service (a result, not an error).
    let r = call_tool(s, &token, &sid, "connect_github", json!({})).await;
    assert_ne!(r["isError"], true, "{r}");
    assert!(
        text_of(&r).contains(&format!("{}/connect/", s.issuer)),
        "{r}"
    );

    // Connecting (auth-service's PutCredential) switches the list to the connector tools.
    let user = subject(s, &token, &sid).await;
    e.put_credential(&user, ALICE_UPSTREAM).await;
    assert!(eventually_listed(s, &token, &sid, "github_get_repo", true).await);
    let names = tool_names(s, &token, &sid).await;
    assert!(
        names.contains(&"github_create_issue".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"disconnect_github".to_owned()), "{names:?}");
    assert!(!names.contains(&"connect_github".to_owned()), "{names:?}");

    // Disconnecting brings the authorize tool back.
    let r = call_tool(s, &token, &sid, "disconnect_github", json!({})).await;
    assert_ne!(r["isError"], true, "{r}");
    assert!(text_of(&r).contains("GitHub is disconnected"), "{r}");
    assert!(eventually_listed(s, &token, &sid, "connect_github", true).await);
    assert!(
        !tool_names(s, &token, &sid)
            .await
            .contains(&"github_get_repo".to_owned())
    );
    e.stop().await;
}

#[tokio::test]
async fn each_user_calls_upstream_with_their_own_upstream_token_never_the_mcp_token() {
    let e = Env::start().await;
    let s = &e.s;
    // A second user: another auth-service replica of the same deployment whose dev user differs.
    let mut cfg = (*s.auth.as_ref().unwrap().state.config).clone();
    cfg.login.dev_user = "bob".into();
    cfg.http.addr = "127.0.0.1:0".parse().unwrap();
    cfg.grpc.addr = "127.0.0.1:0".parse().unwrap();
    let auth2 = auth_service::app::start(cfg, mcpauth_runtime::init_metrics())
        .await
        .unwrap();
    let alice = s.access_token().await;
    let bob = token_at(s, &format!("http://{}", auth2.http_addr)).await;
    let alice_sid = s.session(&alice).await;
    let bob_sid = s.session(&bob).await;
    let alice_id = subject(s, &alice, &alice_sid).await;
    let bob_id = subject(s, &bob, &bob_sid).await;
    assert_ne!(alice_id, bob_id);
    e.put_credential(&alice_id, ALICE_UPSTREAM).await;
    e.put_credential(&bob_id, BOB_UPSTREAM).await;

    let args = json!({"owner": "octo org", "repo": "hello/world", "per_page": 5});
    let r = call_tool(s, &alice, &alice_sid, "github_get_repo", args.clone()).await;
    assert_ne!(r["isError"], true, "{r}");
    assert_eq!(r["structuredContent"]["as"], "alice", "{r}");
    // The upstream saw `hello/world` as one (encoded) path segment.
    assert_eq!(
        r["structuredContent"]["full_name"],
        "octo%20org/hello%2Fworld"
    );
    assert!(text_of(&r).contains("\"as\":\"alice\""), "{r}");
    let r = call_tool(s, &bob, &bob_sid, "github_get_repo", args).await;
    assert_eq!(r["structuredContent"]["as"], "bob", "{r}");
    let seen = e.upstream.seen();
    let gets: Vec<&Seen> = seen.iter().filter(|x| x.method == "GET").collect();
    assert_eq!(gets.len(), 2, "{seen:?}");
    assert_eq!(gets[0].authorization, format!("Bearer {ALICE_UPSTREAM}"));
    assert_eq!(gets[1].authorization, format!("Bearer {BOB_UPSTREAM}"));
    // Arguments are percent-encoded into single path segments; the query is mapped.
    assert_eq!(
        gets[0].path_and_query,
        "/repos/octo%20org/hello%2Fworld?per_page=5"
    );
    for x in &seen {
        assert!(!x.authorization.contains(&alice) && !x.authorization.contains(&bob));
        assert!(!x.body.contains(&alice) && !x.body.contains(&bob));
        assert!(!x.path_and_query.contains(&alice) && !x.path_and_query.contains(&bob));
    }
    auth2.shutdown().await;
    e.stop().await;
}

/// How many `GetAccessToken` calls token-vault has answered (its audit trail, written in
/// batches: waited for until it stops growing).
async fn vault_gets(e: &Env) -> i64 {
    let url = format!("{}/{}", admin_url().rsplit_once('/').unwrap().0, e.vault_db);
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let mut last = -1;
    loop {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let n: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(count), 0)::bigint FROM vault_audit WHERE action = 'get'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if n == last {
            db.close().await;
            return n;
        }
        last = n;
    }
}

#[tokio::test]
async fn an_upstream_token_is_reused_by_the_same_mcp_token_until_the_vault_says_otherwise() {
    let e = Env::start().await;
    let s = &e.s;
    let token = s.access_token().await;
    let sid = s.session(&token).await;
    let user = subject(s, &token, &sid).await;
    e.put_credential(&user, ALICE_UPSTREAM).await;
    let args = json!({"owner": "o", "repo": "r"});
    let last_token = || {
        e.upstream
            .seen()
            .last()
            .map(|x| x.authorization.clone())
            .unwrap_or_default()
    };

    // Three calls with one MCP token: the vault is asked once.
    for _ in 0..3 {
        let r = call_tool(s, &token, &sid, "github_get_repo", args.clone()).await;
        assert_eq!(r["structuredContent"]["as"], "alice", "{r}");
    }
    assert_eq!(vault_gets(&e).await, 1);
    assert_eq!(last_token(), format!("Bearer {ALICE_UPSTREAM}"));

    // Another MCP token of the same user does not reach that entry: the vault decides again.
    let token2 = s.access_token().await;
    let sid2 = s.session(&token2).await;
    let r = call_tool(s, &token2, &sid2, "github_get_repo", args.clone()).await;
    assert_eq!(r["structuredContent"]["as"], "alice", "{r}");
    assert_eq!(vault_gets(&e).await, 2);

    // The credential changes at the vault (a reconnect): its connection event drops the reused
    // tokens, so the next calls carry the new upstream token.
    e.put_credential(&user, ALICE_REFRESHED).await;
    let mut switched = false;
    for _ in 0..40 {
        call_tool(s, &token, &sid, "github_get_repo", args.clone()).await;
        if last_token() == format!("Bearer {ALICE_REFRESHED}") {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        switched,
        "a replaced credential was still served from the cache"
    );

    // The upstream stops accepting the reused token (revoked at the provider, no event): the
    // call asks the vault once more instead of failing on the stale copy, then tells the user.
    let before = vault_gets(&e).await;
    let seen_before = e.upstream.seen().len();
    e.upstream.revoke(ALICE_REFRESHED);
    let r = call_tool(s, &token, &sid, "github_get_repo", args.clone()).await;
    assert_eq!(r["isError"], true, "{r}");
    assert!(text_of(&r).contains("401"), "{r}");
    assert_eq!(vault_gets(&e).await, before + 1);
    let tries: Vec<Seen> = e.upstream.seen()[seen_before..].to_vec();
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert!(
        tries
            .iter()
            .all(|x| x.authorization == format!("Bearer {ALICE_REFRESHED}"))
    );
    e.stop().await;
}

#[tokio::test]
async fn failures_are_tool_errors_that_say_what_to_do() {
    let e = Env::start().await;
    let s = &e.s;
    let token = s.access_token().await;
    let sid = s.session(&token).await;

    // Not connected (a client with a stale list): a tool error with a connect URL.
    let r = call_tool(
        s,
        &token,
        &sid,
        "github_get_repo",
        json!({"owner": "o", "repo": "r"}),
    )
    .await;
    assert_eq!(r["isError"], true, "{r}");
    let t = text_of(&r);
    assert!(t.contains("GitHub is not connected"), "{t}");
    assert!(t.contains(&format!("{}/connect/", s.issuer)), "{t}");
    assert!(e.upstream.seen().is_empty());

    let user = subject(s, &token, &sid).await;
    e.put_credential(&user, ALICE_UPSTREAM).await;

    // Invalid arguments: refused before any upstream call.
    let r = call_tool(
        s,
        &token,
        &sid,
        "github_get_repo",
        json!({"repo": 5, "per_page": "x"}),
    )
    .await;
    assert_eq!(r["isError"], true, "{r}");
    let t = text_of(&r);
    assert!(t.contains("`owner` is required"), "{t}");
    assert!(t.contains("`repo` must be of type string"), "{t}");
    assert!(t.contains("`per_page` must be of type integer"), "{t}");
    let r = call_tool(
        s,
        &token,
        &sid,
        "github_get_repo",
        json!({"owner": "..", "repo": "r"}),
    )
    .await;
    assert_eq!(r["isError"], true, "{r}");
    assert!(e.upstream.seen().is_empty(), "{:?}", e.upstream.seen());

    // Upstream 404 and 500: status, provider and an excerpt of the body.
    for (code, reason) in [(404, "Not Found"), (500, "Internal Server Error")] {
        let r = call_tool(s, &token, &sid, "github_status", json!({"code": code})).await;
        assert_eq!(r["isError"], true, "{r}");
        let t = text_of(&r);
        assert!(
            t.contains(&format!("GitHub answered HTTP {code} {reason}")),
            "{t}"
        );
        assert!(t.contains(&format!("simulated failure {code}")), "{t}");
    }
    // The upstream no longer accepts the credential: the error offers to connect again.
    e.put_credential(&user, "gho_revoked-at-upstream").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = call_tool(
        s,
        &token,
        &sid,
        "github_get_repo",
        json!({"owner": "o", "repo": "r"}),
    )
    .await;
    assert_eq!(r["isError"], true, "{r}");
    let t = text_of(&r);
    assert!(t.contains("GitHub answered HTTP 401"), "{t}");
    assert!(t.contains(&format!("{}/connect/", s.issuer)), "{t}");
    e.stop().await;
}

/// token-vault says "connect again" in a typed status detail (not in its message text), and
/// mcp-service turns it into a tool error that offers to sign in again.
#[tokio::test]
async fn a_refresh_token_the_upstream_refuses_asks_the_user_to_sign_in_again() {
    let e = Env::start().await;
    let s = &e.s;
    let token = s.access_token().await;
    let sid = s.session(&token).await;
    let user = subject(s, &token, &sid).await;
    // Expired, with a refresh token the upstream answers invalid_grant to.
    e.put_tokens(&user, ALICE_UPSTREAM, "ghr_not-alices", chrono_now() - 5)
        .await;
    let r = call_tool(
        s,
        &token,
        &sid,
        "github_get_repo",
        json!({"owner": "o", "repo": "r"}),
    )
    .await;
    assert_eq!(r["isError"], true, "{r}");
    let t = text_of(&r);
    assert!(t.contains("GitHub needs you to sign in again."), "{t}");
    assert!(t.contains(&format!("{}/connect/", s.issuer)), "{t}");
    e.stop().await;
}

#[tokio::test]
async fn a_connector_that_needs_another_scope_gets_a_step_up_challenge() {
    let e = Env::start().await;
    let s = &e.s;
    let token = s.token(Some("mcp:tools.read"), &s.resource).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sid = s.session(&token).await;
    let user = subject(s, &token, &sid).await;
    e.put_credential(&user, ALICE_UPSTREAM).await;
    let r = s
        .post(
            Some(&token),
            call(
                "github_create_issue",
                json!({"owner": "o", "repo": "r", "title": "t"}),
            ),
            Some(&sid),
        )
        .await;
    assert_eq!(r.status().as_u16(), 403);
    let h = www_authenticate(&r);
    assert!(h.contains("error=\"insufficient_scope\""), "{h}");
    assert!(h.contains("mcp:tools.write"), "{h}");
    assert!(e.upstream.seen().is_empty());

    // With the scope, the call goes through with the JSON body mapped from the arguments.
    let token = s
        .token(Some("mcp:tools.read mcp:tools.write"), &s.resource)
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sid = s.session(&token).await;
    let r = call_tool(
        s,
        &token,
        &sid,
        "github_create_issue",
        json!({"owner": "o", "repo": "r", "title": "Hello"}),
    )
    .await;
    assert_ne!(r["isError"], true, "{r}");
    assert_eq!(r["structuredContent"]["title"], "Hello");
    let seen = e.upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        serde_json::from_str::<Value>(&seen[0].body).unwrap(),
        json!({"title": "Hello"})
    );
    e.stop().await;
}

#[tokio::test]
async fn a_connection_event_tells_the_users_stream_that_the_tools_changed() {
    let e = Env::start().await;
    let s = &e.s;
    let token = s.access_token().await;
    let sid = s.session(&token).await;
    let user = subject(s, &token, &sid).await;
    let mut stream = s
        .http
        .get(format!("{}/mcp", s.mcp_base))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    // Let the stream and the event subscription attach.
    tokio::time::sleep(Duration::from_millis(300)).await;
    e.put_credential(&user, ALICE_UPSTREAM).await;
    let mut buf = String::new();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            if buf
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .any(|m| m["method"] == "notifications/tools/list_changed")
            {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(got, "no tools/list_changed on the stream: {buf}");
    // And the list now has the connector tools.
    assert!(
        tool_names(s, &token, &sid)
            .await
            .contains(&"github_get_repo".to_owned())
    );
    e.stop().await;
}

#[tokio::test]
async fn connect_sends_a_url_elicitation_to_clients_that_declare_it() {
    let e = Env::start().await;
    let s = &e.s;
    let token = s.access_token().await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"elicitation": {"url": {}}},
        "clientInfo": {"name": "it", "version": "1"}}});
    let r = s.post(Some(&token), init, None).await;
    assert_eq!(r.status().as_u16(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = r.text().await;
    let r = s
        .post(
            Some(&token),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            Some(&sid),
        )
        .await;
    assert_eq!(r.status().as_u16(), 202);

    let mut call = s
        .post(Some(&token), call("connect_github", json!({})), Some(&sid))
        .await;
    assert_eq!(call.status().as_u16(), 200);
    let mut buf = String::new();
    let mut seen: Vec<Value> = vec![];
    let mut answered = false;
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(chunk)) = call.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            let msgs: Vec<Value> = buf
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .collect();
            for m in msgs.iter().skip(seen.len()) {
                if m["method"] == "elicitation/create" && !answered {
                    assert_eq!(m["params"]["mode"], "url", "{m}");
                    let url = m["params"]["url"].as_str().unwrap();
                    assert!(url.starts_with(&format!("{}/connect/", s.issuer)), "{m}");
                    assert!(!m["params"]["elicitationId"].as_str().unwrap().is_empty());
                    let r = s
                        .post(
                            Some(&token),
                            json!({"jsonrpc": "2.0", "id": m["id"], "result": {"action": "accept"}}),
                            Some(&sid),
                        )
                        .await;
                    assert_eq!(r.status().as_u16(), 202);
                    answered = true;
                }
                if m["id"] == 9 {
                    return Some(m["result"].clone());
                }
            }
            seen = msgs;
        }
        None
    })
    .await
    .ok()
    .flatten();
    let result = result.unwrap_or_else(|| panic!("no tool result: {buf}"));
    assert!(answered, "no elicitation was sent: {buf}");
    assert_ne!(result["isError"], true, "{result}");
    let t = text_of(&result);
    assert!(t.contains(&format!("{}/connect/", s.issuer)), "{t}");
    assert!(t.contains("The link was offered to the user."), "{t}");
    e.stop().await;
}

#[tokio::test]
async fn concurrent_tool_calls_through_two_vault_replicas_refresh_the_upstream_token_once() {
    let e = Env::start().await;
    let s = &e.s;
    // A second token-vault replica (same database and Redis) and a second mcp-service replica
    // that uses it: calls through either replica reach a different vault.
    let port2 = free_port();
    let vault2 = start_vault(&e.vault_toml.replace(
        &format!("addr = \"127.0.0.1:{}\"", e.vault_port),
        &format!("addr = \"127.0.0.1:{port2}\""),
    ))
    .await;
    let mut cfg = s.mcp_config.clone();
    cfg.http.addr = "127.0.0.1:0".parse().unwrap();
    cfg.vault.as_mut().unwrap().addr = format!("http://127.0.0.1:{port2}");
    let mcp2 = mcp_service::app::start(cfg, mcpauth_runtime::init_metrics())
        .await
        .unwrap();
    let base2 = format!("http://{}", mcp2.http_addr);

    let token = s.access_token().await;
    let sid = s.session(&token).await;
    let user = subject(s, &token, &sid).await;
    // The upstream access token expires within the vault's refresh buffer (60 s).
    e.put_tokens(&user, ALICE_UPSTREAM, ALICE_REFRESH, chrono_now() + 20)
        .await;

    let args = json!({"owner": "o", "repo": "r"});
    let calls = (0..100).map(|i| {
        let base = if i % 2 == 0 {
            s.mcp_base.clone()
        } else {
            base2.clone()
        };
        let (token, args) = (token.clone(), args.clone());
        async move {
            // Stateless requests (2026-07-28): any replica, no session needed.
            let mut body = call("github_get_repo", args);
            body["params"]["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "it", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {},
            });
            let r = s
                .http
                .post(format!("{base}/mcp"))
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/call")
                .header("mcp-name", "github_get_repo")
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            if status != 200 {
                panic!("HTTP {status}: {}", r.text().await.unwrap());
            }
            messages(r).await.last().unwrap()["result"].clone()
        }
    });
    let results = futures_util::future::join_all(calls).await;
    for r in &results {
        assert_ne!(r["isError"], true, "{r}");
        assert_eq!(r["structuredContent"]["as"], "alice", "{r}");
    }
    let seen = e.upstream.seen();
    let refreshes = seen
        .iter()
        .filter(|x| x.path_and_query.starts_with("/login/oauth/access_token"))
        .count();
    assert_eq!(
        refreshes, 1,
        "the upstream token endpoint saw {refreshes} refreshes"
    );
    // Every call after the refresh used the rotated token; none used an MCP token.
    let api: Vec<&Seen> = seen.iter().filter(|x| x.method == "GET").collect();
    assert_eq!(api.len(), 100);
    assert!(
        api.iter()
            .all(|x| x.authorization == format!("Bearer {ALICE_REFRESHED}")
                || x.authorization == format!("Bearer {ALICE_UPSTREAM}"))
    );
    assert!(
        api.iter()
            .any(|x| x.authorization == format!("Bearer {ALICE_REFRESHED}"))
    );
    assert!(seen.iter().all(|x| !x.authorization.contains(&token)));
    mcp2.shutdown().await;
    vault2.shutdown().await;
    e.stop().await;
}

/// Every internal gRPC hop over mTLS: mcp-service verifies at auth-service and gets a connect
/// URL from it, auth-service stores the credential in token-vault, token-vault introspects the
/// user's token at auth-service, and mcp-service fetches the upstream token from token-vault.
#[tokio::test]
async fn a_connector_call_works_with_every_internal_hop_over_mtls() {
    let pki = crate::internal_tls::Pki::new();
    let e = Env::start_with(Some(&pki)).await;
    let s = &e.s;
    let token = s.access_token().await;
    let sid = s.session(&token).await;
    // UpstreamConnect at auth-service (the [connect] defaults: verifier.grpc's address and TLS).
    let r = call_tool(s, &token, &sid, "connect_github", json!({})).await;
    assert_ne!(r["isError"], true, "{r}");
    assert!(
        text_of(&r).contains(&format!("{}/connect/", s.issuer)),
        "{r}"
    );
    // auth-service's PutCredential, then GetAccessToken (token-vault introspects the user).
    let user = subject(s, &token, &sid).await;
    e.put_credential(&user, ALICE_UPSTREAM).await;
    assert!(eventually_listed(s, &token, &sid, "github_get_repo", true).await);
    let r = call_tool(
        s,
        &token,
        &sid,
        "github_get_repo",
        json!({"owner": "octo", "repo": "hello"}),
    )
    .await;
    assert_ne!(r["isError"], true, "{r}");
    assert_eq!(r["structuredContent"]["as"], "alice", "{r}");
    let seen = e.upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].authorization, format!("Bearer {ALICE_UPSTREAM}"));
    e.stop().await;
}

/// Reads `stream` (SSE) into `buf` until `method` has arrived `n` times in all, for at most 5 s.
async fn until_seen(
    stream: &mut reqwest::Response,
    buf: &mut String,
    method: &str,
    n: usize,
) -> bool {
    let count = |buf: &str| {
        buf.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .filter(|m| m["method"] == method)
            .count()
    };
    tokio::time::timeout(Duration::from_secs(5), async {
        while count(buf) < n {
            match stream.chunk().await {
                Ok(Some(c)) => buf.push_str(&String::from_utf8_lossy(&c)),
                _ => return false,
            }
        }
        true
    })
    .await
    .unwrap_or(false)
}

/// MCP 2026-07-28 has no session streams: a client learns that its tools changed on a
/// `subscriptions/listen` stream. A connect and a disconnect of a provider (token-vault's
/// connection events) must reach it, as they reach a 2025 session's GET stream (issue 15).
#[tokio::test]
async fn connect_and_disconnect_reach_a_2026_listen_stream() {
    let e = Env::start().await;
    let s = &e.s;
    let token = s.access_token().await;
    let sid = s.session(&token).await;
    let user = subject(s, &token, &sid).await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "it", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let mut listen = s
        .http
        .post(format!("{}/mcp", s.mcp_base))
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .json(
            &json!({"jsonrpc": "2.0", "id": 9, "method": "subscriptions/listen",
                      "params": {"notifications": {"toolsListChanged": true}, "_meta": meta}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(listen.status().as_u16(), 200);
    let mut buf = String::new();
    assert!(
        until_seen(
            &mut listen,
            &mut buf,
            "notifications/subscriptions/acknowledged",
            1
        )
        .await,
        "no acknowledgment: {buf}"
    );
    let changed = "notifications/tools/list_changed";
    assert!(!buf.contains(changed), "a change before any connect: {buf}");

    // Connect: auth-service stores the user's upstream tokens in token-vault.
    e.put_credential(&user, ALICE_UPSTREAM).await;
    assert!(
        until_seen(&mut listen, &mut buf, changed, 1).await,
        "no tools/list_changed after the connect: {buf}"
    );

    // Disconnect: the user's own DeleteCredential, as mcp-service's vault client sends it.
    let mut client = TokenVaultClient::connect(e.vault_addr.clone())
        .await
        .unwrap();
    let mut req = tonic::Request::new(mcpauth_proto::v1::DeleteCredentialRequest {
        access_token: token.clone(),
        provider: "github".into(),
        user_id: String::new(),
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {CREDENTIAL}").parse().unwrap(),
    );
    client.delete_credential(req).await.unwrap();
    assert!(
        until_seen(&mut listen, &mut buf, changed, 2).await,
        "no tools/list_changed after the disconnect: {buf}"
    );
    drop(listen);
    e.stop().await;
}
