//! Test harness: each test gets a fresh Postgres database (migrated), its own Redis key prefix,
//! and a real auth-service on ephemeral loopback ports. Databases are dropped at the end.

use std::collections::HashMap;
use std::net::SocketAddr;

use auth_service::app::{self, Running};
use auth_service::config::Config;
use base64::Engine as _;
use serde_json::{Value, json};

/// The Postgres server tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The gRPC credential tests use.
pub const GRPC_CREDENTIAL: &str = "test-service-credential";
pub const RESOURCE: &str = "http://127.0.0.1:8081/mcp";
pub const OTHER_RESOURCE: &str = "https://other.example/mcp";

/// Pre-registered confidential client used for introspection and client_credentials.
pub const STATIC_CLIENT: &str = "static-backend";
pub const STATIC_SECRET: &str = "static-backend-secret-0123456789abcdef";
/// The resource server of `https://api.example.com/mcp`: listed in its `introspection_clients`
/// (a test that introspects as it configures the client itself).
pub const API_SERVER: &str = "api-server";

/// The initial access token (RFC 7591 §3) the test configuration accepts: registrations that
/// present it may use `client_credentials`.
pub const INITIAL_ACCESS_TOKEN: &str = "test-initial-access-token-0123456789";

pub fn sha256_hex(s: &str) -> String {
    auth_service::domain::token::hex(&auth_service::domain::token::hash(s))
}

/// A fresh database on the test server.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("mcpauth_test_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&admin_url())
            .await
            .expect("Postgres is not reachable (TEST_DATABASE_URL); see README prerequisites");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let base = admin_url();
        let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        auth_service::store::migrate(&pool).await.unwrap();
        pool.close().await;
        TestDb { name, url }
    }

    pub async fn drop_db(&self) {
        if let Ok(admin) = sqlx::PgPool::connect(&admin_url()).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&admin)
            .await;
            admin.close().await;
        }
    }
}

/// Base configuration for tests: dev login on, rate limits high, a fixed token key.
pub fn test_env(db_url: &str, prefix: &str) -> HashMap<String, String> {
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let pairs: Vec<(String, String)> = vec![
        ("MCPAUTH__DEV_MODE".into(), "true".into()),
        ("MCPAUTH__HTTP__ADDR".into(), "127.0.0.1:0".into()),
        ("MCPAUTH__HTTP__WORKERS".into(), "2".into()),
        ("MCPAUTH__HTTP__SHUTDOWN_TIMEOUT_SECS".into(), "1".into()),
        ("MCPAUTH__GRPC__ADDR".into(), "127.0.0.1:0".into()),
        ("MCPAUTH__DATABASE__URL".into(), db_url.into()),
        ("MCPAUTH__DATABASE__MAX_CONNECTIONS".into(), "8".into()),
        ("MCPAUTH__REDIS__URL".into(), redis_url()),
        ("MCPAUTH__REDIS__KEY_PREFIX".into(), prefix.into()),
        ("MCPAUTH__RATE_LIMIT__REGISTER".into(), "1000".into()),
        ("MCPAUTH__RATE_LIMIT__TOKEN".into(), "100000".into()),
        ("MCPAUTH__RATE_LIMIT__AUTHORIZE".into(), "100000".into()),
        ("MCPAUTH__RATE_LIMIT__LOGIN".into(), "100000".into()),
        (
            "MCPAUTH__RATE_LIMIT__TOKEN_PER_CLIENT".into(),
            "100000".into(),
        ),
        ("MCPAUTH__RATE_LIMIT__CIMD_FETCH".into(), "100000".into()),
        ("MCPAUTH__TOKENS__CURRENT_KEY".into(), "k1".into()),
        ("MCPAUTH__LOG__FORMAT".into(), "pretty".into()),
    ];
    let _ = key;
    pairs.into_iter().collect()
}

/// The TOML part of the test configuration that environment variables cannot express well.
pub fn test_toml(extra: &str) -> String {
    format!(
        r#"
[[tokens.keys]]
id = "k1"
secret = "{key}"

[[grpc.callers]]
name = "tests"
credential_sha256 = "{cred}"
permissions = ["introspect", "start_connect"]
resources = ["{RESOURCE}", "https://api.example.com/mcp"{jwt_resource}]
# The tests' oracle: refresh tokens are described over gRPC only to callers allowed them.
refresh_token_clients = ["*"]

[[resources]]
uri = "{RESOURCE}"
scopes = ["mcp:tools.read", "mcp:tools.write", "mcp:admin"]
default_scopes = ["mcp:tools.read"]

[[resources]]
uri = "https://api.example.com/mcp"
scopes = ["api:read"]
default_scopes = ["api:read"]
introspection_clients = ["{API_SERVER}"]

{policy}
[[clients]]
client_id = "{STATIC_CLIENT}"
client_name = "Static backend"
client_secret_sha256 = "{secret}"
grant_types = ["client_credentials"]
token_endpoint_auth_method = "client_secret_basic"
{extra}
"#,
        key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
        cred = sha256_hex(GRPC_CREDENTIAL),
        secret = sha256_hex(STATIC_SECRET),
        policy = test_policy_toml(extra),
        // The JWT resource of `jwt_access`, when a test configures it, is the callers' too.
        jwt_resource = if extra.contains(crate::jwt_access::JWT_RESOURCE) {
            format!(", \"{}\"", crate::jwt_access::JWT_RESOURCE)
        } else {
            String::new()
        },
    )
}

/// The static client introspects every resource's tokens, and [`INITIAL_ACCESS_TOKEN`] is
/// accepted, unless the test brings its own `[introspection]` or `[registration]` table.
fn test_policy_toml(extra: &str) -> String {
    let mut t = String::new();
    if !extra.contains("[introspection]") {
        t += &format!("[introspection]\nclients = [\"{STATIC_CLIENT}\"]\n");
    }
    if !extra.contains("[registration]") {
        t += &format!(
            "[registration]\ninitial_access_tokens_sha256 = [\"{}\"]\n",
            sha256_hex(INITIAL_ACCESS_TOKEN)
        );
    }
    t
}

/// A running auth-service with its own database and Redis prefix.
pub struct TestServer {
    pub db: TestDb,
    pub running: Option<Running>,
    pub base: String,
    pub grpc: SocketAddr,
    pub http: reqwest::Client,
    pub prefix: String,
    pub pool: sqlx::PgPool,
}

#[derive(Default)]
pub struct Options {
    /// Extra TOML appended to the test configuration.
    pub toml: String,
    /// Extra environment overrides.
    pub env: Vec<(&'static str, String)>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> TestServer {
        let db = TestDb::create().await;
        let prefix = format!("mcpauth-test-{}", uuid::Uuid::new_v4().simple());
        Self::start_on(db, prefix, opts).await
    }

    /// Starts a server on an existing database and Redis prefix (a second replica).
    pub async fn start_on(db: TestDb, prefix: String, opts: Options) -> TestServer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut env = test_env(&db.url, &prefix);
        // The issuer must be byte-identical to the address clients use: pick the port first.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        env.insert("MCPAUTH__HTTP__ADDR".into(), format!("127.0.0.1:{port}"));
        env.insert("MCPAUTH__ISSUER".into(), format!("http://127.0.0.1:{port}"));
        for (k, v) in opts.env {
            // `{port}` in an override stands for the port picked above (an issuer with a path).
            env.insert(k.to_owned(), v.replace("{port}", &port.to_string()));
        }
        let file =
            std::env::temp_dir().join(format!("{prefix}-{}.toml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&file, test_toml(&opts.toml)).unwrap();
        let config = Config::load(Some(&file), &env).expect("test configuration is valid");
        let _ = std::fs::remove_file(&file);
        let running = app::start(config, mcpauth_runtime::init_metrics())
            .await
            .expect("auth-service starts");
        let base = format!("http://{}", running.http_addr);
        let grpc = running.grpc_addr;
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        TestServer {
            db,
            running: Some(running),
            base,
            grpc,
            http,
            prefix,
            pool,
        }
    }

    pub fn issuer(&self) -> String {
        self.running.as_ref().unwrap().state.config.issuer.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server and drops its database.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        self.pool.close().await;
        self.db.drop_db().await;
    }

    /// Stops the server but keeps its database (for restarts and replicas).
    pub async fn stop_keep_db(mut self) -> TestDb {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        self.pool.close().await;
        self.db
    }

    // --- client-side helpers ------------------------------------------------------------------

    pub async fn register(&self, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url("/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `POST /register` with `Authorization: Bearer <initial access token>` when given.
    pub async fn register_with(
        &self,
        body: Value,
        initial_access_token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.http.post(self.url("/register")).json(&body);
        if let Some(t) = initial_access_token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Registers a public client with one loopback redirect URI.
    pub async fn public_client(&self) -> String {
        let grants = ["authorization_code", "refresh_token"];
        mcpauth_testkit::register_public_client(
            &self.http,
            &self.base,
            "Test public client",
            &grants,
        )
        .await
    }

    /// Registers a confidential client; returns (id, secret).
    pub async fn confidential_client(&self, grants: &[&str]) -> (String, String) {
        let mut body = json!({
            "client_name": "Test confidential client",
            "grant_types": grants,
            "token_endpoint_auth_method": "client_secret_basic",
        });
        if grants.contains(&"authorization_code") {
            body["redirect_uris"] = json!([REDIRECT]);
        } else {
            body["response_types"] = json!([]);
        }
        // Machine clients need the operator's initial access token (RFC 7591 §3).
        let (s, body) = if grants.contains(&"client_credentials") {
            self.register_with(body, Some(INITIAL_ACCESS_TOKEN)).await
        } else {
            self.register(body).await
        };
        assert_eq!(s, 201, "{body}");
        (
            body["client_id"].as_str().unwrap().to_owned(),
            body["client_secret"].as_str().unwrap().to_owned(),
        )
    }

    /// Runs `/authorize` (dev login, auto-consent) and returns the redirect's query parameters.
    pub async fn authorize(&self, params: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .get(self.url("/authorize"))
            .query(params)
            .send()
            .await
            .unwrap()
    }

    /// A complete authorization: returns the code for (client, verifier's challenge).
    pub async fn code_for(&self, client_id: &str, scope: Option<&str>) -> String {
        let mut params = vec![("state", "s1"), ("resource", RESOURCE)];
        if let Some(s) = scope {
            params.push(("scope", s));
        }
        mcpauth_testkit::authorize_code(&self.http, &self.base, client_id, &params).await
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = self
            .http
            .post(self.url("/token"))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.json().await.unwrap_or(Value::Null), headers)
    }

    /// Authorization code → tokens for a fresh public client. Returns (client_id, token body).
    pub async fn login(&self, scope: Option<&str>) -> (String, Value) {
        let client = self.public_client().await;
        let code = self.code_for(&client, scope).await;
        let body =
            mcpauth_testkit::redeem_code(&self.http, &self.base, &client, &code, Some(RESOURCE))
                .await;
        (client, body)
    }

    /// Introspects over HTTP as the static confidential client.
    pub async fn introspect(&self, token: &str) -> Value {
        let r = self
            .http
            .post(self.url("/introspect"))
            .basic_auth(STATIC_CLIENT, Some(STATIC_SECRET))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json().await.unwrap()
    }

    pub async fn grpc_client(
        &self,
    ) -> mcpauth_proto::v1::token_introspection_client::TokenIntrospectionClient<
        tonic::transport::Channel,
    > {
        mcpauth_proto::v1::token_introspection_client::TokenIntrospectionClient::connect(format!(
            "http://{}",
            self.grpc
        ))
        .await
        .unwrap()
    }

    /// gRPC introspection with the test credential.
    pub async fn grpc_introspect(
        &self,
        token: &str,
        resource: &str,
    ) -> mcpauth_proto::v1::IntrospectResponse {
        let mut c = self.grpc_client().await;
        let mut req = tonic::Request::new(mcpauth_proto::v1::IntrospectRequest {
            token: token.into(),
            expected_resource: resource.into(),
        });
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {GRPC_CREDENTIAL}").parse().unwrap(),
        );
        c.introspect(req).await.unwrap().into_inner()
    }
}

pub use mcpauth_testkit::{CHALLENGE, REDIRECT, VERIFIER};

/// The query parameters of a redirect's `Location`.
pub fn redirect_query(r: &reqwest::Response) -> HashMap<String, String> {
    let loc = r
        .headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .unwrap();
    let url = url::Url::parse(loc).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Counts each query parameter of a redirect (RFC 9207 / conformance: at most one of each).
pub fn redirect_param_counts(r: &reqwest::Response) -> HashMap<String, usize> {
    let loc = r.headers().get("location").unwrap().to_str().unwrap();
    let url = url::Url::parse(loc).unwrap();
    let mut m = HashMap::new();
    for (k, _) in url.query_pairs() {
        *m.entry(k.into_owned()).or_insert(0) += 1;
    }
    m
}

// --- helpers for the token, refresh, revocation, gRPC and ops tests ----------------------------

/// One row of `audit_events`.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub client_id: Option<String>,
    pub grant_id: Option<uuid::Uuid>,
    pub detail: Value,
}

/// The key ring the test configuration seals tokens with (`k1`), for minting forged, expired or
/// never-issued tokens that still carry a valid seal or tag.
pub fn test_key_ring() -> auth_service::domain::token::KeyRing {
    let secret = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    auth_service::domain::token::KeyRing::new(&[("k1".to_owned(), secret)], "k1").unwrap()
}

/// `token` with one character of its random part changed (still well-formed, no longer authentic).
pub fn mangle(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let i = chars.len() - 5;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// Asserts an RFC 6749 §5.2 error answer: status, `error` code, JSON, `Cache-Control: no-store`.
pub fn assert_oauth_error(
    resp: &(u16, Value, reqwest::header::HeaderMap),
    status: u16,
    error: &str,
) {
    let (s, body, headers) = resp;
    assert_eq!(
        (*s, body["error"].as_str()),
        (status, Some(error)),
        "{body}"
    );
    let obj = body.as_object().expect("error body is a JSON object");
    assert!(
        obj.keys().all(|k| k == "error" || k == "error_description"),
        "{body}"
    );
    assert!(
        obj.get("error_description").is_none_or(Value::is_string),
        "{body}"
    );
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{headers:?}"
    );
}

impl TestServer {
    /// Another handle on this server's database: for a second replica or a restart (`start_on`).
    /// Stop the extra server with `stop_keep_db` so that the database is dropped only once.
    pub fn shared_db(&self) -> TestDb {
        TestDb {
            name: self.db.name.clone(),
            url: self.db.url.clone(),
        }
    }

    /// `POST /token` with HTTP Basic client authentication.
    pub async fn token_basic(
        &self,
        id: &str,
        secret: &str,
        form: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = self
            .http
            .post(self.url("/token"))
            .basic_auth(id, Some(secret))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.json().await.unwrap_or(Value::Null), headers)
    }

    /// The `refresh_token` grant for a public client, with extra parameters.
    pub async fn refresh(
        &self,
        client_id: &str,
        refresh_token: &str,
        extra: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ];
        form.extend_from_slice(extra);
        self.token(&form).await
    }

    /// `POST /revoke` authenticated as a public client (`client_id` in the form).
    pub async fn revoke_as(&self, client_id: &str, token: &str) -> reqwest::Response {
        self.http
            .post(self.url("/revoke"))
            .form(&[("token", token), ("client_id", client_id)])
            .send()
            .await
            .unwrap()
    }

    /// HTTP introspection as the static client with extra parameters (e.g. `resource`).
    pub async fn introspect_with(&self, token: &str, extra: &[(&str, &str)]) -> Value {
        let mut form = vec![("token", token)];
        form.extend_from_slice(extra);
        let r = self
            .http
            .post(self.url("/introspect"))
            .basic_auth(STATIC_CLIENT, Some(STATIC_SECRET))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        r.json().await.unwrap()
    }

    /// Asserts that a token is inactive over HTTP (`{"active": false}` and no other member) and
    /// over gRPC (`active = false`, every other field empty).
    pub async fn assert_inactive(&self, token: &str) {
        let body = self.introspect(token).await;
        assert_eq!(
            body,
            json!({"active": false}),
            "HTTP introspection of a token that must be inactive"
        );
        let g = self.grpc_introspect(token, "").await;
        assert_eq!(
            g,
            mcpauth_proto::v1::IntrospectResponse::default(),
            "gRPC introspection"
        );
    }

    /// Asserts that a token is active over HTTP and gRPC; returns the HTTP introspection. A
    /// refresh token is described over HTTP only to its own client: for one, the static client
    /// must be told `{"active": false}` and gRPC must call it active.
    pub async fn assert_active(&self, token: &str) -> Value {
        let body = self.introspect(token).await;
        if token.starts_with("mcprt_") {
            assert_eq!(
                body,
                json!({"active": false}),
                "another client's refresh token"
            );
            assert!(
                self.grpc_introspect(token, "").await.active,
                "gRPC introspection"
            );
            return body;
        }
        assert_eq!(body["active"], true, "{body}");
        assert!(
            self.grpc_introspect(token, "").await.active,
            "gRPC introspection"
        );
        body
    }

    /// The audit events of `kind`, waiting up to 2 s for at least `at_least` (events are batched).
    pub async fn audit_events(&self, kind: &str, at_least: usize) -> Vec<AuditRow> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let rows: Vec<(Option<String>, Option<uuid::Uuid>, Value)> = sqlx::query_as(
                "SELECT client_id, grant_id, detail FROM audit_events WHERE kind = $1 ORDER BY id",
            )
            .bind(kind)
            .fetch_all(&self.pool)
            .await
            .unwrap();
            if rows.len() >= at_least || std::time::Instant::now() > deadline {
                return rows
                    .into_iter()
                    .map(|(client_id, grant_id, detail)| AuditRow {
                        client_id,
                        grant_id,
                        detail,
                    })
                    .collect();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

// --- helpers for the registration, authorize, consent and rate-limit tests ---------------------

/// The `Location` header of a response, if any.
pub fn location(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// Asserts the HTML error page `/authorize` answers with when it must not redirect (unknown
/// client, unverified redirect URI, malformed request): 400, HTML, no `Location`, framing
/// refused, not cached. Returns the page.
pub async fn assert_error_page(r: reqwest::Response) -> String {
    assert_eq!(r.status().as_u16(), 400, "expected the error page");
    assert!(
        location(&r).is_none(),
        "an error page must not redirect: {:?}",
        location(&r)
    );
    let h = r.headers();
    assert!(
        h["content-type"].to_str().unwrap().starts_with("text/html"),
        "{h:?}"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(h["cache-control"], "no-store");
    r.text().await.unwrap()
}
