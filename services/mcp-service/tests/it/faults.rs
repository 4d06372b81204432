//! Robustness under faults (issue 12, item 14): the whole stack — auth-service, mcp-service,
//! token-vault and an upstream API — on a private Postgres and a private Redis (own ports and
//! data directories, see tests/support/private_backends.rs; the machine's shared ones are never
//! touched). A load of `client_credentials` tokens, refresh-token rotations and MCP `tools/call`s
//! (one that needs only the token, one connector call through token-vault to the upstream) runs
//! while Postgres crashes and comes back (SIGQUIT, an immediate shutdown with crash recovery),
//! then while Redis is killed and comes back empty (no persistence).
//!
//! Asserted (correctness, with generous liveness bounds only): every service keeps serving and
//! is ready again within 60 s of the backend's return; `/readyz` of the services that depend on
//! the backend says so during the outage; no grant is lost or revoked; no refresh client is
//! stranded (no `invalid_grant` ever, and every client's latest refresh token works at the end);
//! the stored upstream credential is intact (same record version, the same upstream token still
//! used). Printed (eprintln): errors during each outage and the time to recover, per load kind;
//! the figures in docs/operations.md ("Behaviour under faults") come from this test.
//!
//! The harnesses read the Postgres and Redis addresses from `TEST_DATABASE_URL` and
//! `TEST_REDIS_URL`; this test points them at its private instances by setting those variables
//! in its own process, which needs nextest's process per test (`make test` runs nextest).

#[path = "../../../../tests/support/private_backends.rs"]
pub(crate) mod private_backends;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::connectors::{ALICE_UPSTREAM, Env, EnvExtra, call};
use crate::harness::*;
use private_backends::{PrivatePostgres, PrivateRedis};

/// A pre-registered machine client (`client_credentials`).
const MACHINE: &str = "fault-machine";
const MACHINE_SECRET: &str = "fault-machine-secret-0123456789abcdef";
/// Refresh clients rotating their refresh tokens throughout.
const REFRESH_CLIENTS: usize = 3;
/// How long each backend stays down.
const OUTAGE: Duration = Duration::from_secs(4);
/// The liveness bound: ready again within this long after the backend is back.
const RECOVERY_BOUND: Duration = Duration::from_secs(60);

/// The load kinds.
const KINDS: [&str; 4] = [
    "client_credentials",
    "refresh",
    "tools/call whoami",
    "tools/call connector",
];

/// One load request's outcome.
struct Outcome {
    at: Instant,
    kind: &'static str,
    ok: bool,
    /// Why it failed (status and error code, or the transport error's kind).
    why: String,
}

/// One readiness probe.
struct Probe {
    at: Instant,
    service: &'static str,
    ready: bool,
    /// The status, or why there was none.
    answer: String,
}

#[derive(Default)]
struct Log {
    outcomes: Mutex<Vec<Outcome>>,
    probes: Mutex<Vec<Probe>>,
    /// `invalid_grant` answers to a refresh client's latest token: a stranded client.
    stranded: Mutex<Vec<(Instant, String)>>,
}

impl Log {
    fn record(&self, kind: &'static str, result: Result<(), String>) {
        let (ok, why) = match result {
            Ok(()) => (true, String::new()),
            Err(e) => (false, e),
        };
        self.outcomes.lock().unwrap().push(Outcome {
            at: Instant::now(),
            kind,
            ok,
            why,
        });
    }
}

/// A transport error in a few words (no URL: the table stays readable).
fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect error".into()
    } else {
        "transport error".into()
    }
}

async fn status_and_json(
    r: Result<reqwest::Response, reqwest::Error>,
) -> Result<(u16, Value), String> {
    let r = r.map_err(|e| transport(&e))?;
    let s = r.status().as_u16();
    Ok((s, r.json().await.unwrap_or(Value::Null)))
}

/// The dev-login code flow for a fresh public client; returns (client_id, token response).
async fn login(s: &Stack) -> (String, Value) {
    let login = mcpauth_testkit::DevLogin {
        client_name: "fault test",
        resource: Some(&s.resource),
        ..Default::default()
    };
    let (client, body) = mcpauth_testkit::dev_login(&s.http, &s.issuer, login).await;
    assert!(body["refresh_token"].is_string(), "{body}");
    (client, body)
}

/// How long a load request may take before the client gives up and tries again (with the same
/// refresh token: it never saw a successor). Shorter than the outages, so requests the servers
/// hold during an outage are abandoned by their clients and completed by the servers later.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The load's HTTP client: short timeouts, so an outage shows as errors, not as a stall.
fn load_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .connect_timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap()
}

async fn client_credentials(
    http: &reqwest::Client,
    issuer: &str,
    resource: &str,
) -> Result<(), String> {
    let (s, body) = status_and_json(
        http.post(format!("{issuer}/token"))
            .basic_auth(MACHINE, Some(MACHINE_SECRET))
            .form(&[("grant_type", "client_credentials"), ("resource", resource)])
            .send()
            .await,
    )
    .await?;
    if s == 200 && body["access_token"].is_string() {
        Ok(())
    } else {
        Err(format!("{s} {}", body["error"].as_str().unwrap_or("")))
    }
}

/// One refresh of `latest`; on success `latest` becomes the successor. `invalid_grant` is
/// recorded as a stranded client (the load never presents anything but its latest token).
async fn refresh(
    http: &reqwest::Client,
    issuer: &str,
    client: &str,
    latest: &mut String,
    log: &Log,
) -> Result<(), String> {
    let (s, body) = status_and_json(
        http.post(format!("{issuer}/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", latest.as_str()),
                ("client_id", client),
            ])
            .send()
            .await,
    )
    .await?;
    match (s, body["refresh_token"].as_str()) {
        (200, Some(next)) => {
            *latest = next.to_owned();
            Ok(())
        }
        _ => {
            let error = body["error"].as_str().unwrap_or("").to_owned();
            if error == "invalid_grant" {
                log.stranded
                    .lock()
                    .unwrap()
                    .push((Instant::now(), format!("{client}: {s} {body}")));
            }
            Err(format!("{s} {error}"))
        }
    }
}

/// An MCP client of one session: initializes (again, after a 404: the session is gone) and
/// calls tools.
struct McpClient {
    http: reqwest::Client,
    base: String,
    token: String,
    session: Option<String>,
}

impl McpClient {
    async fn post(&self, body: Value) -> Result<reqwest::Response, String> {
        let mut r = self
            .http
            .post(format!("{}/mcp", self.base))
            .header("accept", "application/json, text/event-stream")
            .bearer_auth(&self.token)
            .json(&body);
        if let Some(s) = &self.session {
            r = r
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        r.send().await.map_err(|e| transport(&e))
    }

    async fn ensure_session(&mut self) -> Result<(), String> {
        if self.session.is_some() {
            return Ok(());
        }
        let r = self.post(initialize()).await?;
        if r.status().as_u16() != 200 {
            return Err(format!("initialize {}", r.status().as_u16()));
        }
        let sid = r
            .headers()
            .get("mcp-session-id")
            .ok_or_else(|| "initialize without a session id".to_owned())?
            .to_str()
            .unwrap()
            .to_owned();
        let _ = r.text().await;
        self.session = Some(sid);
        let r = self
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        if r.status().as_u16() != 202 {
            self.session = None;
            return Err(format!("initialized {}", r.status().as_u16()));
        }
        Ok(())
    }

    /// One tools/call; Ok with the result when it is not an error.
    async fn call(&mut self, name: &str, arguments: Value) -> Result<Value, String> {
        self.ensure_session().await?;
        let r = self.post(call(name, arguments)).await?;
        let status = r.status().as_u16();
        if status == 404 {
            self.session = None;
            return Err("404 session gone".into());
        }
        if status != 200 {
            return Err(format!("{status}"));
        }
        let msgs = tokio::time::timeout(Duration::from_secs(5), messages(r))
            .await
            .map_err(|_| "timeout reading the result".to_owned())?;
        let last = msgs.last().cloned().unwrap_or(Value::Null);
        if let Some(e) = last.get("error") {
            return Err(format!("JSON-RPC error {}", e["code"]));
        }
        let result = last["result"].clone();
        if result["isError"] == true {
            return Err("tool error".into());
        }
        Ok(result)
    }
}

/// The readiness of every service, polled every 100 ms (a probe that does not answer within
/// 2 s counts as not ready, as an orchestrator's would).
async fn probe_loop(targets: Vec<(&'static str, String)>, log: Arc<Log>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    while !stop.load(Ordering::Relaxed) {
        for (service, url) in &targets {
            let sent = Instant::now();
            let answer = match http.get(url).send().await {
                Ok(r) => r.status().as_u16().to_string(),
                Err(e) => transport(&e),
            };
            log.probes.lock().unwrap().push(Probe {
                at: sent,
                service,
                ready: answer == "200",
                answer,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until, after `since`, every load kind succeeded and every service probed ready;
/// returns how long that took from `since`.
async fn wait_recovered(log: &Log, since: Instant, services: &[&'static str]) -> Duration {
    loop {
        let now = Instant::now();
        let kinds_ok = KINDS.iter().all(|k| {
            log.outcomes
                .lock()
                .unwrap()
                .iter()
                .any(|o| o.at > since && o.kind == *k && o.ok)
        });
        let ready = services.iter().all(|s| {
            log.probes
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|p| p.service == *s)
                .is_some_and(|p| p.at > since && p.ready)
        });
        if kinds_ok && ready {
            // The moment the last of the kinds first succeeded again.
            let outcomes = log.outcomes.lock().unwrap();
            let t = KINDS
                .iter()
                .filter_map(|k| {
                    outcomes
                        .iter()
                        .filter(|o| o.at > since && o.kind == *k && o.ok)
                        .map(|o| o.at)
                        .min()
                })
                .max()
                .unwrap_or(now);
            return t.saturating_duration_since(since);
        }
        if now.duration_since(since) >= RECOVERY_BOUND {
            report(
                log,
                "outage..now",
                since - OUTAGE - Duration::from_secs(1),
                now,
            );
            let probes = log.probes.lock().unwrap();
            let last: Vec<(&str, bool)> = services
                .iter()
                .map(|s| {
                    let ready = probes
                        .iter()
                        .rev()
                        .find(|p| p.service == *s)
                        .is_some_and(|p| p.ready);
                    (*s, ready)
                })
                .collect();
            // Unlocked before panicking: the load tasks still record (no poisoned lock).
            drop(probes);
            let stranded: Vec<String> = log
                .stranded
                .lock()
                .unwrap()
                .iter()
                .take(3)
                .map(|(at, s)| format!("{:+.2} s: {s}", signed_secs(*at, since)))
                .collect();
            panic!(
                "not recovered {RECOVERY_BOUND:?} after the backend came back; readiness {last:?}; \
                 first stranded refreshes (relative to the backend's return): {stranded:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `at - origin` in seconds, negative when `at` is earlier.
fn signed_secs(at: Instant, origin: Instant) -> f64 {
    if at >= origin {
        at.duration_since(origin).as_secs_f64()
    } else {
        -origin.duration_since(at).as_secs_f64()
    }
}

/// The readiness probes of `service` between `from` and `to`, for a failure message.
fn probes_of(log: &Log, service: &str, from: Instant, to: Instant) -> Vec<String> {
    log.probes
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.service == service && p.at >= from && p.at < to)
        .map(|p| format!("{:+.2} s {}", signed_secs(p.at, from), p.answer))
        .collect()
}

/// Prints the outcomes between `from` and `to` per kind: successes, errors and why.
fn report(log: &Log, label: &str, from: Instant, to: Instant) -> usize {
    let outcomes = log.outcomes.lock().unwrap();
    let mut errors = 0;
    for kind in KINDS {
        let (mut ok, mut why) = (0, BTreeMap::<&str, u64>::new());
        for o in outcomes
            .iter()
            .filter(|o| o.kind == kind && o.at >= from && o.at < to)
        {
            if o.ok {
                ok += 1;
            } else {
                *why.entry(o.why.as_str()).or_default() += 1;
            }
        }
        let n: u64 = why.values().sum();
        errors += n as usize;
        eprintln!("  [{label}] {kind:<22} ok {ok:>5}  errors {n:>4}  {why:?}");
    }
    errors
}

/// Whether `service` was probed not ready at least once between `from` and `to`.
fn saw_unready(log: &Log, service: &str, from: Instant, to: Instant) -> bool {
    log.probes
        .lock()
        .unwrap()
        .iter()
        .any(|p| p.service == service && p.at >= from && p.at < to && !p.ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stack_survives_a_postgres_restart_then_a_redis_restart_under_load() {
    assert!(
        std::env::var_os("NEXTEST").is_some(),
        "this test redirects the harness (TEST_DATABASE_URL, TEST_REDIS_URL) for its whole \
         process: run it with cargo nextest (one process per test)"
    );
    let run_started = Instant::now();
    let mut pg = PrivatePostgres::start("faults");
    let mut redis = PrivateRedis::start("faults");
    // SAFETY: set before any thread of this test reads the environment; nextest runs this test
    // alone in its process.
    unsafe {
        std::env::set_var("TEST_DATABASE_URL", pg.admin_url());
        std::env::set_var("TEST_REDIS_URL", redis.url());
    }
    let e = Env::start_configured(
        None,
        EnvExtra {
            auth_toml: format!(
                "\n[[clients]]\nclient_id = \"{MACHINE}\"\nclient_name = \"Fault-test machine\"\n\
                 client_secret_sha256 = \"{}\"\ngrant_types = [\"client_credentials\"]\n\
                 token_endpoint_auth_method = \"client_secret_basic\"\n",
                auth_service::domain::token::hex(&auth_service::domain::token::hash(
                    MACHINE_SECRET
                ))
            ),
            vault_admin: true,
        },
    )
    .await;
    let s = e.stack();
    // auth-service's own database, read directly (its stores are behind interfaces).
    let auth_pool =
        sqlx::PgPool::connect(s.auth.as_ref().unwrap().state.config.database.url.expose())
            .await
            .unwrap();
    let vault_admin = e.vault().http_addr.expect("token-vault's admin listener");

    // The user, their stored upstream credential, the refresh clients.
    let (_, user_tokens) = login(s).await;
    let user_access = user_tokens["access_token"].as_str().unwrap().to_owned();
    let mut mcp = McpClient {
        http: load_client(),
        base: s.mcp_base.clone(),
        token: user_access.clone(),
        session: None,
    };
    let who = mcp.call("whoami", json!({})).await.expect("whoami");
    let user_id = serde_json::from_str::<Value>(who["content"][0]["text"].as_str().unwrap())
        .unwrap()["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    e.put_credential(&user_id, ALICE_UPSTREAM).await;
    let vault_db = sqlx::PgPool::connect(&e.vault_db_url()).await.unwrap();
    let credential_row = || async {
        // The whole row (sealed tokens, version, status, timestamps): nothing may change.
        sqlx::query_scalar::<_, String>(
            "SELECT md5(c::text) FROM vault_credentials c WHERE user_id = $1 AND provider = 'github'",
        )
        .bind(&user_id)
        .fetch_one(&vault_db)
        .await
        .unwrap()
    };
    let credential_before = credential_row().await;
    let mut refresh_clients = vec![];
    for _ in 0..REFRESH_CLIENTS {
        let (client, body) = login(s).await;
        refresh_clients.push((client, body["refresh_token"].as_str().unwrap().to_owned()));
    }
    let grants_before: i64 = sqlx::query_scalar("SELECT count(*) FROM grants")
        .fetch_one(&auth_pool)
        .await
        .unwrap();

    // The load.
    let log = Arc::new(Log::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = vec![];
    let pause = Duration::from_millis(20);
    {
        let (log, stop, issuer, resource) = (
            log.clone(),
            stop.clone(),
            s.issuer.clone(),
            s.resource.clone(),
        );
        load.push(tokio::spawn(async move {
            let http = load_client();
            while !stop.load(Ordering::Relaxed) {
                log.record(
                    "client_credentials",
                    client_credentials(&http, &issuer, &resource).await,
                );
                tokio::time::sleep(pause).await;
            }
            None
        }));
    }
    for (client, latest) in refresh_clients {
        let (log, stop, issuer) = (log.clone(), stop.clone(), s.issuer.clone());
        load.push(tokio::spawn(async move {
            let http = load_client();
            let mut latest = latest;
            while !stop.load(Ordering::Relaxed) {
                let r = refresh(&http, &issuer, &client, &mut latest, &log).await;
                log.record("refresh", r);
                tokio::time::sleep(pause).await;
            }
            Some((client, latest))
        }));
    }
    for (kind, tool, args) in [
        ("tools/call whoami", "whoami", json!({})),
        (
            "tools/call connector",
            "github_get_repo",
            json!({"owner": "octo", "repo": "hello"}),
        ),
    ] {
        let (log, stop) = (log.clone(), stop.clone());
        let mut client = McpClient {
            http: load_client(),
            base: s.mcp_base.clone(),
            token: user_access.clone(),
            session: None,
        };
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = client.call(tool, args.clone()).await.and_then(|r| {
                    // The connector call answers as the user whose upstream token it used.
                    if tool == "github_get_repo" && r["structuredContent"]["as"] != "alice" {
                        return Err(format!("unexpected upstream answer {r}"));
                    }
                    Ok(())
                });
                log.record(kind, r);
                tokio::time::sleep(pause).await;
            }
            None
        }));
    }
    let probes = tokio::spawn(probe_loop(
        vec![
            ("auth-service", format!("{}/readyz", s.issuer)),
            ("mcp-service", format!("{}/readyz", s.mcp_base)),
            ("token-vault", format!("http://{vault_admin}/readyz")),
        ],
        log.clone(),
        stop.clone(),
    ));
    let all = ["auth-service", "mcp-service", "token-vault"];

    // Baseline.
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let baseline_errors = report(&log, "baseline", t0, Instant::now());

    // Postgres crashes, stays down, comes back.
    let pg_down = Instant::now();
    tokio::task::block_in_place(|| pg.crash());
    tokio::time::sleep(OUTAGE).await;
    let pg_back = Instant::now();
    tokio::task::block_in_place(|| pg.start_again());
    let pg_recovery = wait_recovered(&log, pg_back, &all).await;
    let pg_recovered = pg_back + pg_recovery;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pg_errors = report(&log, "postgres down..recovered", pg_down, pg_recovered);
    let between = report(&log, "steady after postgres", pg_recovered, Instant::now());

    // Redis is killed, stays down, comes back empty.
    let redis_down = Instant::now();
    tokio::task::block_in_place(|| redis.crash());
    tokio::time::sleep(OUTAGE).await;
    let redis_back = Instant::now();
    tokio::task::block_in_place(|| redis.start_again());
    let redis_recovery = wait_recovered(&log, redis_back, &all).await;
    let redis_recovered = redis_back + redis_recovery;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let end = Instant::now();

    stop.store(true, Ordering::Relaxed);
    let mut latest = vec![];
    for t in load {
        if let Some(pair) = t.await.unwrap() {
            latest.push(pair);
        }
    }
    probes.await.unwrap();

    eprintln!("fault test: outages of {OUTAGE:?} each; load paused {pause:?} between requests");
    let redis_errors = report(&log, "redis down..recovered", redis_down, redis_recovered);
    let after = report(&log, "steady after redis", redis_recovered, end);
    eprintln!(
        "  postgres: {pg_errors} errors; every load kind succeeded and every service was ready again {:.2} s after it came back",
        pg_recovery.as_secs_f64()
    );
    eprintln!(
        "  redis: {redis_errors} errors; every load kind succeeded and every service was ready again {:.2} s after it came back",
        redis_recovery.as_secs_f64()
    );
    for (service, from, to) in [
        ("auth-service", pg_down, pg_back),
        ("token-vault", pg_down, pg_back),
        ("mcp-service", pg_down, pg_back),
        ("auth-service", redis_down, redis_back),
        ("token-vault", redis_down, redis_back),
        ("mcp-service", redis_down, redis_back),
    ] {
        let label = if from == pg_down { "postgres" } else { "redis" };
        eprintln!(
            "  {service} /readyz during the {label} outage: {}",
            if saw_unready(&log, service, from, to) {
                "503 (not ready)"
            } else {
                "200 (ready)"
            }
        );
    }

    // Readiness followed the outages of what each service depends on.
    for service in ["auth-service", "token-vault"] {
        assert!(
            saw_unready(&log, service, pg_down, pg_back),
            "{service} /readyz during the Postgres outage: {:?}",
            probes_of(&log, service, pg_down, pg_back)
        );
    }
    for service in all {
        assert!(
            saw_unready(&log, service, redis_down, redis_back),
            "{service} /readyz during the Redis outage: {:?}",
            probes_of(&log, service, redis_down, redis_back)
        );
    }
    assert_eq!(baseline_errors, 0, "errors before any fault");
    assert_eq!(between + after, 0, "errors once recovered");

    // No client stranded: no invalid_grant ever, and every client's latest token works.
    let stranded: Vec<String> = log
        .stranded
        .lock()
        .unwrap()
        .iter()
        .map(|(_, s)| s.clone())
        .collect();
    assert_eq!(stranded, Vec::<String>::new(), "stranded refresh clients");
    assert_eq!(latest.len(), REFRESH_CLIENTS);
    let http = load_client();
    for (client, mut token) in latest {
        refresh(&http, &s.issuer, &client, &mut token, &log)
            .await
            .unwrap_or_else(|e| panic!("{client}'s latest refresh token after the faults: {e}"));
    }

    // No grant lost or revoked.
    let (grants, revoked): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE revoked_at IS NOT NULL) FROM grants",
    )
    .fetch_one(&auth_pool)
    .await
    .unwrap();
    assert_eq!(
        (grants, revoked),
        (grants_before, 0),
        "grants after the faults"
    );

    // The audit trail kept every token answered during the outages (the writer retried while
    // Postgres was down): at least one row per successful response (a request the load gave up
    // on may still have been answered and recorded).
    let answered = |kind: &str| {
        log.outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.kind == kind && o.ok)
            .count() as i64
    };
    let (cc_ok, refresh_ok) = (
        answered("client_credentials"),
        answered("refresh") + REFRESH_CLIENTS as i64,
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let (cc_audited, refresh_audited) = loop {
        let counts: (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE kind = 'token.issued' AND detail->>'grant_type' = 'client_credentials'), \
                    count(*) FILTER (WHERE kind = 'token.refreshed') FROM audit_events",
        )
        .fetch_one(&auth_pool)
        .await
        .unwrap();
        if (counts.0 >= cc_ok && counts.1 >= refresh_ok) || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "  audit: {cc_audited} client_credentials rows for {cc_ok} tokens answered, {refresh_audited} refresh rows for {refresh_ok}"
    );
    assert!(
        cc_audited >= cc_ok && refresh_audited >= refresh_ok,
        "audit rows lost: {cc_audited}/{cc_ok} client_credentials, {refresh_audited}/{refresh_ok} refresh"
    );

    // The stored credential is intact and still the one used upstream.
    assert_eq!(
        credential_row().await,
        credential_before,
        "the stored credential"
    );
    let seen = e.upstream_authorizations();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|a| *a == format!("Bearer {ALICE_UPSTREAM}")),
        "the upstream only ever saw the stored credential"
    );

    // Every service still serves (nothing crashed or stopped).
    for url in [
        format!("{}/healthz", s.issuer),
        format!("{}/healthz", s.mcp_base),
    ] {
        assert_eq!(
            http.get(&url).send().await.unwrap().status().as_u16(),
            200,
            "{url}"
        );
    }
    eprintln!(
        "fault test: {:.1} s in all",
        run_started.elapsed().as_secs_f64()
    );
    vault_db.close().await;
    e.stop().await;
    drop(redis);
    drop(pg);
}
