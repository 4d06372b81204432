//! RFC 8628 device authorization end to end against the real service (Postgres + Redis): the
//! code pair, the verification page through the real local login and the consent page, every
//! polling answer of §3.5, single redemption, another client's poll, brute-force bounds on
//! user-code entry, and two replicas sharing one device flow.

use serde_json::{Value, json};

use crate::consent::{ALICE_PASSWORD, Browser, hidden, local_login, log_in, page};
use crate::harness::*;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A confidential device client (the grant needs the operator's initial access token).
async fn device_client(s: &TestServer) -> (String, String) {
    let (status, body) = s
        .register_with(
            json!({
                "client_name": "Living-room TV",
                "grant_types": [GRANT, "refresh_token"],
                "response_types": [],
                "token_endpoint_auth_method": "client_secret_basic",
            }),
            Some(INITIAL_ACCESS_TOKEN),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (
        body["client_id"].as_str().unwrap().to_owned(),
        body["client_secret"].as_str().unwrap().to_owned(),
    )
}

async fn authorize_device(s: &TestServer, id: &str, secret: &str) -> Value {
    let r = s
        .http
        .post(s.url("/device_authorization"))
        .basic_auth(id, Some(secret))
        .form(&[("scope", "mcp:tools.read"), ("resource", RESOURCE)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    r.json().await.unwrap()
}

async fn poll(s: &TestServer, id: &str, secret: &str, device_code: &str) -> (u16, Value) {
    let (status, body, _) = s
        .token_basic(
            id,
            secret,
            &[("grant_type", GRANT), ("device_code", device_code)],
        )
        .await;
    (status, body)
}

fn assert_poll_error(got: (u16, Value), error: &str) {
    assert_eq!(got.0, 400, "{}", got.1);
    assert_eq!(got.1["error"], error, "{}", got.1);
}

/// The user at the verification page: opens `verification_uri_complete`, confirms the code,
/// signs in as alice and answers the consent page. Returns the final page.
async fn user_decides(s: &TestServer, b: &mut Browser, started: &Value, decision: &str) -> String {
    let complete = started["verification_uri_complete"].as_str().unwrap();
    let query = complete.split_once('?').unwrap().1;
    let typed = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "user_code")
        .unwrap()
        .1
        .into_owned();
    let entry = page(b.get(s, "/device", &[("user_code", &typed)]).await, 200).await;
    // Prefilled, but nothing happens without the user's submit (RFC 8628 §5.4).
    assert!(entry.contains(&typed), "{entry}");
    // Typed the way a person would: lower case, no dash.
    let sloppy = typed.replace('-', "").to_lowercase();
    let login = page(
        b.post(
            s,
            "/device",
            &[("csrf", &hidden(&entry, "csrf")), ("user_code", &sloppy)],
        )
        .await,
        200,
    )
    .await;
    let consent = page(log_in(s, b, &login, "alice", ALICE_PASSWORD).await, 200).await;
    assert!(consent.contains("Living-room TV"), "{consent}");
    assert!(
        consent.contains("A device is asking for access"),
        "{consent}"
    );
    page_any(
        b.post(
            s,
            "/consent",
            &[
                ("request", &hidden(&consent, "request")),
                ("csrf", &hidden(&consent, "csrf")),
                ("decision", decision),
            ],
        )
        .await,
    )
    .await
}

async fn page_any(r: reqwest::Response) -> String {
    assert!(
        r.headers().get("location").is_none(),
        "a device flow never redirects"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    r.text().await.unwrap()
}

#[tokio::test]
async fn metadata_and_registration_name_the_grant() {
    let s = TestServer::start().await;
    let m: Value = s
        .http
        .get(s.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        m["device_authorization_endpoint"],
        format!("{}/device_authorization", s.issuer())
    );
    assert!(
        m["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(GRANT))
    );
    // Open registration may not ask for it; the operator's initial access token may.
    let body =
        json!({"grant_types": [GRANT], "response_types": [], "token_endpoint_auth_method": "none"});
    let (status, err) = s.register(body.clone()).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"], "invalid_client_metadata");
    let (status, ok) = s.register_with(body, Some(INITIAL_ACCESS_TOKEN)).await;
    assert_eq!(status, 201, "{ok}");
    // A client without the grant is refused at the endpoint.
    let (id, secret) = s.confidential_client(&["authorization_code"]).await;
    let r = s
        .http
        .post(s.url("/device_authorization"))
        .basic_auth(&id, Some(&secret))
        .form(&[("scope", "mcp:tools.read")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "unauthorized_client");
    s.stop().await;
}

#[tokio::test]
async fn pending_slow_down_approval_then_one_redemption() {
    let s = TestServer::start_with(local_login()).await;
    let (id, secret) = device_client(&s).await;
    let started = authorize_device(&s, &id, &secret).await;
    let user_code = started["user_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9, "{started}");
    assert!(
        user_code
            .chars()
            .all(|c| c == '-' || "BCDFGHJKLMNPQRSTVWXZ".contains(c))
    );
    assert_eq!(
        started["verification_uri"],
        format!("{}/device", s.issuer())
    );
    assert_eq!(started["expires_in"], 600);
    assert_eq!(started["interval"], 5);
    let device_code = started["device_code"].as_str().unwrap();
    // Only a hash is kept: the code itself is nowhere in Redis.
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:device*", s.prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in &keys {
        assert!(!k.contains(device_code) && !k.contains(&user_code.replace('-', "")));
    }

    assert_poll_error(
        poll(&s, &id, &secret, device_code).await,
        "authorization_pending",
    );
    // Polled again at once: slow_down, and the interval of this device code grows by 5 s.
    let fast = poll(&s, &id, &secret, device_code).await;
    assert_poll_error(fast.clone(), "slow_down");
    assert!(
        fast.1["error_description"]
            .as_str()
            .unwrap()
            .contains("10 seconds"),
        "{}",
        fast.1
    );
    let faster = poll(&s, &id, &secret, device_code).await;
    assert!(
        faster.1["error_description"]
            .as_str()
            .unwrap()
            .contains("15 seconds"),
        "{}",
        faster.1
    );

    let mut b = Browser::default();
    let done = user_decides(&s, &mut b, &started, "allow").await;
    assert!(done.contains("Device connected"), "{done}");

    let (status, tokens) = poll(&s, &id, &secret, device_code).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "mcp:tools.read");
    assert!(tokens["refresh_token"].as_str().is_some());
    let info = s
        .assert_active(tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(info["client_id"], id.as_str());
    // The consent is recorded, as for the authorization code grant.
    let consents: i64 = sqlx::query_scalar("SELECT count(*) FROM consents WHERE client_id = $1")
        .bind(&id)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(consents, 1);
    // Redeemable once.
    assert_poll_error(poll(&s, &id, &secret, device_code).await, "invalid_grant");
    // The refresh token works like any other.
    let (status, refreshed, _) = s
        .token_basic(
            &id,
            &secret,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(s.audit_events("device.redeemed", 1).await.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn denial_wrong_client_and_forged_codes() {
    let s = TestServer::start_with(local_login()).await;
    let (id, secret) = device_client(&s).await;
    let (other, other_secret) = device_client(&s).await;
    let started = authorize_device(&s, &id, &secret).await;
    let device_code = started["device_code"].as_str().unwrap();
    // Another client presenting this device code learns nothing and spends nothing.
    assert_poll_error(
        poll(&s, &other, &other_secret, device_code).await,
        "invalid_grant",
    );
    assert_poll_error(
        poll(&s, &id, &secret, &mangle(device_code)).await,
        "invalid_grant",
    );
    assert_poll_error(
        poll(&s, &id, &secret, device_code).await,
        "authorization_pending",
    );

    let mut b = Browser::default();
    let done = user_decides(&s, &mut b, &started, "deny").await;
    assert!(done.contains("Device not connected"), "{done}");
    assert_poll_error(poll(&s, &id, &secret, device_code).await, "access_denied");
    // The user code is spent: entering it again finds nothing.
    let entry = page(b.get(&s, "/device", &[]).await, 200).await;
    let again = b
        .post(
            &s,
            "/device",
            &[
                ("csrf", &hidden(&entry, "csrf")),
                ("user_code", started["user_code"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(again.status().as_u16(), 400);
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("not valid or has expired")
    );
    s.stop().await;
}

#[tokio::test]
async fn expired_codes_answer_expired_token_and_cannot_be_entered() {
    let s = TestServer::start_with(Options {
        env: vec![
            ("MCPAUTH__DEVICE__CODE_TTL_SECS", "2".into()),
            ("MCPAUTH__DEVICE__INTERVAL_SECS", "1".into()),
        ],
        ..Default::default()
    })
    .await;
    let (id, secret) = device_client(&s).await;
    let started = authorize_device(&s, &id, &secret).await;
    assert_eq!(started["expires_in"], 2);
    assert_eq!(started["interval"], 1);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let device_code = started["device_code"].as_str().unwrap();
    assert_poll_error(poll(&s, &id, &secret, device_code).await, "expired_token");
    let mut b = Browser::default();
    let entry = page(b.get(&s, "/device", &[]).await, 200).await;
    let r = b
        .post(
            &s,
            "/device",
            &[
                ("csrf", &hidden(&entry, "csrf")),
                ("user_code", started["user_code"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 400);
    s.stop().await;
}

#[tokio::test]
async fn user_code_entry_is_bounded_per_ip_and_globally() {
    let s = TestServer::start_with(Options {
        env: vec![
            ("MCPAUTH__DEVICE__ENTRIES_PER_IP", "4".into()),
            ("MCPAUTH__DEVICE__FAILURE_BUDGET", "2".into()),
            ("MCPAUTH__RATE_LIMIT__WINDOW_SECS", "3600".into()),
        ],
        ..Default::default()
    })
    .await;
    let (id, secret) = device_client(&s).await;
    let started = authorize_device(&s, &id, &secret).await;
    let mut b = Browser::default();
    let entry = page(b.get(&s, "/device", &[]).await, 200).await;
    let csrf = hidden(&entry, "csrf");
    // A form posted without this browser's cookie (another site) is refused before anything.
    let forged = s
        .http
        .post(s.url("/device"))
        .form(&[("csrf", csrf.as_str()), ("user_code", "BCDF-GHJK")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    // Two wrong codes use up the global failure budget…
    for guess in ["BCDF-GHJK", "not-a-code"] {
        let r = b
            .post(&s, "/device", &[("csrf", &csrf), ("user_code", guess)])
            .await;
        assert_eq!(r.status().as_u16(), 400);
    }
    // …after which even the right code waits for the window to end.
    let r = b
        .post(
            &s,
            "/device",
            &[
                ("csrf", &csrf),
                ("user_code", started["user_code"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().get("retry-after").is_some());
    // And past entries_per_ip this address is refused whatever it sends.
    let r = b
        .post(&s, "/device", &[("csrf", &csrf), ("user_code", "x")])
        .await;
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.text().await.unwrap().contains("from here"));
    s.stop().await;
}

#[tokio::test]
async fn replica_a_issues_replica_b_verifies_and_redeems() {
    let a = TestServer::start_with(local_login()).await;
    let b_srv = TestServer::start_on(a.shared_db(), a.prefix.clone(), local_login()).await;
    let (id, secret) = device_client(&a).await;
    let started = authorize_device(&a, &id, &secret).await;
    let device_code = started["device_code"].as_str().unwrap();
    assert_poll_error(
        poll(&a, &id, &secret, device_code).await,
        "authorization_pending",
    );
    // The interval is the device code's, wherever it is polled.
    assert_poll_error(poll(&b_srv, &id, &secret, device_code).await, "slow_down");
    let mut browser = Browser::default();
    let done = user_decides(&b_srv, &mut browser, &started, "allow").await;
    assert!(done.contains("Device connected"), "{done}");
    let (status, tokens) = poll(&b_srv, &id, &secret, device_code).await;
    assert_eq!(status, 200, "{tokens}");
    assert_poll_error(poll(&a, &id, &secret, device_code).await, "invalid_grant");
    a.assert_active(tokens["access_token"].as_str().unwrap())
        .await;
    b_srv.stop_keep_db().await;
    a.stop().await;
}
