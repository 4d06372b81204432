use std::sync::{Arc, Mutex};

use super::*;
use crate::pubsub::{ChannelEvent, follow_channel};

#[path = "../../../../tests/support/tls_redis.rs"]
mod tls_redis;
use tls_redis::TlsRedis;

fn tls(server: &TlsRedis, ca: &str, client_cert: bool) -> RedisTls {
    RedisTls {
        ca_file: Some(server.file(ca)),
        cert_file: client_cert.then(|| server.file("client.pem")),
        key_file: client_cert.then(|| server.file("client.key")),
    }
}

fn config_error(url: &str, tls: Option<&RedisTls>) -> String {
    match redis_client("redis", url, tls) {
        Ok(_) => panic!("{tls:?} was accepted"),
        Err(e) => e.to_string(),
    }
}

async fn start_error(url: &str, tls: &RedisTls) -> RedisUnavailable {
    let client = redis_client("redis", url, Some(tls)).unwrap();
    let pool = redis_pool("redis", &client, 2).unwrap();
    check_connection("redis", &pool, Duration::from_secs(5))
        .await
        .expect_err("the connection was made")
}

/// The whole TLS path against a real redis-server: CA from the file, client certificate, ACL user
/// and password from the URL; a pool connection and a pub/sub subscription both work.
#[tokio::test]
async fn rediss_with_ca_file_client_certificate_and_acl_user() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = TlsRedis::start("ok");
    let client = redis_client("redis", &server.url(), Some(&tls(&server, "ca.pem", true))).unwrap();
    let pool = redis_pool("redis", &client, 4).unwrap();
    check_connection("redis", &pool, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e}; server log: {}", server.log()));
    let mut conn = pool.get().await.unwrap();
    let who: String = redis::cmd("ACL")
        .arg("WHOAMI")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(who, tls_redis::REDIS_USER);
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("over tls")
        .query_async(&mut conn)
        .await
        .unwrap();
    let v: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, "over tls");

    // The pub/sub follower uses the same client, so the same TLS and credentials.
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let follower = tokio::spawn({
        let (log, client) = (log.clone(), client.clone());
        async move {
            let stop = async move {
                let _ = stop_rx.await;
            };
            follow_channel(client, "events", "test channel", stop, move |e| {
                log.lock().unwrap().push(match e {
                    ChannelEvent::Subscribed => "subscribed".into(),
                    ChannelEvent::Message(m) => m,
                    ChannelEvent::Lost => "lost".into(),
                });
                std::future::ready(())
            })
            .await;
        }
    });
    for _ in 0..200 {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("events")
            .arg("hello")
            .query_async(&mut conn)
            .await
            .unwrap();
        if log.lock().unwrap().iter().any(|l| l == "hello") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(()).unwrap();
    follower.await.unwrap();
    let log = log.lock().unwrap();
    assert_eq!(
        log.first().map(String::as_str),
        Some("subscribed"),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l == "hello"), "{log:?}");
    assert!(!log.iter().any(|l| l == "lost"), "{log:?}");
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_fails_in_one_clear_line() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = TlsRedis::start("wrong-ca");
    let e = start_error(&server.url(), &tls(&server, "other-ca.pem", true)).await;
    assert!(e.is_configuration(), "{e}");
    let line = e.to_string();
    assert_eq!(
        line,
        "redis: TLS handshake failed: invalid peer certificate: UnknownIssuer \
         (is redis.tls.ca_file the CA that signed the server's certificate?)"
    );
    // Nothing of the URL (with its password) in it.
    assert!(!line.contains(tls_redis::REDIS_PASSWORD));
}

#[tokio::test]
async fn a_wrong_password_or_a_missing_client_certificate_is_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = TlsRedis::start("refused");
    let e = start_error(
        &server.url_with(tls_redis::REDIS_USER, "not-the-password"),
        &tls(&server, "ca.pem", true),
    )
    .await;
    assert!(e.is_configuration(), "{e}");
    assert_eq!(
        e.to_string(),
        "redis: authentication failed (check the user and password in redis.url)"
    );
    assert!(!e.to_string().contains("not-the-password"));

    // The server requires a client certificate (tls-auth-clients yes): without one, no PING.
    let e = start_error(&server.url(), &tls(&server, "ca.pem", false)).await;
    assert!(e.is_configuration(), "{e}");
    assert_eq!(
        e.to_string(),
        "redis: TLS handshake failed: received fatal alert: CertificateRequired"
    );
}

#[tokio::test]
async fn an_unreachable_redis_is_not_a_configuration_error() {
    let client = redis_client("redis", "redis://127.0.0.1:1", None).unwrap();
    let pool = redis_pool("redis", &client, 1).unwrap();
    let e = check_connection("redis", &pool, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(!e.is_configuration(), "{e}");
    assert!(
        e.to_string().starts_with("redis: connection failed: "),
        "{e}"
    );
}

#[test]
fn configuration_mistakes_are_one_line_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("mcpauth-redis-conf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("garbage.pem"), "not a certificate\n").unwrap();
    let ca = |f: &str| RedisTls {
        ca_file: Some(dir.join(f)),
        ..Default::default()
    };
    assert_eq!(
        config_error("redis://127.0.0.1:6379", Some(&RedisTls::default())),
        "configuration error: redis.tls: set, but redis.url is not rediss:// (use rediss:// for TLS)"
    );
    assert_eq!(
        config_error("http://127.0.0.1:6379", None),
        "configuration error: redis.url: must be a redis://, rediss:// (TLS) or unix:// URL"
    );
    assert_eq!(
        config_error("rediss://u:pw@redis.example:6380/#insecure", None),
        "configuration error: redis.url: a #fragment is not accepted (certificate \
         verification cannot be turned off)"
    );
    let missing = config_error("rediss://redis.example:6380", Some(&ca("missing.pem")));
    assert!(
        missing.starts_with(&format!(
            "configuration error: redis.tls.ca_file: {}: ",
            dir.join("missing.pem").display()
        )),
        "{missing}"
    );
    assert_eq!(
        config_error("rediss://redis.example:6380", Some(&ca("garbage.pem"))),
        format!(
            "configuration error: redis.tls.ca_file: {}: no PEM certificate",
            dir.join("garbage.pem").display()
        )
    );
    let half = RedisTls {
        cert_file: Some(dir.join("garbage.pem")),
        ..Default::default()
    };
    assert_eq!(
        config_error("rediss://redis.example:6380", Some(&half)),
        "configuration error: redis.tls.key_file: required with redis.tls.cert_file"
    );
    // Without a CA file the system's roots verify the server: accepted.
    assert!(redis_client("redis", "rediss://u:pw@redis.example:6380/0", None).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
