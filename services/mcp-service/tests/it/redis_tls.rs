//! auth-service and mcp-service on a Redis that only speaks TLS, with an ACL user and client
//! certificates (a private redis-server started here, see tests/support/tls_redis.rs): codes,
//! MCP sessions and the revocation fan-out all go through it.

use std::time::{Duration, Instant};

use crate::harness::*;

#[path = "../../../../tests/support/tls_redis.rs"]
mod tls_redis;
use tls_redis::TlsRedis;

/// The same `[redis]` settings for both services, as environment variables.
fn redis_env(server: &TlsRedis, ca: &str) -> Vec<(&'static str, String)> {
    vec![
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

#[tokio::test]
async fn both_services_work_on_a_tls_redis_with_an_acl_user() {
    let server = TlsRedis::start("mcp-stack");
    let s = Stack::start_with(StackOptions {
        auth_env: redis_env(&server, "ca.pem"),
        mcp_env: redis_env(&server, "ca.pem"),
        ..Default::default()
    })
    .await;
    // The authorization code went through Redis (auth-service), the session too (mcp-service).
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let sid = s.session(at).await;
    let r = s
        .post(
            Some(at),
            serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "whoami", "arguments": {}}}),
            Some(&sid),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let msgs = messages(r).await;
    assert!(msgs[0]["result"].is_object(), "{msgs:?}");
    for base in [s.mcp_base.clone(), s.issuer.clone()] {
        let r = s.http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(
            r.status().as_u16(),
            200,
            "{base}: {}",
            r.text().await.unwrap()
        );
    }
    // Both services' keys are on the TLS server, under the ACL user.
    let keys = server_keys(&server).await;
    assert!(keys.iter().any(|k| k.contains(":session:")), "{keys:?}");

    // A revocation reaches mcp-service over the TLS pub/sub subscription within a second.
    let state = &s.auth.as_ref().unwrap().state;
    let claims = state.tokens.validate_access(at).unwrap();
    state
        .tokens
        .revoke(
            auth_service::store::revocations::RevocationKind::Token,
            &claims.jti,
            claims.exp,
        )
        .await
        .unwrap();
    let started = Instant::now();
    while s.post_status(Some(at), initialize(), None).await != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn mcp_service_refuses_to_start_on_a_redis_it_cannot_verify() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = TlsRedis::start("mcp-wrong-ca");
    let env: std::collections::HashMap<String, String> = redis_env(&server, "other-ca.pem")
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain([
            ("MCPAUTH__HTTP__ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            // Outside dev mode the built-in (public) dev credential is refused.
            (
                "MCPAUTH__VERIFIER__GRPC__CREDENTIAL".to_owned(),
                "redis-tls-test-credential".to_owned(),
            ),
        ])
        .collect();
    let cfg = mcp_service::config::Config::load(None, &env).expect("the configuration is valid");
    let err = match mcp_service::app::start(cfg, mcpauth_runtime::init_metrics()).await {
        Ok(_) => panic!("started on a Redis whose certificate is from another CA"),
        Err(e) => format!("{e:#}"),
    };
    assert_eq!(
        err,
        "redis: TLS handshake failed: invalid peer certificate: UnknownIssuer \
         (is redis.tls.ca_file the CA that signed the server's certificate?)"
    );
}

async fn server_keys(server: &TlsRedis) -> Vec<String> {
    let tls = mcpauth_runtime::RedisTls {
        ca_file: Some(server.file("ca.pem")),
        cert_file: Some(server.file("client.pem")),
        key_file: Some(server.file("client.key")),
    };
    let client = mcpauth_runtime::redis_client("redis", &server.url(), Some(&tls)).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .unwrap()
}
