//! token-vault on a Redis that only speaks TLS, with an ACL user and client certificates (a
//! private redis-server started here, see tests/support/tls_redis.rs).

use crate::harness::*;

#[path = "../../../../tests/support/tls_redis.rs"]
mod tls_redis;
use tls_redis::TlsRedis;

fn redis_env(server: &TlsRedis, ca: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MCPAUTH__HTTP__ADDR", "127.0.0.1:0".into()),
        ("MCPAUTH__REDIS__URL", server.url()),
        (
            "MCPAUTH__REDIS__TLS__CA_FILE",
            server.file(ca).display().to_string(),
        ),
        (
            "MCPAUTH__REDIS__TLS__CERT_FILE",
            server.file("client.pem").display().to_string(),
        ),
        (
            "MCPAUTH__REDIS__TLS__KEY_FILE",
            server.file("client.key").display().to_string(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_vault_is_ready_and_serves_on_a_tls_redis() {
    let w = World::start().await;
    let server = TlsRedis::start("vault");
    let v = w.vault(&redis_env(&server, "ca.pem")).await;
    let http = v.running.as_ref().unwrap().http_addr.unwrap();
    let r = w
        .http
        .get(format!("http://{http}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "ready");
    // A refresh takes its lock in Redis: an expired upstream token is refreshed and returned.
    let mut c = v.client();
    let (mcp, user) = w.dev_login_token().await;
    let expired = w.upstream_tokens("tls", now() - 10);
    put(&mut c, &user, "github", expired.clone()).await;
    let got = get(&mut c, &mcp, "github")
        .await
        .expect("refreshed through the vault");
    assert!(!got.access_token.is_empty());
    assert_ne!(got.access_token, expired.access_token, "not refreshed");
    v.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_vault_refuses_to_start_on_a_redis_it_cannot_verify() {
    let w = World::start().await;
    let server = TlsRedis::start("vault-wrong-ca");
    let cfg = w.vault_config(
        &w.vault_toml(&[("k1", 1)], "k1", ""),
        &redis_env(&server, "other-ca.pem"),
    );
    let err = match token_vault::start(cfg, mcpauth_runtime::init_metrics()).await {
        Ok(_) => panic!("started on a Redis whose certificate is from another CA"),
        Err(e) => format!("{e:#}"),
    };
    assert_eq!(
        err,
        "redis: TLS handshake failed: invalid peer certificate: UnknownIssuer \
         (is redis.tls.ca_file the CA that signed the server's certificate?)"
    );
    w.stop().await;
}
