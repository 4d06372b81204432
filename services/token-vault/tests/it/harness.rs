//! One test's world: a fresh database, a Redis prefix, a real auth-service (in-process, dev
//! login) that mints and introspects MCP tokens, a fake upstream OAuth provider, and as many
//! token-vault replicas as the test wants (in-process, or the real binary).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use auth_service::app::Running as AuthRunning;
use base64::Engine as _;
use mcpauth_proto::v1::token_vault_client::TokenVaultClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

pub const CREDENTIAL: &str = "vault-test-all-permissions";
pub const GET_ONLY: &str = "vault-test-get-only";
pub const PUT_ONLY: &str = "vault-test-put-only";
/// The vault's own credential at auth-service.
pub const INTROSPECT_CREDENTIAL: &str = "vault-introspection-credential";
pub const OTHER_RESOURCE: &str = "https://other.example/mcp";

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}
pub fn sha256_hex(s: &str) -> String {
    token_vault::crypto::hex(&token_vault::crypto::sha256(s))
}
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
pub fn key_b64(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// How the fake upstream answers the next refresh requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// New tokens (rotated refresh token), after the configured delay.
    Ok,
    InvalidGrant,
    Unavailable503,
    /// Never answers (until the connection goes away).
    Hold,
}

/// A fake upstream OAuth provider: token endpoint (refresh grant) and RFC 7009 revocation.
#[derive(Default)]
pub struct UpstreamState {
    /// Answers to use first, in order; then `default`.
    pub script: Vec<Answer>,
    pub default: Option<Answer>,
    pub delay_ms: u64,
    pub expires_in: i64,
    /// Every refresh token presented, in order.
    pub refresh_tokens_seen: Vec<String>,
    /// Refresh requests answered with new tokens.
    pub refreshes_ok: usize,
    /// Refresh requests received (any answer).
    pub token_calls: usize,
    pub revoked: Vec<String>,
    /// Every token issued, for the plaintext scan.
    pub issued: Vec<String>,
    pub client_auth_seen: Vec<String>,
}

#[derive(Clone)]
pub struct FakeUpstream {
    pub base: String,
    pub state: Arc<Mutex<UpstreamState>>,
    handle: actix_web::dev::ServerHandle,
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        let state = Arc::new(Mutex::new(UpstreamState {
            expires_in: 3600,
            ..Default::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/token", web::post().to(token))
                .route("/revoke", web::post().to(revoke))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeUpstream {
            base,
            state,
            handle,
        }
    }

    pub fn set(&self, f: impl FnOnce(&mut UpstreamState)) {
        f(&mut self.state.lock().unwrap());
    }

    pub fn get<T>(&self, f: impl FnOnce(&UpstreamState) -> T) -> T {
        f(&self.state.lock().unwrap())
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

async fn token(
    state: web::Data<Arc<Mutex<UpstreamState>>>,
    req: actix_web::HttpRequest,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let (answer, delay) = {
        let mut s = state.lock().unwrap();
        s.token_calls += 1;
        if let Some(a) = req.headers().get("authorization") {
            s.client_auth_seen.push(a.to_str().unwrap_or("").to_owned());
        }
        if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
            return HttpResponse::BadRequest().json(json!({"error": "unsupported_grant_type"}));
        }
        s.refresh_tokens_seen
            .push(form.get("refresh_token").cloned().unwrap_or_default());
        let answer = if s.script.is_empty() {
            s.default.unwrap_or(Answer::Ok)
        } else {
            s.script.remove(0)
        };
        (answer, s.delay_ms)
    };
    match answer {
        Answer::Hold => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Answer::InvalidGrant => HttpResponse::BadRequest()
            .json(json!({"error": "invalid_grant", "error_description": "refresh token revoked"})),
        Answer::Unavailable503 => HttpResponse::ServiceUnavailable().body("try later"),
        Answer::Ok => {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let mut s = state.lock().unwrap();
            s.refreshes_ok += 1;
            let n = s.refreshes_ok;
            let tag = uuid::Uuid::new_v4().simple().to_string();
            let at = format!("upstream-at-refreshed-{n}-{tag}");
            let rt = format!("upstream-rt-rotated-{n}-{tag}");
            s.issued.push(at.clone());
            s.issued.push(rt.clone());
            HttpResponse::Ok().json(json!({
                "access_token": at, "token_type": "Bearer", "expires_in": s.expires_in,
                "refresh_token": rt, "scope": "repo read:user"
            }))
        }
    }
}

async fn revoke(
    state: web::Data<Arc<Mutex<UpstreamState>>>,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    state
        .lock()
        .unwrap()
        .revoked
        .push(form.get("token").cloned().unwrap_or_default());
    HttpResponse::Ok().finish()
}

/// The shared world of one test.
pub struct World {
    pub db_url: String,
    db_name: String,
    pub prefix: String,
    pub auth: Option<AuthRunning>,
    pub auth_grpc: String,
    pub issuer: String,
    pub resource: String,
    pub upstream: FakeUpstream,
    pub http: reqwest::Client,
    /// Every secret a test handed out, for the plaintext scan.
    pub secrets: Mutex<Vec<String>>,
}

impl World {
    pub async fn start() -> World {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db_name = format!("mcpauth_vaulttest_{}", uuid::Uuid::new_v4().simple());
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
        // The vault shares the database with auth-service, as in `make run`.
        auth_service::store::migrate(&pool).await.unwrap();
        token_vault::store::migrate(&pool).await.unwrap();
        pool.close().await;

        let prefix = format!("vaulttest-{}", uuid::Uuid::new_v4().simple());
        let auth_port = free_port();
        let issuer = format!("http://127.0.0.1:{auth_port}");
        let resource = "http://127.0.0.1:8081/mcp".to_owned();
        let auth_toml = format!(
            "[[tokens.keys]]\nid = \"k1\"\nsecret = \"{}\"\n\n[[grpc.callers]]\nname = \"vault\"\ncredential_sha256 = \"{}\"\npermissions = [\"introspect\"]\n\n\
             [[resources]]\nuri = \"{resource}\"\nscopes = [\"mcp:tools.read\"]\ndefault_scopes = [\"mcp:tools.read\"]\n\n\
             [[resources]]\nuri = \"{OTHER_RESOURCE}\"\nscopes = [\"mcp:tools.read\"]\ndefault_scopes = [\"mcp:tools.read\"]\n",
            key_b64(9),
            sha256_hex(INTROSPECT_CREDENTIAL)
        );
        let env: HashMap<String, String> = [
            ("MCPAUTH__DEV_MODE", "true".to_owned()),
            ("MCPAUTH__ISSUER", issuer.clone()),
            ("MCPAUTH__HTTP__ADDR", format!("127.0.0.1:{auth_port}")),
            ("MCPAUTH__HTTP__WORKERS", "2".into()),
            ("MCPAUTH__HTTP__SHUTDOWN_TIMEOUT_SECS", "1".into()),
            ("MCPAUTH__GRPC__ADDR", "127.0.0.1:0".into()),
            ("MCPAUTH__DATABASE__URL", db_url.clone()),
            ("MCPAUTH__DATABASE__MAX_CONNECTIONS", "8".into()),
            ("MCPAUTH__REDIS__URL", redis_url()),
            ("MCPAUTH__REDIS__KEY_PREFIX", prefix.clone()),
            ("MCPAUTH__RATE_LIMIT__ENABLED", "false".into()),
            ("MCPAUTH__TOKENS__CURRENT_KEY", "k1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let file = std::env::temp_dir().join(format!("{prefix}-auth.toml"));
        std::fs::write(&file, auth_toml).unwrap();
        let auth_cfg = auth_service::config::Config::load(Some(&file), &env).unwrap();
        let _ = std::fs::remove_file(&file);
        let auth = auth_service::app::start(auth_cfg, mcpauth_runtime::init_metrics())
            .await
            .unwrap();
        World {
            db_url,
            db_name,
            auth_grpc: format!("http://{}", auth.grpc_addr),
            auth: Some(auth),
            issuer,
            resource,
            prefix,
            upstream: FakeUpstream::start().await,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            secrets: Mutex::new(vec![]),
        }
    }

    /// The vault configuration of this world (TOML), keys `(id, byte)` with `current`.
    pub fn vault_toml(&self, keys: &[(&str, u8)], current: &str, extra: &str) -> String {
        let mut t = format!(
            "[grpc]\naddr = \"127.0.0.1:0\"\n\n\
             [[grpc.callers]]\nname = \"all\"\ncredential_sha256 = \"{}\"\npermissions = [\"put\", \"get\", \"admin\"]\n\n\
             [[grpc.callers]]\nname = \"getter\"\ncredential_sha256 = \"{}\"\npermissions = [\"get\"]\n\n\
             [[grpc.callers]]\nname = \"putter\"\ncredential_sha256 = \"{}\"\npermissions = [\"put\"]\n\n\
             [database]\nurl = \"{}\"\nmax_connections = 8\n\n\
             [redis]\nurl = \"{}\"\nkey_prefix = \"{}-vault\"\nauth_key_prefix = \"{}\"\npool_size = 16\n\n\
             [introspection]\naddr = \"{}\"\ncredential = \"{INTROSPECT_CREDENTIAL}\"\naccepted_resources = [\"{}\"]\n\n\
             [refresh]\nlock_ttl_ms = 2000\nretry_backoff_ms = 50\nupstream_timeout_ms = 5000\n\n\
             [providers.github]\ntoken_endpoint = \"{}/token\"\nclient_id = \"vault-client\"\nclient_secret = \"upstream-client-secret\"\nrevocation_endpoint = \"{}/revoke\"\n\n\
             [providers.plain]\ntoken_endpoint = \"{}/token\"\nclient_id = \"vault-public\"\ntoken_endpoint_auth_method = \"none\"\n\n\
             [encryption]\ncurrent_key = \"{current}\"\n",
            sha256_hex(CREDENTIAL),
            sha256_hex(GET_ONLY),
            sha256_hex(PUT_ONLY),
            self.db_url,
            redis_url(),
            self.prefix,
            self.prefix,
            self.auth_grpc,
            self.resource,
            self.upstream.base,
            self.upstream.base,
            self.upstream.base,
        );
        for (id, byte) in keys {
            t.push_str(&format!(
                "\n[[encryption.keys]]\nid = \"{id}\"\nsecret = \"{}\"\n",
                key_b64(*byte)
            ));
        }
        // `extra` may override whole sections via environment instead; appended keys go to the
        // last table, so callers pass full `[table]` snippets only for tables not above.
        t.push_str(extra);
        t
    }

    /// Loads a vault configuration from `toml` with `env` overrides.
    pub fn vault_config(&self, toml: &str, env: &[(&str, String)]) -> token_vault::Config {
        let file = std::env::temp_dir().join(format!(
            "{}-vault-{}.toml",
            self.prefix,
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&file, toml).unwrap();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let cfg = token_vault::Config::load(Some(&file), &env).unwrap();
        let _ = std::fs::remove_file(&file);
        cfg
    }

    /// Starts an in-process vault replica with key k1 and `env` overrides.
    pub async fn vault(&self, env: &[(&str, String)]) -> Vault {
        self.vault_with(&self.vault_toml(&[("k1", 1)], "k1", ""), env)
            .await
    }

    pub async fn vault_with(&self, toml: &str, env: &[(&str, String)]) -> Vault {
        let cfg = self.vault_config(toml, env);
        let running = token_vault::start(cfg, mcpauth_runtime::init_metrics())
            .await
            .unwrap();
        // The revocation subscription attaches asynchronously.
        tokio::time::sleep(Duration::from_millis(150)).await;
        Vault::new(running).await
    }

    /// A real MCP access token of `subject` for `audience`, minted by auth-service.
    pub fn mcp_token(&self, subject: &str, audience: &str) -> String {
        let (token, _) = self.auth.as_ref().unwrap().state.tokens.issue_access(
            subject,
            "test-client",
            None,
            audience,
            "mcp:tools.read",
        );
        self.secrets.lock().unwrap().push(token.clone());
        token
    }

    /// An MCP access token from the full dev-login authorization-code flow; returns
    /// (access token, the subject auth-service gave the dev user).
    pub async fn dev_login_token(&self) -> (String, String) {
        let login = mcpauth_testkit::DevLogin {
            client_name: "vault test",
            resource: Some(&self.resource),
            ..Default::default()
        };
        let (_, body) = mcpauth_testkit::dev_login(&self.http, &self.issuer, login).await;
        let at = body["access_token"].as_str().unwrap().to_owned();
        let rt = body["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let claims = self
            .auth
            .as_ref()
            .unwrap()
            .state
            .tokens
            .validate_access(&at)
            .unwrap();
        let mut s = self.secrets.lock().unwrap();
        s.push(at.clone());
        if !rt.is_empty() {
            s.push(rt);
        }
        (at, claims.sub)
    }

    /// Upstream tokens for a put, remembered for the plaintext scan.
    pub fn upstream_tokens(
        &self,
        label: &str,
        expires_at: i64,
    ) -> mcpauth_proto::v1::UpstreamTokens {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let t = mcpauth_proto::v1::UpstreamTokens {
            access_token: format!("upstream-at-{label}-{tag}"),
            refresh_token: format!("upstream-rt-{label}-{tag}"),
            expires_at,
            scopes: vec!["repo".into()],
            token_type: "Bearer".into(),
        };
        let mut s = self.secrets.lock().unwrap();
        s.push(t.access_token.clone());
        s.push(t.refresh_token.clone());
        t
    }

    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.db_url).await.unwrap()
    }

    /// Subscribes to the vault's connection events.
    pub async fn events(&self) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
        let client = redis::Client::open(redis_url()).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub
            .subscribe(format!("{}-vault:connections", self.prefix))
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut stream = pubsub.into_on_message();
            while let Some(msg) = stream.next().await {
                let payload: String = msg.get_payload().unwrap();
                if tx.send(serde_json::from_str(&payload).unwrap()).is_err() {
                    return;
                }
            }
        });
        rx
    }

    /// Every row of every table (as text) and every Redis key and value under this test's
    /// prefix contain none of the secrets handed out, nor any token the upstream issued.
    pub async fn assert_no_plaintext(&self) {
        let mut secrets = self.secrets.lock().unwrap().clone();
        secrets.extend(self.upstream.get(|s| s.issued.clone()));
        assert!(!secrets.is_empty());
        let forms: Vec<(usize, String)> = secrets
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                [
                    s.clone(),
                    token_vault::crypto::hex(s.as_bytes()),
                    base64::engine::general_purpose::STANDARD.encode(s),
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s),
                ]
                .into_iter()
                .map(move |f| (i, f))
            })
            .collect();
        let pool = self.pool().await;
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT quote_ident(table_name) FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(tables.iter().any(|(t,)| t == "vault_credentials"));
        let mut rows_scanned = 0;
        for (table,) in &tables {
            let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT t::text FROM {table} t"
            )))
            .fetch_all(&pool)
            .await
            .unwrap();
            for (row,) in rows {
                rows_scanned += 1;
                for (i, f) in &forms {
                    assert!(
                        !row.contains(f.as_str()),
                        "secret #{i} in plaintext in table {table}"
                    );
                }
            }
        }
        pool.close().await;
        assert!(rows_scanned > 0);
        let client = redis::Client::open(redis_url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut c)
            .await
            .unwrap();
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            let value: String = match kind.as_str() {
                "string" => redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
                    .unwrap_or_default(),
                "hash" => {
                    let v: Vec<String> = redis::cmd("HGETALL")
                        .arg(&key)
                        .query_async(&mut c)
                        .await
                        .unwrap_or_default();
                    v.join("\n")
                }
                "set" => {
                    let v: Vec<String> = redis::cmd("SMEMBERS")
                        .arg(&key)
                        .query_async(&mut c)
                        .await
                        .unwrap_or_default();
                    v.join("\n")
                }
                "list" => {
                    let v: Vec<String> = redis::cmd("LRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut c)
                        .await
                        .unwrap_or_default();
                    v.join("\n")
                }
                "zset" => {
                    let v: Vec<String> = redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut c)
                        .await
                        .unwrap_or_default();
                    v.join("\n")
                }
                _ => String::new(),
            };
            for (i, f) in &forms {
                assert!(
                    !key.contains(f.as_str()) && !value.contains(f.as_str()),
                    "secret #{i} in Redis key {key}"
                );
            }
        }
    }

    pub async fn stop(mut self) {
        self.upstream.stop().await;
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
        if let Ok(client) = redis::Client::open(redis_url())
            && let Ok(mut c) = client.get_multiplexed_async_connection().await
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.prefix))
                .query_async(&mut c)
                .await
                .unwrap_or_default();
            for k in keys {
                let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(k).query_async(&mut c).await;
            }
        }
    }
}

/// A running vault replica with a client.
pub struct Vault {
    pub running: Option<token_vault::Running>,
    pub channel: Channel,
}

impl Vault {
    pub async fn new(running: token_vault::Running) -> Vault {
        let channel = Channel::from_shared(format!("http://{}", running.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Vault {
            running: Some(running),
            channel,
        }
    }

    pub fn client(&self) -> TokenVaultClient<Channel> {
        TokenVaultClient::new(self.channel.clone())
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// A request carrying `credential` as the service credential.
pub fn req<T>(credential: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {credential}").parse().unwrap(),
    );
    r
}

pub async fn put(
    client: &mut TokenVaultClient<Channel>,
    user: &str,
    provider: &str,
    tokens: mcpauth_proto::v1::UpstreamTokens,
) -> i64 {
    client
        .put_credential(req(
            CREDENTIAL,
            mcpauth_proto::v1::PutCredentialRequest {
                user_id: user.into(),
                provider: provider.into(),
                tokens: Some(tokens),
                upstream_issuer: "https://upstream.example".into(),
                upstream_subject: format!("{user}@upstream"),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .version
}

pub async fn get(
    client: &mut TokenVaultClient<Channel>,
    mcp_token: &str,
    provider: &str,
) -> Result<mcpauth_proto::v1::GetAccessTokenResponse, tonic::Status> {
    client
        .get_access_token(req(
            CREDENTIAL,
            mcpauth_proto::v1::GetAccessTokenRequest {
                access_token: mcp_token.into(),
                provider: provider.into(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

/// The error a read answers once a row changed behind the vault's back (a direct SQL write, as
/// an attacker or a restore would make it) is seen: a replica may serve the row it cached before
/// for at most `token_vault::cache::TTL`. Until then every answer must be `before`'s token.
pub async fn get_until_err(
    client: &mut TokenVaultClient<Channel>,
    mcp_token: &str,
    provider: &str,
    before: &str,
) -> tonic::Status {
    let deadline =
        tokio::time::Instant::now() + token_vault::cache::TTL + Duration::from_millis(500);
    loop {
        match get(client, mcp_token, provider).await {
            Err(e) => return e,
            Ok(t) => assert_eq!(t.access_token, before, "only the cached row, never another"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a changed row must be seen within the cache TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the next event (at most 5 s).
pub async fn next_event(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an event within 5 s")
        .expect("event stream open")
}

/// `(version, status, key_id)` of a stored record.
pub async fn row(pool: &sqlx::PgPool, user: &str, provider: &str) -> Option<(i64, String, String)> {
    sqlx::query_as(
        "SELECT version, status, key_id FROM vault_credentials WHERE user_id = $1 AND provider = $2",
    )
    .bind(user)
    .bind(provider)
    .fetch_optional(pool)
    .await
    .unwrap()
}
