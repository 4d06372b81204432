//! What running in a cluster needs, as an operator sees it: the ops paths on their own admin
//! listener, the drain on SIGTERM, `check-config` and its refusals, and one environment for the
//! whole stack (all three services' loaders).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_mcp-service");

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_paths_are_only_on_the_admin_listener_when_it_is_set() {
    let stack = Stack::start_with(StackOptions {
        mcp_env: vec![("MCPAUTH_MCP__ADMIN__ADDR", "127.0.0.1:0".into())],
        ..Default::default()
    })
    .await;
    let admin = stack
        .mcp
        .as_ref()
        .unwrap()
        .admin_addr
        .expect("admin listener");
    let status = |url: String| {
        let http = stack.http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            status(format!("{}{path}", stack.mcp_base)).await,
            404,
            "public {path}"
        );
        assert_eq!(
            status(format!("http://{admin}{path}")).await,
            200,
            "admin {path}"
        );
    }
    let prm = "/.well-known/oauth-protected-resource/mcp";
    assert_eq!(status(format!("{}{prm}", stack.mcp_base)).await, 200);
    assert_eq!(status(format!("http://{admin}{prm}")).await, 404);
    assert_eq!(status(format!("http://{admin}/mcp")).await, 404);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_readyz_503_then_listeners_close_and_in_flight_requests_finish() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = format!("static-key-{}", uuid::Uuid::new_v4().simple());
    let (port, admin_port) = (free_port(), free_port());
    let prefix = format!("mcptest-drain-{}", uuid::Uuid::new_v4().simple());
    let delay = 3;
    let file = std::env::temp_dir().join(format!("{prefix}.toml"));
    std::fs::write(
        &file,
        format!(
            "resource = \"http://127.0.0.1:{port}/mcp\"\nauthorization_servers = [\"http://127.0.0.1:1\"]\n\
             [http]\naddr = \"127.0.0.1:{port}\"\nworkers = 1\nshutdown_timeout_secs = 20\n\
             [admin]\naddr = \"127.0.0.1:{admin_port}\"\n[shutdown]\ndrain_delay_secs = {delay}\n\
             [log]\nfilter = \"warn\"\n\
             [verifier]\nmode = \"static_keys\"\n[[verifier.static_keys]]\nname = \"probe\"\nkey_sha256 = \"{}\"\nscopes = [\"mcp:tools.read\"]\n\
             [redis]\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\nauth_key_prefix = \"{prefix}-auth\"\n",
            auth_service::domain::token::hex(&auth_service::domain::token::hash(&key)),
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ),
    )
    .unwrap();
    let mut child = Child(
        command()
            .arg("--config")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
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
    let public: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // An MCP request in flight: its body is only half sent when SIGTERM arrives.
    let body = initialize().to_string();
    let mut slow = TcpStream::connect(public).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\
         authorization: Bearer {key}\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    slow.write_all(head.as_bytes()).unwrap();
    slow.write_all(first).unwrap();
    slow.flush().unwrap();

    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let term = Instant::now();
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
    // Still served during the delay, on a new connection.
    let during = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .get(format!(
            "http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(during.status().as_u16(), 200);
    assert!(
        term.elapsed() < Duration::from_secs(delay),
        "checked within the delay"
    );

    // After the delay: a new connection is refused; the request in flight completes.
    loop {
        if TcpStream::connect_timeout(&public, Duration::from_millis(500)).is_err() {
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
    let rest = rest.to_vec();
    let response = tokio::task::spawn_blocking(move || {
        slow.write_all(&rest).unwrap();
        let mut out = String::new();
        let _ = slow.read_to_string(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"protocolVersion\""), "{response}");

    let deadline = Instant::now() + Duration::from_secs(25);
    let exit = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "still running after the drain");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "{exit}");
    let _ = std::fs::remove_file(&file);
}

fn run(args: &[&str], file: Option<&Path>, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = command();
    if let Some(f) = file {
        cmd.arg("--config").arg(f);
    }
    cmd.args(args);
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

#[test]
fn check_config_and_its_refusals() {
    let dev = config_dir().join("mcp-service.dev.toml");
    let (code, out, err) = run(&["check-config"], Some(&dev), &[]);
    assert_eq!((code, out.as_str()), (0, "configuration ok\n"), "{err}");
    // The built-in defaults carry the public dev credential: outside dev mode they do not start.
    let dev_refusal = "verifier.grpc.credential: is the public dev-service-credential from the repository's dev configuration, refused outside dev mode (set dev_mode = true on loopback, or configure your own)";
    let (code, _, err) = run(&["check-config"], None, &[]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        format!("mcp-service: configuration error: {dev_refusal}\n")
    );
    // `serve` (the default command) refuses the same way, before listening.
    let (code, _, err) = run(&[], None, &[]);
    assert_eq!(
        (code, err),
        (
            2,
            format!("mcp-service: configuration error: {dev_refusal}\n")
        )
    );
    let own = [("MCPAUTH_MCP__VERIFIER__GRPC__CREDENTIAL", "mcp-credential")];
    assert_eq!(run(&["check-config"], None, &own).0, 0);
    // The conformance suite's test tools (issue 15) are refused outside dev mode, and accepted in it.
    let (code, _, err) = run(
        &["check-config"],
        None,
        &[own[0], ("MCPAUTH_MCP__CONFORMANCE_TOOLS", "true")],
    );
    assert_eq!(
        (code, err.as_str()),
        (
            2,
            "mcp-service: configuration error: conformance_tools: the conformance suite's test tools are refused outside dev mode (dev_mode = true)\n"
        )
    );
    let (code, _, err) = run(
        &["check-config"],
        Some(&dev),
        &[("MCPAUTH_MCP__CONFORMANCE_TOOLS", "true")],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(
        &["check-config"],
        None,
        &[
            own[0],
            (
                "MCPAUTH_MCP__VERIFIER__GRPC__ADDR",
                "http://auth-service:9090",
            ),
        ],
    );
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "mcp-service: configuration error: verifier.grpc.addr: plaintext http:// to non-loopback host auth-service; use https:// with [verifier.grpc.tls], or set allow_plaintext_grpc = true to accept an unencrypted network\n"
    );
    let (code, _, _) = run(
        &["check-config"],
        None,
        &[
            own[0],
            (
                "MCPAUTH_MCP__VERIFIER__GRPC__ADDR",
                "http://auth-service:9090",
            ),
            ("MCPAUTH_MCP__ALLOW_PLAINTEXT_GRPC", "true"),
        ],
    );
    assert_eq!(code, 0);
    let (code, _, err) = run(
        &["check-config"],
        Some(&dev),
        &[("MCPAUTH_MCP__HTTP__ADDR", "0.0.0.0:8081")],
    );
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "mcp-service: configuration error: http.addr: dev mode refuses to listen on non-loopback 0.0.0.0:8081\n"
    );
}

#[test]
fn one_environment_configures_all_three_services() {
    // One shell (or compose env file) for the stack: each service takes its own prefix; the
    // older MCPAUTH__ applies where a service has the key and is skipped where it does not.
    let env: HashMap<String, String> = [
        ("MCPAUTH_AUTH__RATE_LIMIT__TOKEN", "7"),
        ("MCPAUTH_VAULT__REFRESH__BUFFER_SECS", "30"),
        ("MCPAUTH_MCP__SESSIONS__IDLE_TIMEOUT_SECS", "60"),
        ("MCPAUTH__RATE_LIMIT__TOKEN", "100"),
        ("MCPAUTH__LOG__FILTER", "debug"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let dir = config_dir();
    let (auth, auth_env) =
        auth_service::config::Config::load_reporting(Some(&dir.join("dev.toml")), &env).unwrap();
    let (vault, vault_env) =
        token_vault::Config::load_reporting(Some(&dir.join("token-vault.dev.toml")), &env).unwrap();
    let (mcp, mcp_env) =
        mcp_service::config::Config::load_reporting(Some(&dir.join("mcp-service.dev.toml")), &env)
            .unwrap();
    assert_eq!(auth.rate_limit.token, 7, "the own prefix wins");
    assert_eq!(vault.refresh.buffer_secs, 30);
    assert_eq!(mcp.sessions.idle_timeout_secs, 60);
    for filter in [&auth.log.filter, &vault.log.filter, &mcp.log.filter] {
        assert_eq!(filter, "debug");
    }
    assert_eq!(
        auth_env.legacy_applied,
        vec!["MCPAUTH__LOG__FILTER", "MCPAUTH__RATE_LIMIT__TOKEN"]
    );
    assert!(auth_env.legacy_ignored.is_empty());
    for report in [&vault_env, &mcp_env] {
        assert_eq!(report.legacy_applied, vec!["MCPAUTH__LOG__FILTER"]);
        assert_eq!(report.legacy_ignored, vec!["MCPAUTH__RATE_LIMIT__TOKEN"]);
    }
    // The binary: the exact failure of the issue (an auth-service key in `make run`'s shell).
    let (code, out, err) = run(
        &["check-config"],
        Some(&dir.join("mcp-service.dev.toml")),
        &[
            ("MCPAUTH__RATE_LIMIT__TOKEN", "100"),
            ("MCPAUTH_AUTH__RATE_LIMIT__TOKEN", "100"),
        ],
    );
    assert_eq!((code, out.as_str()), (0, "configuration ok\n"), "{err}");
    // The file may be named by the service's own variable.
    let out = command()
        .arg("check-config")
        .env("MCPAUTH_MCP_CONFIG", dir.join("mcp-service.dev.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
