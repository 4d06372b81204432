//! What running in a cluster needs, as an operator sees it: the admin listener, the drain on
//! SIGTERM, `migrate` with database settings only, the refusals of dev keys, dev credentials and
//! plaintext gRPC, and one environment for the whole stack.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_token-vault");

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

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_listener_is_admin_addr_or_the_older_http_addr() {
    let w = World::start().await;
    let v = w
        .vault(&[("MCPAUTH_VAULT__ADMIN__ADDR", "127.0.0.1:0".into())])
        .await;
    let admin = v
        .running
        .as_ref()
        .unwrap()
        .http_addr
        .expect("admin listener");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = w
            .http
            .get(format!("http://{admin}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    v.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_readyz_503_then_the_listener_closes_and_calls_in_flight_finish() {
    let w = World::start().await;
    let (grpc_port, admin_port) = (free_port(), free_port());
    let delay = 2;
    let file = std::env::temp_dir().join(format!("{}-vault-drain.toml", w.prefix));
    std::fs::write(
        &file,
        w.vault_toml(
            &[("k1", 1)],
            "k1",
            &format!("\n[admin]\naddr = \"127.0.0.1:{admin_port}\"\n[shutdown]\ndrain_delay_secs = {delay}\n"),
        ),
    )
    .unwrap();
    let mut child = Child(
        command()
            .arg("--config")
            .arg(&file)
            .arg("serve")
            .env(
                "MCPAUTH_VAULT__GRPC__ADDR",
                format!("127.0.0.1:{grpc_port}"),
            )
            .env("MCPAUTH_VAULT__LOG__FILTER", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let readyz = format!("http://127.0.0.1:{admin_port}/readyz");
    let started = Instant::now();
    while !w
        .http
        .get(&readyz)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(started.elapsed() < Duration::from_secs(30), "not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let addr: SocketAddr = format!("127.0.0.1:{grpc_port}").parse().unwrap();
    let connect = || async move {
        tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
    };
    let mut client =
        mcpauth_proto::v1::token_vault_client::TokenVaultClient::new(connect().await.unwrap());
    let mcp = w.mcp_token("alice", &w.resource);
    put(
        &mut client,
        "alice",
        "github",
        w.upstream_tokens("drain", now() - 5),
    )
    .await;
    let fresh = w.upstream_tokens("fresh", now() + 3600);
    put(&mut client, "alice", "plain", fresh.clone()).await;

    // A call in flight: its refresh waits on a slow upstream across the whole drain.
    w.upstream.set(|s| s.delay_ms = delay * 1000 + 1500);
    let pending = {
        let mut c = client.clone();
        let mcp = mcp.clone();
        tokio::spawn(async move { get(&mut c, &mcp, "github").await })
    };
    while w.upstream.get(|s| s.token_calls) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "no refresh began"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let term = Instant::now();

    // At once: /readyz 503 and gRPC health NOT_SERVING, while /healthz stays 200.
    let mut not_ready = None;
    while term.elapsed() < Duration::from_secs(1) {
        let r = w.http.get(&readyz).send().await.unwrap();
        if r.status().as_u16() == 503 {
            not_ready = Some(r.text().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(not_ready.as_deref(), Some("draining"));
    let health = HealthClient::new(connect().await.unwrap())
        .check(HealthCheckRequest {
            service: "mcpauth.v1.TokenVault".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), ServingStatus::NotServing);
    let alive = w
        .http
        .get(format!("http://127.0.0.1:{admin_port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(alive.status().as_u16(), 200);
    // A new connection during the delay is still served.
    let mut late = mcpauth_proto::v1::token_vault_client::TokenVaultClient::new(
        connect().await.expect("accepting during the delay"),
    );
    assert_eq!(
        get(&mut late, &mcp, "plain").await.unwrap().access_token,
        fresh.access_token
    );
    assert!(
        term.elapsed() < Duration::from_secs(delay),
        "checked within the delay"
    );

    // After the delay: new connections refused; the call in flight completes.
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
            break;
        }
        assert!(
            term.elapsed() < Duration::from_secs(delay + 15),
            "still accepting"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        term.elapsed() >= Duration::from_millis(delay * 1000 - 300),
        "closed after {:?}, before the {delay} s delay",
        term.elapsed()
    );
    let got = pending
        .await
        .unwrap()
        .expect("the call in flight completes");
    assert!(
        got.access_token.starts_with("upstream-at-refreshed-1-"),
        "{}",
        got.access_token
    );

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
    w.stop().await;
}

fn run(args: &[&str], file: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
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

fn temp_config(body: &str) -> PathBuf {
    let file =
        std::env::temp_dir().join(format!("vault-ops-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, body).unwrap();
    file
}

fn dev_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/token-vault.dev.toml")
}

#[tokio::test]
async fn migrate_needs_only_the_database_settings() {
    let name = format!("mcpauth_vaulttest_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&admin_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", admin_url().rsplit_once('/').unwrap().0);
    // What a migration Job mounts: the database, and no encryption key at all.
    let file = temp_config(&format!("[database]\nurl = \"{url}\"\n"));
    let (code, _, err) = run(&["migrate"], &file, &[]);
    assert_eq!(code, 0, "{err}");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'vault_credentials'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 1);
    pool.close().await;
    // Serving needs more.
    let (code, _, err) = run(&["check-config"], &file, &[]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("token-vault: configuration error: "),
        "{err}"
    );
    let _ = std::fs::remove_file(&file);
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await;
    admin.close().await;
}

/// A configuration that serves outside dev mode, with `extra` appended (its own tables).
fn production(top: &str, extra: &str) -> String {
    format!(
        "{top}\n[[grpc.callers]]\nname = \"auth\"\ncredential_sha256 = \"{}\"\npermissions = [\"put\"]\n\
         [introspection]\naddr = \"http://127.0.0.1:9090\"\ncredential = \"vault-credential\"\naccepted_resources = [\"https://mcp.example.com/mcp\"]\n\
         [encryption]\ncurrent_key = \"k1\"\n[[encryption.keys]]\nid = \"k1\"\nsecret = \"{}\"\n{extra}",
        sha256_hex("auth-credential"),
        key_b64(1)
    )
}

#[test]
fn refusals_are_one_line_and_stop_the_start() {
    let ok = temp_config(&production("", ""));
    let (code, out, err) = run(&["check-config"], &ok, &[]);
    assert_eq!((code, out.as_str()), (0, "configuration ok\n"), "{err}");
    let _ = std::fs::remove_file(&ok);
    let dev_refusal = |key: &str, what: &str| {
        format!(
            "{key}: is the public {what} from the repository's dev configuration, refused outside dev mode (set dev_mode = true on loopback, or configure your own)"
        )
    };
    let dev_key = "[[encryption.keys]]\nid = \"dev-1\"\nsecret = \"ZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGQ=\"\n";
    /// A configuration, environment overrides, and the line it is refused with.
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, String);
    let cases: Vec<Case> = vec![
        (
            production("", dev_key),
            vec![],
            dev_refusal("encryption.keys[1].secret", "dev encryption key"),
        ),
        (
            production(
                "",
                &format!(
                    "[[grpc.callers]]\nname = \"dev\"\ncredential_sha256 = \"{}\"\npermissions = [\"get\"]\n",
                    sha256_hex("dev-service-credential")
                ),
            ),
            vec![],
            dev_refusal("grpc.callers[1].credential_sha256", "dev-service-credential"),
        ),
        (
            production("", ""),
            vec![("MCPAUTH_VAULT__INTROSPECTION__CREDENTIAL", "dev-service-credential")],
            dev_refusal("introspection.credential", "dev-service-credential"),
        ),
        (
            production("", ""),
            vec![("MCPAUTH_VAULT__INTROSPECTION__ADDR", "http://auth-service:9090")],
            "introspection.addr: plaintext http:// to non-loopback host auth-service; use https:// with [introspection.tls], or set allow_plaintext_grpc = true to accept an unencrypted network".into(),
        ),
        (
            production("", "[admin]\naddr = \"0.0.0.0:8182\"\n[http]\naddr = \"0.0.0.0:9100\"\n"),
            vec![],
            "http.addr: the older spelling of admin.addr; give the address once, as admin.addr".into(),
        ),
    ];
    for (body, env, line) in cases {
        let file = temp_config(&body);
        let (code, _, err) = run(&["check-config"], &file, &env);
        assert_eq!(code, 2, "{line}");
        assert_eq!(err, format!("token-vault: configuration error: {line}\n"));
        let _ = std::fs::remove_file(&file);
    }
    let file = temp_config(&production("allow_plaintext_grpc = true", ""));
    assert_eq!(
        run(
            &["check-config"],
            &file,
            &[(
                "MCPAUTH_VAULT__INTROSPECTION__ADDR",
                "http://auth-service:9090"
            )]
        )
        .0,
        0
    );
    let _ = std::fs::remove_file(&file);
    // `make run`'s file is dev mode, which accepts its public key, on loopback only.
    assert_eq!(run(&["check-config"], &dev_file(), &[]).0, 0);
    let (code, _, err) = run(
        &["check-config"],
        &dev_file(),
        &[("MCPAUTH_VAULT__DEV_MODE", "false")],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("encryption.keys[0].secret: is the public dev encryption key"),
        "{err}"
    );
    let (code, _, err) = run(
        &["check-config"],
        &dev_file(),
        &[("MCPAUTH_VAULT__GRPC__ADDR", "0.0.0.0:9091")],
    );
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "token-vault: configuration error: grpc.addr: dev mode refuses to listen on non-loopback 0.0.0.0:9091\n"
    );
}

#[test]
fn one_environment_for_the_whole_stack() {
    // `make run` with auth-service keys in its environment: token-vault starts all the same.
    let env = [
        ("MCPAUTH__RATE_LIMIT__TOKEN", "100"),
        ("MCPAUTH_AUTH__RATE_LIMIT__TOKEN", "100"),
        ("MCPAUTH_MCP__SESSIONS__IDLE_TIMEOUT_SECS", "60"),
        ("MCPAUTH_VAULT__REFRESH__BUFFER_SECS", "30"),
    ];
    let (code, out, err) = run(&["check-config"], &dev_file(), &env);
    assert_eq!((code, out.as_str()), (0, "configuration ok\n"), "{err}");
    let (code, _, err) = run(
        &["check-config"],
        &dev_file(),
        &[("MCPAUTH_VAULT__REFRESH__BUFER_SECS", "30")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("unknown field `bufer_secs`"), "{err}");
}
