//! mcp-service in front of a REAL external authorization server: panva's oidc-provider
//! (tests/e2e/external-idp.mjs, run with `node` from PATH), in the `jwt` and `introspection_http`
//! verifier modes. Tokens are obtained from it over HTTP (client_credentials + `resource`).
//! Needs tests/e2e/node_modules (`scripts/install-tools.sh`, which `make test` runs first).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Child;

use serde_json::Value;

use crate::harness::{OTHER_RESOURCE, initialize, www_authenticate};

// spawn_ready, shared with auth-service's tests.
#[path = "../../../../tests/support/node.rs"]
mod node;
use node::spawn_ready;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The running oidc-provider; killed when dropped (also if the test panics).
struct Idp {
    child: Child,
    issuer: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    fn start(resource: &str, format: &str) -> Idp {
        let e2e = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e");
        assert!(
            e2e.join("node_modules/oidc-provider/package.json").exists(),
            "tests/e2e/node_modules/oidc-provider is missing: run scripts/install-tools.sh \
             (or `make tools`) before these tests"
        );
        let (resource, format) = (resource.to_owned(), format.to_owned());
        let (child, issuer) = spawn_ready("external-idp.mjs", move |port| {
            vec![port.to_string(), resource.clone(), format.clone()]
        });
        Idp { child, issuer }
    }
}

struct Setup {
    idp: Idp,
    mcp: Option<mcp_service::app::Running>,
    resource: String,
    mcp_base: String,
    http: reqwest::Client,
}

enum Mode {
    Jwt,
    IntrospectionHttp,
}

impl Setup {
    async fn start(mode: Mode) -> Setup {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let resource = format!("http://127.0.0.1:{port}/mcp");
        let format = match mode {
            Mode::Jwt => "jwt",
            // oidc-provider does not introspect its JWT access tokens.
            Mode::IntrospectionHttp => "opaque",
        };
        let idp = Idp::start(&resource, format);
        let issuer = &idp.issuer;
        let verifier = match mode {
            Mode::Jwt => format!(
                "[verifier]\nmode = \"jwt\"\n[verifier.jwt]\nissuer = \"{issuer}\"\n\
                 jwks_uri = \"{issuer}/jwks\"\nalgorithms = [\"RS256\", \"ES256\"]\n\
                 min_refetch_secs = 30\nleeway_secs = 0\n"
            ),
            Mode::IntrospectionHttp => format!(
                "[verifier]\nmode = \"introspection_http\"\n[verifier.http]\n\
                 endpoint = \"{issuer}/token/introspection\"\nclient_id = \"mcp-introspector\"\n\
                 client_secret = \"introspector-secret\"\nissuer = \"{issuer}\"\ncache_ttl_ms = 0\n"
            ),
        };
        let prefix = format!("mcpext-{}", uuid::Uuid::new_v4().simple());
        let env: HashMap<String, String> = [
            ("MCPAUTH__RESOURCE", resource.clone()),
            ("MCPAUTH__HTTP__ADDR", format!("127.0.0.1:{port}")),
            ("MCPAUTH__HTTP__WORKERS", "2".into()),
            ("MCPAUTH__HTTP__SHUTDOWN_TIMEOUT_SECS", "1".into()),
            ("MCPAUTH__REDIS__URL", redis_url()),
            ("MCPAUTH__REDIS__AUTH_KEY_PREFIX", prefix.clone()),
            ("MCPAUTH__REDIS__KEY_PREFIX", format!("{prefix}-mcp")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let file = std::env::temp_dir().join(format!("{prefix}-mcp.toml"));
        std::fs::write(
            &file,
            format!(
                "authorization_servers = [\"{issuer}\"]\nscopes_supported = [\"mcp:tools.read\"]\n\
                 [http]\nallowed_origins = [\"http://127.0.0.1:{port}\"]\n{verifier}"
            ),
        )
        .unwrap();
        let cfg = mcp_service::config::Config::load(Some(&file), &env).unwrap();
        let _ = std::fs::remove_file(&file);
        let mcp = mcp_service::app::start(cfg, mcpauth_runtime::init_metrics())
            .await
            .unwrap();
        Setup {
            idp,
            mcp: Some(mcp),
            resource,
            mcp_base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    async fn stop(mut self) {
        if let Some(m) = self.mcp.take() {
            m.shutdown().await;
        }
        drop(self.idp);
    }

    /// An access token from oidc-provider's token endpoint (client_credentials, RFC 8707).
    async fn token(&self, client: &str, resource: &str) -> String {
        let body: Value = self
            .http
            .post(format!("{}/token", self.idp.issuer))
            .basic_auth(client, Some(format!("{client}-secret")))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", "mcp:tools.read"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token: {body}"))
            .to_owned()
    }

    async fn initialize(&self, token: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/mcp", self.mcp_base))
            .header("accept", "application/json, text/event-stream")
            .bearer_auth(token)
            .json(&initialize())
            .send()
            .await
            .unwrap()
    }

    async fn assert_accepted(&self, token: &str) {
        let r = self.initialize(token).await;
        let status = r.status().as_u16();
        let h = www_authenticate(&r);
        assert_eq!(status, 200, "{h}");
        let _ = r.text().await;
    }

    async fn assert_invalid_token(&self, token: &str) {
        let r = self.initialize(token).await;
        assert_eq!(r.status().as_u16(), 401);
        let h = www_authenticate(&r);
        assert!(h.contains("error=\"invalid_token\""), "{h}");
    }
}

#[tokio::test]
async fn jwt_mode_accepts_a_token_for_this_resource() {
    let s = Setup::start(Mode::Jwt).await;
    let t = s.token("m2m", &s.resource).await;
    assert_eq!(t.split('.').count(), 3, "a JWT access token");
    s.assert_accepted(&t).await;
    // Again, with the JWKS now cached.
    s.assert_accepted(&t).await;
    s.stop().await;
}

#[tokio::test]
async fn jwt_mode_refuses_a_token_for_another_audience() {
    let s = Setup::start(Mode::Jwt).await;
    let t = s.token("m2m", OTHER_RESOURCE).await;
    s.assert_invalid_token(&t).await;
    s.stop().await;
}

#[tokio::test]
async fn jwt_mode_refuses_a_tampered_signature_or_payload() {
    let s = Setup::start(Mode::Jwt).await;
    let t = s.token("m2m", &s.resource).await;
    let (head, sig) = t.rsplit_once('.').unwrap();
    // Flip one character in the middle of the signature.
    let mut bytes = sig.as_bytes().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{head}.{}", String::from_utf8(bytes).unwrap());
    s.assert_invalid_token(&tampered).await;
    // A payload rewritten for another scope keeps the original signature: refused too.
    let parts: Vec<&str> = t.split('.').collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["scope"] = "mcp:tools".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    s.assert_invalid_token(&forged).await;
    // alg=none with no signature.
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
        parts[1]
    );
    s.assert_invalid_token(&none).await;
    // The genuine token still works (the forgeries did not poison anything).
    s.assert_accepted(&t).await;
    s.stop().await;
}

#[tokio::test]
async fn jwt_mode_refuses_an_expired_token() {
    let s = Setup::start(Mode::Jwt).await;
    // m2m-short's tokens live one second; leeway_secs = 0.
    let t = s.token("m2m-short", &s.resource).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    s.assert_invalid_token(&t).await;
    s.stop().await;
}

#[tokio::test]
async fn introspection_http_mode_accepts_a_token_for_this_resource_only() {
    let s = Setup::start(Mode::IntrospectionHttp).await;
    let t = s.token("m2m", &s.resource).await;
    assert_eq!(t.split('.').count(), 1, "an opaque access token");
    s.assert_accepted(&t).await;
    let other = s.token("m2m", OTHER_RESOURCE).await;
    s.assert_invalid_token(&other).await;
    s.assert_invalid_token("not-a-token-the-issuer-knows").await;
    s.stop().await;
}

#[tokio::test]
async fn introspection_http_mode_refuses_a_revoked_token() {
    let s = Setup::start(Mode::IntrospectionHttp).await;
    let t = s.token("m2m", &s.resource).await;
    s.assert_accepted(&t).await;
    let r = s
        .http
        .post(format!("{}/token/revocation", s.idp.issuer))
        .basic_auth("m2m", Some("m2m-secret"))
        .form(&[("token", t.as_str()), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // cache_ttl_ms = 0: the next request is introspected again.
    s.assert_invalid_token(&t).await;
    s.stop().await;
}

#[tokio::test]
async fn introspection_http_mode_refuses_an_expired_token() {
    let s = Setup::start(Mode::IntrospectionHttp).await;
    let t = s.token("m2m-short", &s.resource).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    s.assert_invalid_token(&t).await;
    s.stop().await;
}
