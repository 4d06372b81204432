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

/// `limited` behind reverse proxies in `cidrs` (the tests connect from 127.0.0.1).
fn behind(bucket: &'static str, limit: u32, cidrs: &str) -> Options {
    let mut opts = limited(bucket, limit);
    opts.env
        .push(("MCPAUTH__HTTP__TRUSTED_PROXIES", cidrs.into()));
    opts
}

async fn post_register_with(s: &TestServer, header: &str, value: &str) -> u16 {
    s.http
        .post(s.url("/register"))
        .header(header, value)
        .json(&metadata())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_gets_no_fresh_bucket() {
    // Attack (issue 12 item 1): behind an ingress, the old `trust_forwarded_for = true` took the
    // left-most X-Forwarded-For entry, so each invented address was a fresh budget (45 of 45
    // registrations went through against a limit of 30). Here the proxies are 10.0.0.0/8; the
    // attacker connects directly (127.0.0.1, not a proxy) and invents a header per request.
    fresh_window().await;
    let s = TestServer::start_with(behind("MCPAUTH__RATE_LIMIT__REGISTER", 3, "10.0.0.0/8")).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(post_register_with(&s, "x-forwarded-for", &format!("203.0.113.{i}")).await);
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429, 429, 429, 429]);
    // Forwarded is no way around it either.
    assert_eq!(
        post_register_with(&s, "forwarded", "for=198.51.100.1").await,
        429
    );
    assert_eq!(dynamic_clients(&s).await, 3);
    s.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_right_most_untrusted_address_counts() {
    fresh_window().await;
    let s = TestServer::start_with(behind(
        "MCPAUTH__RATE_LIMIT__REGISTER",
        1,
        "127.0.0.1/32, 10.0.0.0/8",
    ))
    .await;
    // The peer (127.0.0.1) and the inner proxy (10.0.0.5) are trusted; 203.0.113.1 is the client,
    // whatever it wrote to the left.
    assert_eq!(
        post_register_with(&s, "x-forwarded-for", "6.6.6.6, 203.0.113.1, 10.0.0.5").await,
        201
    );
    assert_eq!(
        post_register_with(&s, "x-forwarded-for", "7.7.7.7, 203.0.113.1, 10.0.0.5").await,
        429
    );
    assert_eq!(
        post_register_with(&s, "x-forwarded-for", "8.8.8.8, 203.0.113.1").await,
        429
    );
    // Another client behind the same proxies has its own budget.
    assert_eq!(
        post_register_with(&s, "x-forwarded-for", "203.0.113.1, 203.0.113.2").await,
        201
    );
    assert_eq!(
        post_register_with(&s, "x-forwarded-for", "203.0.113.2").await,
        429
    );
    // The audit trail records the derived address.
    let r = s
        .http
        .post(s.url("/token"))
        .header("x-forwarded-for", "6.6.6.6, 198.51.100.77")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "nobody"),
            ("client_secret", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let mut ips: Vec<Option<String>> = Vec::new();
    for _ in 0..50 {
        ips = sqlx::query_scalar("SELECT ip FROM audit_events WHERE kind = 'client.auth_failed'")
            .fetch_all(&s.pool)
            .await
            .unwrap();
        if !ips.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ips, [Some("198.51.100.77".to_owned())]);
    s.stop().await;
}

#[tokio::test]
async fn forwarded_header_when_configured() {
    fresh_window().await;
    let mut opts = behind("MCPAUTH__RATE_LIMIT__REGISTER", 1, "127.0.0.1");
    opts.env
        .push(("MCPAUTH__HTTP__CLIENT_IP_HEADER", "forwarded".into()));
    let s = TestServer::start_with(opts).await;
    assert_eq!(
        post_register_with(&s, "forwarded", "for=203.0.113.1;proto=https").await,
        201
    );
    assert_eq!(
        post_register_with(&s, "forwarded", "for=6.6.6.6, for=\"203.0.113.1:4711\"").await,
        429
    );
    assert_eq!(
        post_register_with(&s, "forwarded", "for=\"[2001:db8::1]:4711\"").await,
        201
    );
    assert_eq!(
        post_register_with(&s, "forwarded", "for=\"[2001:db8::1]\"").await,
        429
    );
    // X-Forwarded-For is not read in this mode: these count as the proxy itself.
    assert_eq!(
        post_register_with(&s, "x-forwarded-for", "203.0.113.50").await,
        201
    );
    assert_eq!(
        post_register_with(&s, "x-forwarded-for", "203.0.113.51").await,
        429
    );
    // `unknown` stops the walk at the proxy: the proxy's budget, used up just above.
    assert_eq!(
        post_register_with(&s, "forwarded", "for=unknown").await,
        429
    );
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

#[test]
fn the_removed_trust_forwarded_for_is_refused_with_a_pointer() {
    let env: std::collections::HashMap<String, String> = [
        ("MCPAUTH__DEV_MODE", "true"),
        ("MCPAUTH__RATE_LIMIT__TRUST_FORWARDED_FOR", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let e = auth_service::config::Config::load(None, &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("rate_limit.trust_forwarded_for: removed"), "{e}");
    assert!(e.contains("http.trusted_proxies"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    // `false`, the old default, still loads (and means nothing).
    let mut env = env;
    env.insert(
        "MCPAUTH__RATE_LIMIT__TRUST_FORWARDED_FOR".into(),
        "false".into(),
    );
    assert!(auth_service::config::Config::load(None, &env).is_ok());
    env.insert("MCPAUTH__HTTP__TRUSTED_PROXIES".into(), "10.0.0.1/8".into());
    let e = auth_service::config::Config::load(None, &env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("http.trusted_proxies[0]: \"10.0.0.1/8\": host bits are set"),
        "{e}"
    );
}

const SECOND_CLIENT: &str = "second-backend";
const SECOND_SECRET: &str = "second-backend-secret-0123456789abcdef";

#[tokio::test]
async fn a_client_over_its_token_limit_does_not_starve_its_neighbours() {
    // Two backends behind one egress address: a per-IP /token budget of 10, 3 per client.
    fresh_window().await;
    let mut opts = limited("MCPAUTH__RATE_LIMIT__TOKEN", 10);
    opts.env
        .push(("MCPAUTH__RATE_LIMIT__TOKEN_PER_CLIENT", "3".into()));
    opts.toml = format!(
        "[[clients]]\nclient_id = \"{SECOND_CLIENT}\"\nclient_secret_sha256 = \"{}\"\n\
         grant_types = [\"client_credentials\"]\ntoken_endpoint_auth_method = \"client_secret_basic\"\n",
        sha256_hex(SECOND_SECRET)
    );
    let s = TestServer::start_with(opts).await;
    let form = [("grant_type", "client_credentials"), ("resource", RESOURCE)];
    // The first client bursts well past both budgets.
    let mut first = Vec::new();
    for _ in 0..15 {
        let (status, body, headers) = s.token_basic(STATIC_CLIENT, STATIC_SECRET, &form).await;
        if status == 429 {
            assert_eq!(body["error"], "rate_limited");
            assert!(headers.contains_key("retry-after"));
        }
        first.push(status);
    }
    assert_eq!(first.iter().filter(|s| **s == 200).count(), 3, "{first:?}");
    assert!(first[3..].iter().all(|s| *s == 429), "{first:?}");
    // The second client, same address, still gets its own three.
    for _ in 0..3 {
        let (status, body, _) = s.token_basic(SECOND_CLIENT, SECOND_SECRET, &form).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body, headers) = s.token_basic(SECOND_CLIENT, SECOND_SECRET, &form).await;
    assert_eq!(status, 429);
    assert_oauth_error(&(status, body, headers), 429, "rate_limited");
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
