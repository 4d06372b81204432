//! Starts auth-service (dev login) and mcp-service on loopback ports for one test.

use std::collections::HashMap;

use auth_service::app::Running as AuthRunning;
use base64::Engine as _;
use mcp_service::app::Running as McpRunning;
use serde_json::{Value, json};

pub const CREDENTIAL: &str = "mcp-service-test-credential";
/// auth-service's initial access token (RFC 7591 §3): machine clients register with it.
pub const INITIAL_ACCESS_TOKEN: &str = "mcp-service-test-initial-access-token";
pub const OTHER_RESOURCE: &str = "https://other.example/mcp";

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}
fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}
pub fn sha256_hex(s: &str) -> String {
    auth_service::domain::token::hex(&auth_service::domain::token::hash(s))
}
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Stack {
    pub auth: Option<AuthRunning>,
    pub mcp: Option<McpRunning>,
    pub issuer: String,
    pub resource: String,
    pub mcp_base: String,
    pub http: reqwest::Client,
    /// The mcp-service configuration, for starting more replicas (same Redis, same resource).
    pub mcp_config: mcp_service::config::Config,
    db_name: String,
}

#[derive(Default)]
pub struct StackOptions {
    pub auth_env: Vec<(&'static str, String)>,
    pub mcp_env: Vec<(&'static str, String)>,
    /// TOML appended to mcp-service's configuration; `{issuer}` stands for auth-service's URL.
    pub mcp_toml: String,
    /// TOML appended to auth-service's configuration (e.g. a static client).
    pub auth_toml: String,
    /// TOML added to auth-service's `[[resources]]` entry of this resource (`token_format`).
    pub resource_toml: String,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(StackOptions::default()).await
    }

    pub async fn start_with(opts: StackOptions) -> Stack {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db_name = format!("mcpauth_mcptest_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&admin_url())
            .await
            .expect("Postgres reachable");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let db_url = format!("{}/{db_name}", admin_url().rsplit_once('/').unwrap().0);
        let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
        auth_service::store::migrate(&pool).await.unwrap();
        pool.close().await;

        let prefix = format!("mcptest-{}", uuid::Uuid::new_v4().simple());
        let auth_port = free_port();
        let mcp_port = free_port();
        let issuer = format!("http://127.0.0.1:{auth_port}");
        let resource = format!("http://127.0.0.1:{mcp_port}/mcp");
        let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let auth_toml = format!(
            "[[tokens.keys]]\nid = \"k1\"\nsecret = \"{key}\"\n\n[[grpc.callers]]\nname = \"mcp\"\ncredential_sha256 = \"{}\"\npermissions = [\"introspect\", \"start_connect\"]\nresources = [\"{resource}\"]\n\n\
             [[resources]]\nuri = \"{resource}\"\nscopes = [\"mcp:tools.read\", \"mcp:tools.write\", \"mcp:tools\"]\ndefault_scopes = [\"mcp:tools.read\"]\n{}\n\n\
             [[resources]]\nuri = \"{OTHER_RESOURCE}\"\nscopes = [\"mcp:tools.read\"]\ndefault_scopes = [\"mcp:tools.read\"]\n\n\
             [registration]\ninitial_access_tokens_sha256 = [\"{}\"]\n{}",
            sha256_hex(CREDENTIAL),
            opts.resource_toml,
            sha256_hex(INITIAL_ACCESS_TOKEN),
            opts.auth_toml,
        );
        let mut env: HashMap<String, String> = [
            ("MCPAUTH__DEV_MODE", "true".to_owned()),
            ("MCPAUTH__ISSUER", issuer.clone()),
            ("MCPAUTH__HTTP__ADDR", format!("127.0.0.1:{auth_port}")),
            ("MCPAUTH__HTTP__WORKERS", "2".into()),
            ("MCPAUTH__HTTP__SHUTDOWN_TIMEOUT_SECS", "1".into()),
            ("MCPAUTH__GRPC__ADDR", "127.0.0.1:0".into()),
            ("MCPAUTH__DATABASE__URL", db_url),
            ("MCPAUTH__DATABASE__MAX_CONNECTIONS", "8".into()),
            ("MCPAUTH__REDIS__URL", redis_url()),
            ("MCPAUTH__REDIS__KEY_PREFIX", prefix.clone()),
            ("MCPAUTH__RATE_LIMIT__ENABLED", "false".into()),
            ("MCPAUTH__TOKENS__CURRENT_KEY", "k1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in opts.auth_env {
            env.insert(k.to_owned(), v);
        }
        let file = std::env::temp_dir().join(format!("{prefix}-auth.toml"));
        std::fs::write(&file, auth_toml).unwrap();
        let auth_cfg = auth_service::config::Config::load(Some(&file), &env).unwrap();
        let _ = std::fs::remove_file(&file);
        let auth = auth_service::app::start(auth_cfg, mcpauth_runtime::init_metrics())
            .await
            .unwrap();

        let mut menv: HashMap<String, String> = [
            ("MCPAUTH__RESOURCE", resource.clone()),
            ("MCPAUTH__HTTP__ADDR", format!("127.0.0.1:{mcp_port}")),
            ("MCPAUTH__HTTP__WORKERS", "2".into()),
            ("MCPAUTH__HTTP__SHUTDOWN_TIMEOUT_SECS", "1".into()),
            (
                "MCPAUTH__VERIFIER__GRPC__ADDR",
                format!("http://{}", auth.grpc_addr),
            ),
            ("MCPAUTH__VERIFIER__GRPC__CREDENTIAL", CREDENTIAL.into()),
            ("MCPAUTH__REDIS__URL", redis_url()),
            ("MCPAUTH__REDIS__AUTH_KEY_PREFIX", prefix.clone()),
            ("MCPAUTH__REDIS__KEY_PREFIX", format!("{prefix}-mcp")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in opts.mcp_env {
            menv.insert(k.to_owned(), v);
        }
        let mfile = std::env::temp_dir().join(format!("{prefix}-mcp.toml"));
        std::fs::write(
            &mfile,
            format!(
                "authorization_servers = [\"{issuer}\"]\nscopes_supported = [\"mcp:tools.read\"]\n\
                 [http]\nallowed_origins = [\"http://127.0.0.1:{mcp_port}\"]\n{}",
                opts.mcp_toml.replace("{issuer}", &issuer)
            ),
        )
        .unwrap();
        let mcp_cfg = mcp_service::config::Config::load(Some(&mfile), &menv).unwrap();
        let _ = std::fs::remove_file(&mfile);
        let mcp = mcp_service::app::start(mcp_cfg.clone(), mcpauth_runtime::init_metrics())
            .await
            .unwrap();
        // The revocation subscription is asynchronous: give it a moment to attach.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        Stack {
            auth: Some(auth),
            mcp_base: format!("http://127.0.0.1:{mcp_port}"),
            mcp: Some(mcp),
            mcp_config: mcp_cfg,
            issuer,
            resource,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            db_name,
        }
    }

    pub async fn stop(mut self) {
        if let Some(m) = self.mcp.take() {
            m.shutdown().await;
        }
        if let Some(a) = self.auth.take() {
            a.shutdown().await;
        }
        if let Ok(admin) = sqlx::PgPool::connect(&admin_url()).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            )))
            .execute(&admin)
            .await;
            admin.close().await;
        }
    }

    /// Starts another mcp-service replica of the same deployment (same resource, Redis, and
    /// authorization server) on its own port; returns it and its base URL.
    pub async fn replica(&self) -> (McpRunning, String) {
        let mut cfg = self.mcp_config.clone();
        cfg.http.addr = "127.0.0.1:0".parse().unwrap();
        let r = mcp_service::app::start(cfg, mcpauth_runtime::init_metrics())
            .await
            .unwrap();
        let base = format!("http://{}", r.http_addr);
        // Its subscriptions (revocations, session channel) attach asynchronously.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        (r, base)
    }

    /// A dev-login access token for this resource (default scopes).
    pub async fn access_token(&self) -> String {
        self.token(None, &self.resource).await["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// Dev-login authorization code flow; returns the token response.
    pub async fn token(&self, scope: Option<&str>, resource: &str) -> Value {
        let login = mcpauth_testkit::DevLogin {
            client_name: "mcp test",
            resource: Some(resource),
            scope,
            ..Default::default()
        };
        mcpauth_testkit::dev_login(&self.http, &self.issuer, login)
            .await
            .1
    }

    /// POSTs a JSON-RPC message to /mcp.
    pub async fn post(
        &self,
        token: Option<&str>,
        body: Value,
        session: Option<&str>,
    ) -> reqwest::Response {
        self.post_at(&self.mcp_base, token, body, session).await
    }

    /// POSTs a JSON-RPC message to `{base}/mcp` (another replica).
    pub async fn post_at(
        &self,
        base: &str,
        token: Option<&str>,
        body: Value,
        session: Option<&str>,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .post(format!("{base}/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(s) = session {
            r = r
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        r.send().await.unwrap()
    }

    /// The HTTP status of POSTing `body` to /mcp.
    pub async fn post_status(
        &self,
        token: Option<&str>,
        body: Value,
        session: Option<&str>,
    ) -> u16 {
        self.post(token, body, session).await.status().as_u16()
    }

    /// initialize + notifications/initialized; returns the session id.
    pub async fn session(&self, token: &str) -> String {
        let r = self.post(Some(token), initialize(), None).await;
        assert_eq!(r.status().as_u16(), 200);
        let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let _ = r.text().await;
        let r = self
            .post(
                Some(token),
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                Some(&sid),
            )
            .await;
        assert_eq!(r.status().as_u16(), 202);
        sid
    }
}

pub fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}})
}

/// The JSON-RPC messages of an SSE or JSON response body.
pub async fn messages(r: reqwest::Response) -> Vec<Value> {
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    if ct.starts_with("application/json") {
        return vec![serde_json::from_str(&text).unwrap()];
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

pub fn www_authenticate(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}
