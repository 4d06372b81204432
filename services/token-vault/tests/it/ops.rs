//! The optional HTTP listener (`http.addr`): `/healthz`, `/readyz`, `/metrics`.

use crate::harness::*;

/// Secrets of this world's vault configuration (besides the tokens in `World::secrets`).
const DB_PASSWORD: &str = "db-password-never-shown";
const REDIS_PASSWORD: &str = "redis-password-never-shown";

async fn fetch(w: &World, addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let r = w
        .http
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, r.text().await.unwrap())
}

/// None of the configured secrets nor the tokens handed out appear in `body`.
fn assert_no_secrets(w: &World, what: &str, body: &str) {
    let mut secrets: Vec<String> = w.secrets.lock().unwrap().clone();
    secrets.extend(w.upstream.get(|s| s.issued.clone()));
    secrets.extend(
        [
            CREDENTIAL,
            GET_ONLY,
            PUT_ONLY,
            INTROSPECT_CREDENTIAL,
            "upstream-client-secret",
            DB_PASSWORD,
            REDIS_PASSWORD,
        ]
        .map(String::from),
    );
    secrets.push(key_b64(1));
    for (i, s) in secrets.iter().enumerate() {
        assert!(!body.contains(s.as_str()), "secret #{i} shown by {what}");
    }
}

/// The world's database URL with a password (Postgres trusts local connections and ignores it).
fn db_url_with_password(w: &World) -> String {
    w.db_url.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{DB_PASSWORD}@"),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_readiness_and_metrics() {
    let w = World::start().await;
    let db_url = db_url_with_password(&w);
    assert_ne!(
        db_url, w.db_url,
        "the test database URL has the expected shape"
    );
    let v = w
        .vault(&[
            ("MCPAUTH__HTTP__ADDR", "127.0.0.1:0".into()),
            ("MCPAUTH__DATABASE__URL", db_url),
        ])
        .await;
    let http = v
        .running
        .as_ref()
        .unwrap()
        .http_addr
        .expect("http listener");
    assert_ne!(http.port(), 0);

    let (status, _, body) = fetch(&w, http, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, _, body) = fetch(&w, http, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready"));
    // Only the three routes, and only GET.
    assert_eq!(fetch(&w, http, "/").await.0, 404);
    assert_eq!(fetch(&w, http, "/config").await.0, 404);
    let post = w
        .http
        .post(format!("http://{http}/metrics"))
        .send()
        .await
        .unwrap();
    assert!(post.status().is_client_error(), "{}", post.status());

    // A real GetAccessToken, then its metrics.
    let mut c = v.client();
    let (mcp, user) = w.dev_login_token().await;
    let tokens = w.upstream_tokens("ops", now() + 3600);
    put(&mut c, &user, "github", tokens.clone()).await;
    assert_eq!(
        get(&mut c, &mcp, "github").await.unwrap().access_token,
        tokens.access_token
    );
    let (status, content_type, metrics) = fetch(&w, http, "/metrics").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let access_ok = metrics
        .lines()
        .find(|l| {
            l.starts_with("mcpauth_vault_access_total{")
                && l.contains("action=\"get\"")
                && l.contains("outcome=\"ok\"")
        })
        .unwrap_or_else(|| panic!("no get/ok access counter in:\n{metrics}"));
    let count: f64 = access_ok.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{access_ok}");
    assert!(
        metrics.contains("# TYPE mcpauth_vault_access_total counter"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mcpauth_vault_introspection_cache_total{")),
        "{metrics}"
    );
    // Every sample line is Prometheus text: `name{labels} value`.
    for line in metrics
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "not a sample: {line}");
    }
    // A refused user token shows as an outcome, not as the token.
    let refused = get(&mut c, "not-a-valid-mcp-token-xyz", "github").await;
    assert!(refused.is_err());
    let (_, _, metrics_after) = fetch(&w, http, "/metrics").await;
    assert!(!metrics_after.contains("not-a-valid-mcp-token-xyz"));
    // Per-method gRPC server metrics: the successful and the refused GetAccessToken, by status.
    let get_calls = |code: &str| {
        let prefix = format!(
            "mcpauth_grpc_server_requests_total{{method=\"mcpauth.v1.TokenVault/GetAccessToken\",code=\"{code}\"}} "
        );
        metrics_after
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(|v| v.parse::<f64>().unwrap())
    };
    assert_eq!(get_calls("OK"), Some(1.0), "{metrics_after}");
    let refused_code = refused.unwrap_err().code();
    assert_eq!(refused_code, tonic::Code::Unauthenticated);
    assert_eq!(get_calls("UNAUTHENTICATED"), Some(1.0), "{metrics_after}");
    assert!(
        metrics_after.contains(
            "mcpauth_grpc_server_request_duration_seconds_count{method=\"mcpauth.v1.TokenVault/GetAccessToken\"} 2"
        ),
        "{metrics_after}"
    );
    // Its own calls to auth-service, and its pools.
    assert!(
        metrics_after.contains(
            "mcpauth_grpc_client_requests_total{method=\"mcpauth.v1.TokenIntrospection/Introspect\",code=\"OK\"}"
        ),
        "{metrics_after}"
    );
    for pool in ["postgres", "redis"] {
        assert!(
            metrics_after.contains(&format!("mcpauth_pool_max_connections{{pool=\"{pool}\"}}")),
            "{metrics_after}"
        );
    }

    for path in ["/healthz", "/readyz", "/metrics"] {
        let (_, _, body) = fetch(&w, http, path).await;
        assert_no_secrets(&w, path, &body);
        assert!(!body.contains(&user), "{path} shows a user id");
    }
    assert_no_secrets(&w, "/metrics", &metrics);
    v.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_fails_while_redis_does_not_answer() {
    let w = World::start().await;
    // A port nothing listens on (bound then released).
    let closed = free_port();
    let v = w
        .vault(&[
            ("MCPAUTH__HTTP__ADDR", "127.0.0.1:0".into()),
            (
                "MCPAUTH__REDIS__URL",
                format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{closed}"),
            ),
            ("MCPAUTH__DATABASE__URL", db_url_with_password(&w)),
        ])
        .await;
    let http = v
        .running
        .as_ref()
        .unwrap()
        .http_addr
        .expect("http listener");

    // Alive, but not ready: Postgres answers, Redis does not.
    let (status, _, body) = fetch(&w, http, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, _, body) = fetch(&w, http, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, "postgres: true, redis: false");
    assert_no_secrets(&w, "/readyz", &body);
    assert!(!body.contains(&closed.to_string()), "{body}");
    let (status, _, metrics) = fetch(&w, http, "/metrics").await;
    assert_eq!(status, 200);
    assert_no_secrets(&w, "/metrics", &metrics);
    v.stop().await;

    // The same vault with Redis back: ready.
    let v = w
        .vault(&[("MCPAUTH__HTTP__ADDR", "127.0.0.1:0".into())])
        .await;
    let http = v.running.as_ref().unwrap().http_addr.unwrap();
    assert_eq!(fetch(&w, http, "/readyz").await.0, 200);
    v.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_http_listener_unless_configured() {
    let w = World::start().await;
    let v = w.vault(&[]).await;
    assert!(v.running.as_ref().unwrap().http_addr.is_none());
    v.stop().await;
    w.stop().await;
}
