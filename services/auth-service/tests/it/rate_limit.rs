//! Rate limits (B.4: "expect open registration abuse"): a fixed window per client IP, counted in
//! Redis so that every replica shares it; 429 with `Retry-After` and an OAuth-shaped body.

use serde_json::{Value, json};

use crate::harness::*;

/// Long enough that a test never straddles two windows (see `fresh_window`).
const WINDOW_SECS: u64 = 3600;

fn limited(bucket: &'static str, limit: u32) -> Options {
    Options {
        toml: String::new(),
        env: vec![
            (bucket, limit.to_string()),
            ("MCPAUTH__RATE_LIMIT__WINDOW_SECS", WINDOW_SECS.to_string()),
        ],
    }
}

/// Waits out the last seconds of a window, so that the counts of one test fall in one window.
async fn fresh_window() {
    let now = chrono::Utc::now().timestamp() as u64;
    let left = WINDOW_SECS - now % WINDOW_SECS;
    if left < 30 {
        tokio::time::sleep(std::time::Duration::from_secs(left + 1)).await;
    }
}

fn metadata() -> Value {
    json!({
        "client_name": "Rate limited",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
    })
}

async fn post_register(s: &TestServer, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut req = s.http.post(s.url("/register")).json(&metadata());
    if let Some(ip) = forwarded_for {
        req = req.header("x-forwarded-for", ip);
    }
    req.send().await.unwrap()
}

/// Asserts a 429: `Retry-After` in whole seconds within the window, JSON `{error,
/// error_description}`, no caching.
async fn assert_limited(r: reqwest::Response) {
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is a number of seconds");
    assert!((1..=WINDOW_SECS).contains(&retry), "{retry}");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body: Value = r.json().await.expect("a JSON body");
    assert_oauth_error(&(status, body, headers), 429, "rate_limited");
}

async fn dynamic_clients(s: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM clients WHERE source = 'dynamic'")
        .fetch_one(&s.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn fourth_registration_from_one_ip_is_429() {
    fresh_window().await;
    let s = TestServer::start_with(limited("MCPAUTH__RATE_LIMIT__REGISTER", 3)).await;
    for _ in 0..3 {
        assert_eq!(post_register(&s, None).await.status().as_u16(), 201);
    }
    assert_limited(post_register(&s, None).await).await;
    assert_limited(post_register(&s, None).await).await;
    assert_eq!(
        dynamic_clients(&s).await,
        3,
        "a limited request registers nothing"
    );
    // Other endpoints have their own budgets.
    let client: String =
        sqlx::query_scalar("SELECT client_id FROM clients WHERE source = 'dynamic' LIMIT 1")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    let code = s.code_for(&client, None).await;
    assert!(!code.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn registration_limit_is_shared_across_replicas() {
    fresh_window().await;
    let s = TestServer::start_with(limited("MCPAUTH__RATE_LIMIT__REGISTER", 3)).await;
    // A second replica on the same Redis prefix (its own database: only Redis is shared here).
    let s2 = TestServer::start_on(
        TestDb::create().await,
        s.prefix.clone(),
        limited("MCPAUTH__RATE_LIMIT__REGISTER", 3),
    )
    .await;
    assert_eq!(post_register(&s, None).await.status().as_u16(), 201);
    assert_eq!(post_register(&s2, None).await.status().as_u16(), 201);
    assert_eq!(post_register(&s, None).await.status().as_u16(), 201);
    // The fourth, whichever replica gets it, is over the limit.
    assert_limited(post_register(&s2, None).await).await;
    assert_limited(post_register(&s, None).await).await;
    assert_eq!(dynamic_clients(&s).await + dynamic_clients(&s2).await, 3);
    s2.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn limits_are_per_client_ip() {
    fresh_window().await;
    let mut opts = limited("MCPAUTH__RATE_LIMIT__REGISTER", 1);
    opts.env
        .push(("MCPAUTH__RATE_LIMIT__TRUST_FORWARDED_FOR", "true".into()));
    let s = TestServer::start_with(opts).await;
    assert_eq!(
        post_register(&s, Some("203.0.113.1"))
            .await
            .status()
            .as_u16(),
        201
    );
    assert_limited(post_register(&s, Some("203.0.113.1")).await).await;
    // Another address has its own budget; the left-most X-Forwarded-For entry is the client.
    assert_eq!(
        post_register(&s, Some("203.0.113.2, 10.0.0.1"))
            .await
            .status()
            .as_u16(),
        201
    );
    assert_limited(post_register(&s, Some("203.0.113.2")).await).await;
    s.stop().await;
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_trusted() {
    fresh_window().await;
    let s = TestServer::start_with(limited("MCPAUTH__RATE_LIMIT__REGISTER", 1)).await;
    assert_eq!(
        post_register(&s, Some("203.0.113.1"))
            .await
            .status()
            .as_u16(),
        201
    );
    // A client cannot escape the limit by inventing addresses.
    assert_limited(post_register(&s, Some("203.0.113.99")).await).await;
    s.stop().await;
}

#[tokio::test]
async fn authorize_is_rate_limited() {
    fresh_window().await;
    let s = TestServer::start_with(limited("MCPAUTH__RATE_LIMIT__AUTHORIZE", 2)).await;
    let client = s.public_client().await;
    s.code_for(&client, None).await;
    s.code_for(&client, None).await;
    let r = s
        .authorize(&[
            ("response_type", "code"),
            ("client_id", &client),
            ("redirect_uri", REDIRECT),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("resource", RESOURCE),
        ])
        .await;
    assert!(r.headers().get("location").is_none());
    assert_limited(r).await;
    s.stop().await;
}

/// Sends `n` client_credentials requests (8 at a time); returns how many were admitted.
async fn admitted(s: &TestServer, n: usize) -> usize {
    let mut ok = 0;
    let form = [("grant_type", "client_credentials"), ("resource", RESOURCE)];
    for chunk in 0..n.div_ceil(8) {
        let size = 8.min(n - chunk * 8);
        let results = futures_util::future::join_all(
            (0..size).map(|_| s.token_basic(STATIC_CLIENT, STATIC_SECRET, &form)),
        )
        .await;
        for (status, body, headers) in results {
            match status {
                200 => ok += 1,
                429 => {
                    assert_eq!(body["error"], "rate_limited");
                    assert!(headers.contains_key("retry-after"));
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
    }
    ok
}

#[tokio::test]
async fn high_volume_limits_are_counted_locally_and_shared_through_redis() {
    // A limit of 1,000 per window takes the batched path (see src/ratelimit.rs).
    fresh_window().await;
    let s = TestServer::start_with(limited("MCPAUTH__RATE_LIMIT__TOKEN", 1000)).await;
    let first = admitted(&s, 1100).await;
    assert_eq!(first, 1000, "one replica admits exactly the limit");

    // A second replica on the same Redis: it learns the shared total within one flush interval
    // and admits little or nothing more.
    let opts = limited("MCPAUTH__RATE_LIMIT__TOKEN", 1000);
    let s2 = TestServer::start_on(s.shared_db(), s.prefix.clone(), opts).await;
    // Give the first replica's last counts time to reach Redis.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let second = admitted(&s2, 200).await;
    assert!(
        second <= 8,
        "the second replica admitted {second} past a shared limit already reached"
    );
    s2.stop_keep_db().await;
    s.stop().await;
}
