//! What running in a cluster needs, as an operator sees it: the ops paths on their own admin
//! listener, the drain on SIGTERM, `migrate` with database settings only, the refusals of dev
//! credentials and plaintext gRPC, and one environment for the whole stack.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_auth-service");

/// The binary, without the caller's MCPAUTH_ variables (a developer's shell may set some).
fn command() -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("MCPAUTH_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn status(http: &reqwest::Client, url: String) -> u16 {
    http.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn ops_paths_are_only_on_the_admin_listener_when_it_is_set() {
    let s = TestServer::start_with(Options {
        env: vec![("MCPAUTH_AUTH__ADMIN__ADDR", "127.0.0.1:0".into())],
        ..Default::default()
    })
    .await;
    let admin = s
        .running
        .as_ref()
        .unwrap()
        .admin_addr
        .expect("admin listener");
    assert_ne!(admin.port(), 0);
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(status(&s.http, s.url(path)).await, 404, "public {path}");
        assert_eq!(
            status(&s.http, format!("http://{admin}{path}")).await,
            200,
            "admin {path}"
        );
    }
    // The public port keeps OAuth; the admin port serves nothing else.
    assert_eq!(
        status(&s.http, s.url("/.well-known/oauth-authorization-server")).await,
        200
    );
    assert_eq!(
        status(
            &s.http,
            format!("http://{admin}/.well-known/oauth-authorization-server")
        )
        .await,
        404
    );
    let body = s
        .http
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, r#"{"postgres":"ok","redis":"ok"}"#);
    s.stop().await;
}

/// A request whose body is still on its way: sends the head and half the body now.
struct SlowRequest {
    stream: TcpStream,
    rest: Vec<u8>,
}

impl SlowRequest {
    fn start(addr: SocketAddr, path: &str, headers: &[(&str, String)], body: &str) -> Self {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let (first, rest) = body.as_bytes().split_at(body.len() / 2);
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(first).unwrap();
        stream.flush().unwrap();
        SlowRequest {
            stream,
            rest: rest.to_vec(),
        }
    }

    /// Sends the rest of the body; returns the whole response.
    fn finish(mut self) -> String {
        self.stream.write_all(&self.rest).unwrap();
        let mut out = String::new();
        self.stream.read_to_string(&mut out).unwrap();
        out
    }
}

/// Waits until a new TCP connection to `addr` is refused; returns when that was first seen.
async fn until_refused(addr: SocketAddr, deadline: Duration) -> Instant {
    let started = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
            return Instant::now();
        }
        assert!(
            started.elapsed() < deadline,
            "{addr} still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_readyz_503_then_listeners_close_and_in_flight_requests_finish() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDb::create().await;
    let prefix = format!("mcpauth-test-{}", uuid::Uuid::new_v4().simple());
    let (http_port, grpc_port, admin_port) = (free_port(), free_port(), free_port());
    let delay = 3;
    let file = std::env::temp_dir().join(format!("{prefix}.toml"));
    std::fs::write(
        &file,
        format!(
            "dev_mode = true\nissuer = \"http://127.0.0.1:{http_port}\"\n\
             [http]\naddr = \"127.0.0.1:{http_port}\"\nworkers = 2\nshutdown_timeout_secs = 20\n\
             [grpc]\naddr = \"127.0.0.1:{grpc_port}\"\n\
             [admin]\naddr = \"127.0.0.1:{admin_port}\"\n\
             [shutdown]\ndrain_delay_secs = {delay}\n\
             [database]\nurl = \"{}\"\n[redis]\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\n\
             [tokens]\ncurrent_key = \"k1\"\n[log]\nfilter = \"warn\"\n{}",
            db.url,
            redis_url(),
            test_toml("")
        ),
    )
    .unwrap();
    let child = Child(
        command()
            .arg("--config")
            .arg(&file)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let public: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let readyz = format!("http://127.0.0.1:{admin_port}/readyz");
    let started = Instant::now();
    while !http
        .get(&readyz)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(started.elapsed() < Duration::from_secs(30), "not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A token request in flight: its body is only half sent when SIGTERM arrives.
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{STATIC_CLIENT}:{STATIC_SECRET}"));
    let slow = SlowRequest::start(
        public,
        "/token",
        &[
            ("authorization", format!("Basic {basic}")),
            (
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
        ],
        &format!(
            "grant_type=client_credentials&resource={}",
            url::form_urlencoded::byte_serialize(RESOURCE.as_bytes()).collect::<String>()
        ),
    );
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let term = Instant::now();

    // At once: not ready (the load balancer stops sending), yet alive.
    let mut not_ready = None;
    while term.elapsed() < Duration::from_secs(2) {
        let r = http.get(&readyz).send().await.unwrap();
        if r.status().as_u16() == 503 {
            not_ready = Some(r.text().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        not_ready.as_deref(),
        Some("draining"),
        "readyz 503 right after SIGTERM"
    );
    assert_eq!(
        status(&http, format!("http://127.0.0.1:{admin_port}/healthz")).await,
        200
    );
    // gRPC health checks see it too.
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc_port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "mcpauth.v1.TokenIntrospection".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status(),
        tonic_health::pb::health_check_response::ServingStatus::NotServing
    );
    // Requests that still arrive during the delay are served.
    let during = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let r = during
        .get(format!(
            "http://127.0.0.1:{http_port}/.well-known/oauth-authorization-server"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        term.elapsed() < Duration::from_secs(delay),
        "checked within the delay"
    );

    // After the delay the listener is closed: a new connection is refused, cleanly.
    let refused = until_refused(public, Duration::from_secs(delay + 15)).await;
    assert!(
        refused.duration_since(term) >= Duration::from_millis(delay * 1000 - 300),
        "the listener closed {:?} after SIGTERM, before the {delay} s delay",
        refused.duration_since(term)
    );
    // The request in flight completes.
    let response = tokio::task::spawn_blocking(move || slow.finish())
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"access_token\""), "{response}");

    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "still running after the drain");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "{exit}");
    let _ = std::fs::remove_file(&file);
    db.drop_db().await;
}

fn run(args: &[&str], file: &std::path::Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = command();
    cmd.arg("--config").arg(file).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_config(body: &str) -> std::path::PathBuf {
    let file =
        std::env::temp_dir().join(format!("auth-ops-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, body).unwrap();
    file
}

#[tokio::test]
async fn migrate_needs_only_the_database_settings() {
    let name = format!("mcpauth_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&admin_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", admin_url().rsplit_once('/').unwrap().0);
    // What a migration Job mounts: the database and nothing else (no keys, no login, no issuer).
    let file = temp_config(&format!("[database]\nurl = \"{url}\"\n"));
    let (code, _, err) = run(&["migrate"], &file, &[]);
    assert_eq!(code, 0, "{err}");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(applied > 0);
    pool.close().await;
    // The same file is not enough to serve: that needs keys.
    let (code, _, err) = run(&["check-config"], &file, &[]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim_end(),
        "auth-service: configuration error: tokens.keys: at least one key is required outside dev mode"
    );
    let _ = std::fs::remove_file(&file);
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await;
    admin.close().await;
}

/// A configuration that serves outside dev mode, but for `extra`.
fn production(extra: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    format!(
        "issuer = \"https://auth.example.com\"\n\
         [tokens]\ncurrent_key = \"k1\"\n[[tokens.keys]]\nid = \"k1\"\nsecret = \"{key}\"\n\
         [login]\nprovider = \"local\"\n[[login.users]]\nusername = \"a\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA\"\n\
         {extra}"
    )
}

#[test]
fn refusals_are_one_line_and_stop_the_start() {
    let ok = temp_config(&production(""));
    let (code, out, err) = run(&["check-config"], &ok, &[]);
    assert_eq!((code, out.as_str()), (0, "configuration ok\n"), "{err}");
    let _ = std::fs::remove_file(&ok);

    let dev_caller = format!(
        "[[grpc.callers]]\nname = \"dev\"\ncredential_sha256 = \"{}\"\npermissions = [\"introspect\"]\n",
        sha256_hex("dev-service-credential")
    );
    let vault = |addr: &str, credential: &str| {
        format!(
            "[upstream.providers.corp]\nkind = \"oidc\"\nissuer = \"https://sso.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
             [vault]\naddr = \"{addr}\"\ncredential = \"{credential}\"\n"
        )
    };
    for (extra, env, line) in [
        (
            dev_caller.clone(),
            vec![],
            "grpc.callers[0].credential_sha256: is the public dev-service-credential from the repository's dev configuration, refused outside dev mode (set dev_mode = true on loopback, or configure your own)",
        ),
        (
            vault("http://127.0.0.1:9091", "dev-service-credential"),
            vec![],
            "vault.credential: is the public dev-service-credential from the repository's dev configuration, refused outside dev mode (set dev_mode = true on loopback, or configure your own)",
        ),
        (
            vault("http://token-vault:9091", "vault-credential"),
            vec![],
            "vault.addr: plaintext http:// to non-loopback host token-vault; use https:// with [vault.tls], or set allow_plaintext_grpc = true to accept an unencrypted network",
        ),
        (
            String::new(),
            vec![("MCPAUTH_AUTH__ADMIN__ADDR", "admin:8180")],
            "admin.addr: \"admin:8180\" is not an ip:port address (invalid socket address syntax)",
        ),
    ] {
        let file = temp_config(&production(&extra));
        let (code, _, err) = run(&["check-config"], &file, &env);
        assert_eq!(code, 2, "{extra}");
        assert_eq!(err, format!("auth-service: configuration error: {line}\n"));
        let _ = std::fs::remove_file(&file);
    }
    // The explicit opt-in accepts the plaintext address.
    let file = temp_config(&format!(
        "allow_plaintext_grpc = true\n{}",
        production(&vault("http://token-vault:9091", "vault-credential"))
    ));
    assert_eq!(run(&["check-config"], &file, &[]).0, 0);
    let _ = std::fs::remove_file(&file);
    // Dev mode takes the dev configuration as it is, on loopback only.
    let dev = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/dev.toml");
    assert_eq!(run(&["check-config"], &dev, &[]).0, 0);
    let (code, _, err) = run(
        &["check-config"],
        &dev,
        &[("MCPAUTH_AUTH__ADMIN__ADDR", "0.0.0.0:8180")],
    );
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "auth-service: configuration error: admin.addr: dev mode refuses to listen on non-loopback 0.0.0.0:8180\n"
    );
}

#[test]
fn one_environment_for_the_whole_stack() {
    let dev = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/dev.toml");
    // The environment of `make run` configuring all three services, and the older spelling of
    // a token-vault key (it has no meaning here and must not stop auth-service).
    let env = [
        ("MCPAUTH_AUTH__RATE_LIMIT__TOKEN", "100"),
        ("MCPAUTH_VAULT__REFRESH__BUFFER_SECS", "30"),
        ("MCPAUTH_MCP__SESSIONS__IDLE_TIMEOUT_SECS", "60"),
        ("MCPAUTH__ENCRYPTION__CURRENT_KEY", "dev-1"),
    ];
    let (code, out, err) = run(&["check-config"], &dev, &env);
    assert_eq!((code, out.as_str()), (0, "configuration ok\n"), "{err}");
    // A typo under the service's own prefix is still refused.
    let (code, _, err) = run(
        &["check-config"],
        &dev,
        &[("MCPAUTH_AUTH__RATE_LIMIT__TOKNE", "100")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("unknown field `tokne`"), "{err}");
    // The configuration file may come from the service's own variable.
    let out = command()
        .arg("check-config")
        .env("MCPAUTH_AUTH_CONFIG", &dev)
        .env("MCPAUTH_AUTH__ADMIN__ADDR", "0.0.0.0:8180")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dev mode refuses"),
        "the file named by MCPAUTH_AUTH_CONFIG was read"
    );
}

/// Issue 12 item 10: outside dev mode every gRPC caller names its permissions; unknown names and
/// a `start_connect` without the audiences it may present stop the start with one line.
#[test]
fn grpc_caller_permissions_are_explicit_and_checked_at_start() {
    let caller = |rest: &str| {
        format!(
            "[[resources]]\nuri = \"https://mcp.example.com/mcp\"\nscopes = [\"mcp:tools.read\"]\ndefault_scopes = [\"mcp:tools.read\"]\n\
             [[grpc.callers]]\nname = \"mcp-service\"\ncredential_sha256 = \"{}\"\n{rest}",
            "ab".repeat(32)
        )
    };
    for (rest, line) in [
        (
            "",
            "grpc.callers[0].permissions: missing; list the RPCs \"mcp-service\" may call (introspect, start_connect, admin, exchange)",
        ),
        (
            "permissions = [\"introspect\", \"everything\"]\n",
            "grpc.callers[0].permissions: unknown permission \"everything\" (known: introspect, start_connect, admin, exchange)",
        ),
        (
            "permissions = []\n",
            "grpc.callers[0].permissions: must not be empty (introspect, start_connect, admin, exchange)",
        ),
        (
            "permissions = [\"start_connect\"]\n",
            "grpc.callers[0].resources: required with start_connect (the audiences of the user tokens \"mcp-service\" may present)",
        ),
        (
            "permissions = [\"start_connect\"]\nresources = [\"https://other.example/mcp\"]\n",
            "grpc.callers[0].resources: \"https://other.example/mcp\" is not a configured resource",
        ),
    ] {
        let file = temp_config(&production(&caller(rest)));
        let (code, _, err) = run(&["check-config"], &file, &[]);
        assert_eq!(code, 2, "{rest}");
        assert_eq!(err, format!("auth-service: configuration error: {line}\n"));
        let _ = std::fs::remove_file(&file);
    }
    let file = temp_config(&production(&caller(
        "permissions = [\"introspect\", \"start_connect\"]\nresources = [\"https://mcp.example.com/mcp\"]\n",
    )));
    let (code, _, err) = run(&["check-config"], &file, &[]);
    assert_eq!(code, 0, "{err}");
    let _ = std::fs::remove_file(&file);
}
