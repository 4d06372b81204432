//! The stack for the upstream login and connect tests: a REAL upstream OpenID provider (panva's
//! oidc-provider, tests/e2e/upstream-idp.mjs, run with `node` from PATH), auth-service with
//! `login.provider = "upstream"`, and a real token-vault started in-process on the same database.
//! Needs tests/e2e/node_modules (`scripts/install-tools.sh`, which `make test` runs first).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;

use base64::Engine as _;
use mcpauth_proto::v1::token_vault_client::TokenVaultClient;
use serde_json::Value;

use crate::harness::*;

// spawn_ready, shared with mcp-service's tests.
#[path = "../../../../tests/support/node.rs"]
mod node;
use node::spawn_ready;

/// auth-service's credential at the vault (permission `put`).
pub const VAULT_PUT_CREDENTIAL: &str = "auth-service-vault-credential";
/// The tests' credential at the vault (permission `get`), standing in for mcp-service.
pub const VAULT_GET_CREDENTIAL: &str = "tests-vault-get-credential";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The running oidc-provider; killed when dropped (also if the test panics).
pub struct Idp {
    child: Child,
    pub issuer: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    pub fn start(redirect_uri: &str) -> Idp {
        let e2e = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e");
        assert!(
            e2e.join("node_modules/oidc-provider/package.json").exists(),
            "tests/e2e/node_modules/oidc-provider is missing: run scripts/install-tools.sh first"
        );
        let redirect_uri = redirect_uri.to_owned();
        let (child, issuer) = spawn_ready("upstream-idp.mjs", move |port| {
            vec![
                port.to_string(),
                "--redirect-uri".into(),
                redirect_uri.clone(),
            ]
        });
        Idp { child, issuer }
    }

    /// `POST /test/tamper?id_token=<mode>`.
    pub async fn tamper(&self, http: &reqwest::Client, mode: &str) {
        let r = http
            .post(format!("{}/test/tamper?id_token={mode}", self.issuer))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
}

/// What the stack is started with.
pub struct StackOptions {
    /// The provider users log in with: `corp` (OIDC) or `crm` (plain OAuth 2.0 + userinfo).
    pub login_provider: &'static str,
    pub extra_env: Vec<(&'static str, String)>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            login_provider: "corp",
            extra_env: vec![],
        }
    }
}

pub struct Stack {
    pub idp: Idp,
    pub auth: TestServer,
    pub vault: Option<token_vault::Running>,
    pub vault_addr: SocketAddr,
}

impl Stack {
    pub async fn start(opts: StackOptions) -> Stack {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http_port = free_port();
        let grpc_port = free_port();
        let vault_port = free_port();
        let issuer = format!("http://127.0.0.1:{http_port}");
        let idp = Idp::start(&format!("{issuer}/upstream/callback"));
        let idp_issuer = idp.issuer.clone();
        let toml = format!(
            r#"
[upstream.providers.corp]
kind = "oidc"
display_name = "Corp SSO"
issuer = "{idp_issuer}"
client_id = "mcpauth"
client_secret = "mcpauth-secret"
scopes = ["openid", "profile", "email"]

[upstream.providers.crm]
kind = "oauth2"
display_name = "CRM"
authorization_endpoint = "{idp_issuer}/auth"
token_endpoint = "{idp_issuer}/token"
userinfo_endpoint = "{idp_issuer}/me"
client_id = "mcpauth"
client_secret = "mcpauth-secret"
token_endpoint_auth_method = "client_secret_basic"
scopes = ["openid", "servicenow"]
subject_claim = "result.sys_id"
username_claim = "result.user_name"

[vault]
addr = "http://127.0.0.1:{vault_port}"
credential = "{VAULT_PUT_CREDENTIAL}"
"#
        );
        let mut env = vec![
            ("MCPAUTH__DEV_MODE", "false".to_owned()),
            ("MCPAUTH__LOGIN__PROVIDER", "upstream".to_owned()),
            (
                "MCPAUTH__LOGIN__UPSTREAM_PROVIDER",
                opts.login_provider.to_owned(),
            ),
            ("MCPAUTH__HTTP__ADDR", format!("127.0.0.1:{http_port}")),
            ("MCPAUTH__ISSUER", issuer),
            ("MCPAUTH__GRPC__ADDR", format!("127.0.0.1:{grpc_port}")),
        ];
        env.extend(opts.extra_env);
        let auth = TestServer::start_with(Options { toml, env }).await;
        let vault = start_vault(&auth, &idp_issuer, vault_port, grpc_port).await;
        Stack {
            idp,
            vault_addr: vault.grpc_addr,
            vault: Some(vault),
            auth,
        }
    }

    pub async fn stop(mut self) {
        if let Some(v) = self.vault.take() {
            v.shutdown().await;
        }
        self.auth.stop().await;
    }

    /// `GetAccessToken` at the vault with the user's MCP access token (as mcp-service does).
    pub async fn vault_access_token(
        &self,
        mcp_access_token: &str,
        provider: &str,
    ) -> Result<mcpauth_proto::v1::GetAccessTokenResponse, tonic::Status> {
        let mut c = TokenVaultClient::connect(format!("http://{}", self.vault_addr))
            .await
            .unwrap();
        let mut req = tonic::Request::new(mcpauth_proto::v1::GetAccessTokenRequest {
            access_token: mcp_access_token.into(),
            provider: provider.into(),
        });
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {VAULT_GET_CREDENTIAL}").parse().unwrap(),
        );
        c.get_access_token(req).await.map(|r| r.into_inner())
    }

    /// Asks the IdP's userinfo who an upstream access token belongs to.
    pub async fn upstream_userinfo(&self, upstream_access_token: &str) -> Value {
        let r = self
            .auth
            .http
            .get(format!("{}/me", self.idp.issuer))
            .bearer_auth(upstream_access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            200,
            "upstream userinfo refused the token"
        );
        r.json().await.unwrap()
    }

    /// Number of upstream states stored in Redis right now.
    pub async fn upstream_states(&self) -> usize {
        let client = redis::Client::open(redis_url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:upstate:*", self.auth.prefix))
            .query_async(&mut c)
            .await
            .unwrap();
        keys.len()
    }
}

async fn start_vault(
    auth: &TestServer,
    idp: &str,
    vault_port: u16,
    auth_grpc_port: u16,
) -> token_vault::Running {
    let pool = sqlx::PgPool::connect(&auth.db.url).await.unwrap();
    token_vault::store::migrate(&pool).await.unwrap();
    pool.close().await;
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let toml = format!(
        r#"
[grpc]
addr = "127.0.0.1:{vault_port}"

[[grpc.callers]]
name = "auth-service"
credential_sha256 = "{put}"
permissions = ["put"]

[[grpc.callers]]
name = "tests"
credential_sha256 = "{get}"
permissions = ["get"]

[database]
url = "{db}"
max_connections = 4

[redis]
url = "{redis}"
key_prefix = "{prefix}-vault"
auth_key_prefix = "{prefix}"
pool_size = 4

[log]
filter = "warn"
format = "pretty"

[introspection]
addr = "http://127.0.0.1:{auth_grpc_port}"
credential = "{GRPC_CREDENTIAL}"
accepted_resources = ["{RESOURCE}"]

[encryption]
current_key = "v1"

[[encryption.keys]]
id = "v1"
secret = "{key}"

[providers.corp]
token_endpoint = "{idp}/token"
client_id = "mcpauth"
client_secret = "mcpauth-secret"

[providers.crm]
token_endpoint = "{idp}/token"
client_id = "mcpauth"
client_secret = "mcpauth-secret"
"#,
        put = sha256_hex(VAULT_PUT_CREDENTIAL),
        get = sha256_hex(VAULT_GET_CREDENTIAL),
        db = auth.db.url,
        redis = redis_url(),
        prefix = auth.prefix,
    );
    let file = std::env::temp_dir().join(format!("{}-vault.toml", auth.prefix));
    std::fs::write(&file, toml).unwrap();
    let config = token_vault::Config::load(Some(&file), &HashMap::new())
        .expect("token-vault test configuration is valid");
    let _ = std::fs::remove_file(&file);
    token_vault::start(config, mcpauth_runtime::init_metrics())
        .await
        .expect("token-vault starts")
}

/// A browser: one cookie jar for every host (as browsers do for one host name), following
/// redirects by hand so tests see each hop.
#[derive(Default, Clone)]
pub struct Browser {
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub fn absorb(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let removed = value.is_empty()
                || v.to_ascii_lowercase()
                    .split(';')
                    .any(|a| a.trim() == "max-age=0");
            if removed {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn get(&mut self, http: &reqwest::Client, url: &str) -> reqwest::Response {
        let mut req = http.get(url);
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        let r = req.send().await.unwrap();
        self.absorb(&r);
        r
    }

    pub async fn post(
        &mut self,
        http: &reqwest::Client,
        url: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = http.post(url).form(form);
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        let r = req.send().await.unwrap();
        self.absorb(&r);
        r
    }

    /// Drives the upstream provider from `url` (on the IdP) until it redirects back to
    /// auth-service's callback: logs `account` in (or denies, with `account = None`) and lets
    /// the IdP grant consent. Returns the callback URL, not yet visited.
    pub async fn upstream_login(
        &mut self,
        http: &reqwest::Client,
        idp: &str,
        url: &str,
        account: Option<&str>,
    ) -> String {
        let mut url = url.to_owned();
        for _ in 0..12 {
            if !url.starts_with(idp) {
                return url;
            }
            let r = self.get(http, &url).await;
            let status = r.status().as_u16();
            if (300..400).contains(&status) {
                url = absolute(idp, &location(&r).unwrap());
                continue;
            }
            let page = r.text().await.unwrap();
            assert_eq!(status, 200, "upstream login page: {page}");
            let action = page
                .split("action=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .expect("a login form")
                .to_owned();
            let form: Vec<(&str, &str)> = match account {
                Some(a) => vec![("account", a)],
                None => vec![("deny", "1")],
            };
            let r = self.post(http, &absolute(idp, &action), &form).await;
            assert!(r.status().is_redirection(), "{}", r.status());
            url = absolute(idp, &location(&r).unwrap());
        }
        panic!("the upstream provider never redirected back");
    }
}

fn absolute(base: &str, loc: &str) -> String {
    if loc.starts_with("http") {
        loc.to_owned()
    } else {
        format!("{base}{loc}")
    }
}

/// The value of a hidden form field.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden field {name} in {page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

/// The query parameters of a URL.
pub fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The standard authorization request of the tests' public client.
pub fn authorize_url(s: &TestServer, client: &str, state: &str) -> String {
    let mut u = url::Url::parse(&s.url("/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", state)
        .append_pair("resource", RESOURCE);
    u.into()
}
