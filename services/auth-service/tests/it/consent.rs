//! The local login and the consent screen (MCP security best practices, "Confused deputy":
//! per-client consent, a consent UI naming the client, its redirect and the scopes, CSRF
//! protection, no framing, `__Host-` cookies), driven like a browser would.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::json;

use crate::harness::*;

pub(crate) const ALICE_PASSWORD: &str = "correct horse battery staple";
pub(crate) const BOB_PASSWORD: &str = "Tr0ub4dor&3-but-longer";
const BROWSER_COOKIE: &str = "__Host-mcpauth_browser";
pub(crate) const SESSION_COOKIE: &str = "__Host-mcpauth_session";

/// argon2 is slow in debug builds: hash once per test binary.
fn password_hashes() -> &'static (String, String) {
    static HASHES: OnceLock<(String, String)> = OnceLock::new();
    HASHES.get_or_init(|| {
        (
            auth_service::login::hash_password(ALICE_PASSWORD),
            auth_service::login::hash_password(BOB_PASSWORD),
        )
    })
}

/// Production-like login: no dev mode, the local provider with two users.
pub(crate) fn local_login() -> Options {
    let (alice, bob) = password_hashes();
    Options {
        toml: format!(
            "[[login.users]]\nusername = \"alice\"\npassword_hash = \"{alice}\"\n\n\
             [[login.users]]\nusername = \"bob\"\npassword_hash = \"{bob}\"\n"
        ),
        env: vec![
            ("MCPAUTH__DEV_MODE", "false".into()),
            ("MCPAUTH__LOGIN__PROVIDER", "local".into()),
        ],
    }
}

/// A browser: keeps the cookies the server sets and sends them back.
#[derive(Default, Clone)]
pub(crate) struct Browser {
    pub(crate) cookies: HashMap<String, String>,
}

impl Browser {
    fn absorb(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies
                .insert(name.trim().to_owned(), value.trim().to_owned());
        }
    }

    fn without(&self, name: &str) -> Browser {
        let mut b = self.clone();
        b.cookies.remove(name);
        b
    }

    pub(crate) fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub(crate) async fn authorize(
        &mut self,
        s: &TestServer,
        params: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = s.http.get(s.url("/authorize")).query(params);
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        let r = req.send().await.unwrap();
        self.absorb(&r);
        r
    }

    pub(crate) async fn get(
        &mut self,
        s: &TestServer,
        path: &str,
        query: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = s.http.get(s.url(path)).query(query);
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        let r = req.send().await.unwrap();
        self.absorb(&r);
        r
    }

    pub(crate) async fn post(
        &mut self,
        s: &TestServer,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = s.http.post(s.url(path)).form(form);
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        let r = req.send().await.unwrap();
        self.absorb(&r);
        r
    }
}

pub(crate) fn request<'a>(
    client: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", REDIRECT),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", "st-consent"),
        ("resource", RESOURCE),
    ];
    for (k, v) in extra {
        p.retain(|(pk, _)| pk != k);
        p.push((k, v));
    }
    p
}

/// The value of a hidden form field.
pub(crate) fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden field {name} in {page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

/// The full `Set-Cookie` header for `name`.
pub(crate) fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// `__Host-` rules and the best-practice attributes: Secure, HttpOnly, SameSite=Lax, Path=/,
/// no Domain.
fn assert_host_cookie(header: &str) {
    let attrs: Vec<String> = header
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for want in ["secure", "httponly", "samesite=lax", "path=/"] {
        assert!(
            attrs.iter().any(|a| a == want),
            "{want} missing in {header}"
        );
    }
    assert!(
        !attrs.iter().any(|a| a.starts_with("domain")),
        "__Host- cookies have no Domain: {header}"
    );
    let value = header.split(';').next().unwrap().split_once('=').unwrap().1;
    assert!(value.len() >= 32, "cookie value too guessable: {header}");
}

/// Anti-framing headers every HTML page carries.
fn assert_unframeable(r: &reqwest::Response) {
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

pub(crate) async fn page(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status().as_u16(), status, "{:?}", r.headers());
    assert!(r.headers().get("location").is_none());
    assert_unframeable(&r);
    r.text().await.unwrap()
}

/// Submits the login form on `login_page`.
pub(crate) async fn log_in(
    s: &TestServer,
    b: &mut Browser,
    login_page: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    b.post(
        s,
        "/login",
        &[
            ("request", &hidden(login_page, "request")),
            ("csrf", &hidden(login_page, "csrf")),
            ("username", user),
            ("password", password),
        ],
    )
    .await
}

/// Submits the consent form on `consent_page`.
pub(crate) async fn decide(
    s: &TestServer,
    b: &mut Browser,
    consent_page: &str,
    decision: &str,
) -> reqwest::Response {
    b.post(
        s,
        "/consent",
        &[
            ("request", &hidden(consent_page, "request")),
            ("csrf", &hidden(consent_page, "csrf")),
            ("decision", decision),
        ],
    )
    .await
}

/// `/authorize` → login form → consent page, as `user`. Returns the consent page.
pub(crate) async fn reach_consent(
    s: &TestServer,
    b: &mut Browser,
    client: &str,
    user: &str,
    password: &str,
) -> String {
    let login = page(b.authorize(s, &request(client, &[])).await, 200).await;
    page(log_in(s, b, &login, user, password).await, 200).await
}

pub(crate) async fn consents(s: &TestServer, client: &str) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT u.username, c.scope, c.resource FROM consents c JOIN users u USING (user_id) \
         WHERE c.client_id = $1 ORDER BY u.username, c.resource",
    )
    .bind(client)
    .fetch_all(&s.pool)
    .await
    .unwrap()
}

/// How many `kind` events were audited for `client`, waiting up to 2 s for `expected` of them
/// (the audit writer is batched and asynchronous).
async fn audited(s: &TestServer, kind: &str, client: &str, expected: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    if expected == 0 {
        // Give anything in flight a chance to show up before asserting absence.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    loop {
        let n = s
            .audit_events(kind, 0)
            .await
            .iter()
            .filter(|e| e.client_id.as_deref() == Some(client))
            .count();
        if n >= expected || std::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn assert_code_redirect(s: &TestServer, r: &reqwest::Response, state: &str) -> String {
    assert_eq!(r.status().as_u16(), 302, "expected a code redirect");
    let loc = location(r).unwrap();
    assert!(loc.starts_with(&format!("{REDIRECT}?")), "{loc}");
    let counts = redirect_param_counts(r);
    assert_eq!(
        (counts.get("code"), counts.get("state"), counts.get("iss")),
        (Some(&1), Some(&1), Some(&1)),
        "{loc}"
    );
    let q = redirect_query(r);
    assert_eq!(q["state"], state);
    assert_eq!(q["iss"], s.issuer());
    q["code"].clone()
}

async fn redeem(s: &TestServer, client: &str, code: &str) -> serde_json::Value {
    let (status, body, _) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", VERIFIER),
            ("client_id", client),
            ("redirect_uri", REDIRECT),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

// --- login ----------------------------------------------------------------------------------

#[tokio::test]
async fn authorize_shows_login_form_and_sets_browser_cookie() {
    let s = TestServer::start_with(local_login()).await;
    let client = s.public_client().await;
    let mut b = Browser::default();
    let r = b.authorize(&s, &request(&client, &[])).await;
    let cookie = set_cookie(&r, BROWSER_COOKIE).expect("the browser-binding cookie is set");
    assert_host_cookie(&cookie);
    assert!(
        set_cookie(&r, SESSION_COOKIE).is_none(),
        "no session before a login"
    );
    let html = page(r, 200).await;
    assert!(
        html.contains("<form method=\"post\" action=\"login\""),
        "{html}"
    );
    assert!(
        html.contains("name=\"password\" type=\"password\""),
        "{html}"
    );
    assert!(
        html.contains("Test public client"),
        "the form names the client: {html}"
    );
    assert!(!hidden(&html, "request").is_empty() && !hidden(&html, "csrf").is_empty());
    // Nothing was issued or redirected, and no user exists yet.
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(users, 0);
    // The same browser keeps its cookie on the next request.
    let r = b.authorize(&s, &request(&client, &[])).await;
    assert!(
        set_cookie(&r, BROWSER_COOKIE).is_none(),
        "an existing binding is reused"
    );
    page(r, 200).await;
    // Error pages refuse framing too.
    let r = s.authorize(&request("mcpc_unknown", &[])).await;
    page(r, 400).await;
    s.stop().await;
}

#[tokio::test]
async fn wrong_password_shows_the_form_again_with_401() {
    let s = TestServer::start_with(local_login()).await;
    let client = s.public_client().await;
    let mut b = Browser::default();
    let login = page(b.authorize(&s, &request(&client, &[])).await, 200).await;
    for (user, password) in [
        ("alice", "wrong"),
        ("alice", ""),
        ("mallory", ALICE_PASSWORD),
        ("bob", ALICE_PASSWORD),
    ] {
        let r = log_in(&s, &mut b, &login, user, password).await;
        assert!(
            set_cookie(&r, SESSION_COOKIE).is_none(),
            "no session after a failed login"
        );
        let again = page(r, 401).await;
        assert!(again.contains("Wrong username or password"), "{again}");
        assert_eq!(hidden(&again, "request"), hidden(&login, "request"));
    }
    assert_eq!(audited(&s, "login.failed", &client, 4).await, 4);
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(users, 0);
    // The request survives failed attempts: the right password then gets to consent.
    let r = log_in(&s, &mut b, &login, "alice", ALICE_PASSWORD).await;
    let consent = page(r, 200).await;
    assert!(consent.contains("action=\"consent\""), "{consent}");
    s.stop().await;
}

#[tokio::test]
async fn login_form_requires_the_browser_that_started_it() {
    let s = TestServer::start_with(local_login()).await;
    let client = s.public_client().await;
    let mut b = Browser::default();
    let login = page(b.authorize(&s, &request(&client, &[])).await, 200).await;
    // Login CSRF: another browser (or none) posting this request's form is refused.
    let mut other = Browser::default();
    page(other.authorize(&s, &request(&client, &[])).await, 200).await;
    let r = log_in(&s, &mut other, &login, "alice", ALICE_PASSWORD).await;
    page(r, 403).await;
    let r = log_in(
        &s,
        &mut b.without(BROWSER_COOKIE),
        &login,
        "alice",
        ALICE_PASSWORD,
    )
    .await;
    page(r, 403).await;
    let forged = login.replace(&hidden(&login, "csrf"), "forged-csrf-value");
    let r = log_in(&s, &mut b, &forged, "alice", ALICE_PASSWORD).await;
    page(r, 403).await;
    // An unknown or expired request.
    let unknown = login.replace(&hidden(&login, "request"), "no-such-request");
    let r = log_in(&s, &mut b, &unknown, "alice", ALICE_PASSWORD).await;
    page(r, 400).await;
    assert_eq!(audited(&s, "login.succeeded", &client, 0).await, 0);
    s.stop().await;
}

#[tokio::test]
async fn login_shows_consent_page_naming_client_redirect_scopes_and_resource() {
    let s = TestServer::start_with(local_login()).await;
    let (status, body) = s
        .register(json!({
            "client_name": "Acme Notes",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        }))
        .await;
    assert_eq!(status, 201, "{body}");
    let client = body["client_id"].as_str().unwrap().to_owned();
    let mut b = Browser::default();
    let login = page(
        b.authorize(
            &s,
            &request(&client, &[("scope", "mcp:tools.read mcp:tools.write")]),
        )
        .await,
        200,
    )
    .await;
    let r = log_in(&s, &mut b, &login, "alice", ALICE_PASSWORD).await;
    let session = set_cookie(&r, SESSION_COOKIE).expect("a session cookie after login");
    assert_host_cookie(&session);
    let consent = page(r, 200).await;
    assert!(consent.contains("Acme Notes"), "client_name: {consent}");
    assert!(consent.contains(&client), "client_id: {consent}");
    assert!(consent.contains("127.0.0.1"), "redirect host: {consent}");
    assert!(
        consent.contains("mcp:tools.read") && consent.contains("mcp:tools.write"),
        "scopes: {consent}"
    );
    assert!(consent.contains(RESOURCE), "resource: {consent}");
    assert!(
        consent.contains("value=\"allow\"") && consent.contains("value=\"deny\""),
        "{consent}"
    );
    // The consent step has its own CSRF token.
    assert_eq!(hidden(&consent, "request"), hidden(&login, "request"));
    assert_ne!(hidden(&consent, "csrf"), hidden(&login, "csrf"));
    assert_eq!(audited(&s, "login.succeeded", &client, 1).await, 1);
    let (provider, username): (String, String) =
        sqlx::query_as("SELECT provider, username FROM users")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!((provider.as_str(), username.as_str()), ("local", "alice"));
    assert!(
        consents(&s, &client).await.is_empty(),
        "nothing is stored before the decision"
    );
    // A new authorization in the same session goes straight to the consent screen.
    let again = page(b.authorize(&s, &request(&client, &[])).await, 200).await;
    assert!(again.contains("action=\"consent\""), "{again}");
    s.stop().await;
}

#[tokio::test]
async fn pages_escape_client_metadata() {
    let s = TestServer::start_with(local_login()).await;
    let name = "<script>alert('x')</script><img src=x onerror=alert(1)>";
    let (status, body) = s
        .register(json!({"client_name": name, "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let client = body["client_id"].as_str().unwrap().to_owned();
    let mut b = Browser::default();
    let login = page(b.authorize(&s, &request(&client, &[])).await, 200).await;
    assert!(
        !login.contains("<script>") && !login.contains("<img"),
        "{login}"
    );
    assert!(login.contains("&lt;script&gt;"), "{login}");
    let consent = page(
        log_in(&s, &mut b, &login, "alice", ALICE_PASSWORD).await,
        200,
    )
    .await;
    assert!(
        !consent.contains("<script>") && !consent.contains("<img"),
        "{consent}"
    );
    assert!(consent.contains("&lt;script&gt;"), "{consent}");
    s.stop().await;
}

// --- consent --------------------------------------------------------------------------------

#[tokio::test]
async fn consent_requires_browser_cookie_and_csrf() {
    let s = TestServer::start_with(local_login()).await;
    let client = s.public_client().await;
    let mut b = Browser::default();
    let login = page(b.authorize(&s, &request(&client, &[])).await, 200).await;
    let consent = page(
        log_in(&s, &mut b, &login, "alice", ALICE_PASSWORD).await,
        200,
    )
    .await;
    let request_id = hidden(&consent, "request");
    let csrf = hidden(&consent, "csrf");

    let refused = |r: reqwest::Response| async move {
        assert_eq!(r.status().as_u16(), 403);
        assert!(
            r.headers().get("location").is_none(),
            "a refused consent must not redirect"
        );
        assert_unframeable(&r);
    };
    // Without the browser cookie (the session cookie alone is not enough).
    refused(
        b.without(BROWSER_COOKIE)
            .post(
                &s,
                "/consent",
                &[
                    ("request", &request_id),
                    ("csrf", &csrf),
                    ("decision", "allow"),
                ],
            )
            .await,
    )
    .await;
    // Without any cookie.
    refused(
        Browser::default()
            .post(
                &s,
                "/consent",
                &[
                    ("request", &request_id),
                    ("csrf", &csrf),
                    ("decision", "allow"),
                ],
            )
            .await,
    )
    .await;
    // Another browser's binding.
    let mut other = Browser::default();
    page(other.authorize(&s, &request(&client, &[])).await, 200).await;
    refused(
        other
            .post(
                &s,
                "/consent",
                &[
                    ("request", &request_id),
                    ("csrf", &csrf),
                    ("decision", "allow"),
                ],
            )
            .await,
    )
    .await;
    // Wrong, missing, or the login step's CSRF token.
    for bad in [
        "wrong",
        "",
        &hidden(&login, "csrf"),
        &csrf[..csrf.len() - 1],
    ] {
        refused(
            b.post(
                &s,
                "/consent",
                &[
                    ("request", &request_id),
                    ("csrf", bad),
                    ("decision", "allow"),
                ],
            )
            .await,
        )
        .await;
    }
    refused(
        b.post(
            &s,
            "/consent",
            &[("request", &request_id), ("decision", "allow")],
        )
        .await,
    )
    .await;
    assert!(consents(&s, &client).await.is_empty());
    assert_eq!(audited(&s, "consent.granted", &client, 0).await, 0);

    // None of that used the request up: the real browser with the real token gets its code.
    let r = b
        .post(
            &s,
            "/consent",
            &[
                ("request", &request_id),
                ("csrf", &csrf),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_code_redirect(&s, &r, "st-consent");
    s.stop().await;
}

#[tokio::test]
async fn deny_redirects_with_access_denied() {
    let s = TestServer::start_with(local_login()).await;
    let client = s.public_client().await;
    let mut b = Browser::default();
    let consent = reach_consent(&s, &mut b, &client, "alice", ALICE_PASSWORD).await;
    let r = decide(&s, &mut b, &consent, "deny").await;
    assert_eq!(r.status().as_u16(), 302);
    let loc = location(&r).unwrap();
    assert!(loc.starts_with(&format!("{REDIRECT}?")), "{loc}");
    let counts = redirect_param_counts(&r);
    assert_eq!(
        (counts.get("error"), counts.get("state"), counts.get("iss")),
        (Some(&1), Some(&1), Some(&1)),
        "{loc}"
    );
    assert!(!counts.contains_key("code"), "{loc}");
    let q = redirect_query(&r);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st-consent");
    assert_eq!(q["iss"], s.issuer());
    assert!(
        consents(&s, &client).await.is_empty(),
        "a denial is not stored as consent"
    );
    assert_eq!(audited(&s, "consent.denied", &client, 1).await, 1);
    // The next authorization asks again (logged in already: straight to the consent page).
    let again = page(b.authorize(&s, &request(&client, &[])).await, 200).await;
    assert!(again.contains("action=\"consent\""), "{again}");
    // Anything but an explicit "allow" is a denial (fail closed).
    for decision in ["", "ALLOW", "yes"] {
        let consent = page(b.authorize(&s, &request(&client, &[])).await, 200).await;
        let r = decide(&s, &mut b, &consent, decision).await;
        assert_eq!(redirect_query(&r)["error"], "access_denied", "{decision:?}");
    }
    assert!(consents(&s, &client).await.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn allow_issues_a_code_and_stores_the_consent() {
    let s = TestServer::start_with(local_login()).await;
    let client = s.public_client().await;
    let mut b = Browser::default();
    let consent = reach_consent(&s, &mut b, &client, "alice", ALICE_PASSWORD).await;
    let r = decide(&s, &mut b, &consent, "allow").await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let code = assert_code_redirect(&s, &r, "st-consent");
    let tokens = redeem(&s, &client, &code).await;
    let intro = s.introspect(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(intro["active"], true);
    let user_id: uuid::Uuid =
        sqlx::query_scalar("SELECT user_id FROM users WHERE username = 'alice'")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(intro["sub"], user_id.to_string(), "the token is alice's");
    assert_eq!(
        consents(&s, &client).await,
        vec![(
            "alice".to_owned(),
            "mcp:tools.read".to_owned(),
            RESOURCE.to_owned()
        )]
    );
    assert_eq!(audited(&s, "consent.granted", &client, 1).await, 1);
    assert_eq!(audited(&s, "code.issued", &client, 1).await, 1);
    s.stop().await;
}

#[tokio::test]
async fn consent_form_cannot_be_submitted_twice() {
    let s = TestServer::start_with(local_login()).await;
    let client = s.public_client().await;
    let mut b = Browser::default();
    let consent = reach_consent(&s, &mut b, &client, "alice", ALICE_PASSWORD).await;
    let r = decide(&s, &mut b, &consent, "allow").await;
    assert_code_redirect(&s, &r, "st-consent");
    for decision in ["allow", "deny"] {
        let r = decide(&s, &mut b, &consent, decision).await;
        let html = page(r, 400).await;
        assert!(html.contains("invalid_request"), "{html}");
    }
    assert_eq!(
        audited(&s, "code.issued", &client, 1).await,
        1,
        "exactly one code"
    );
    // A denied form cannot be turned into an approval either.
    let consent = page(
        b.authorize(&s, &request(&client, &[("scope", "mcp:tools.write")]))
            .await,
        200,
    )
    .await;
    let r = decide(&s, &mut b, &consent, "deny").await;
    assert_eq!(redirect_query(&r)["error"], "access_denied");
    page(decide(&s, &mut b, &consent, "allow").await, 400).await;
    assert_eq!(consents(&s, &client).await[0].1, "mcp:tools.read");
    s.stop().await;
}

#[tokio::test]
async fn stored_consent_is_per_client_per_user_and_per_scope() {
    let s = TestServer::start_with(local_login()).await;
    let client = s.public_client().await;
    let other_client = s.public_client().await;
    let mut b = Browser::default();
    let consent = reach_consent(&s, &mut b, &client, "alice", ALICE_PASSWORD).await;
    assert_code_redirect(
        &s,
        &decide(&s, &mut b, &consent, "allow").await,
        "st-consent",
    );

    // Same browser session, same client, same or narrower scope: straight to a code.
    let r = b
        .authorize(&s, &request(&client, &[("state", "second")]))
        .await;
    let code = assert_code_redirect(&s, &r, "second");
    redeem(&s, &client, &code).await;
    let r = b
        .authorize(
            &s,
            &request(&client, &[("state", "third"), ("scope", "mcp:tools.read")]),
        )
        .await;
    assert_code_redirect(&s, &r, "third");

    // Another client: the consent screen again (logged in, so no login form).
    let html = page(b.authorize(&s, &request(&other_client, &[])).await, 200).await;
    assert!(
        html.contains("action=\"consent\"") && html.contains(&other_client),
        "{html}"
    );

    // The same client asking for more: the consent screen again, showing the new scope.
    let html = page(
        b.authorize(
            &s,
            &request(&client, &[("scope", "mcp:tools.read mcp:tools.write")]),
        )
        .await,
        200,
    )
    .await;
    assert!(
        html.contains("action=\"consent\"") && html.contains("mcp:tools.write"),
        "{html}"
    );
    // The same client for another resource: asked again.
    let html = page(
        b.authorize(
            &s,
            &request(
                &client,
                &[
                    ("resource", "https://api.example.com/mcp"),
                    ("scope", "api:read"),
                ],
            ),
        )
        .await,
        200,
    )
    .await;
    assert!(
        html.contains("action=\"consent\"") && html.contains("https://api.example.com/mcp"),
        "{html}"
    );

    // Another user of the same client: their own consent.
    let mut bob = Browser::default();
    let html = reach_consent(&s, &mut bob, &client, "bob", BOB_PASSWORD).await;
    assert!(html.contains("action=\"consent\""), "{html}");

    // Without the session cookie the user has to log in again.
    let mut no_session = b.without(SESSION_COOKIE);
    let html = page(no_session.authorize(&s, &request(&client, &[])).await, 200).await;
    assert!(html.contains("action=\"login\""), "{html}");

    assert_eq!(
        consents(&s, &client).await,
        vec![(
            "alice".to_owned(),
            "mcp:tools.read".to_owned(),
            RESOURCE.to_owned()
        )]
    );
    assert!(consents(&s, &other_client).await.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn wider_consent_replaces_the_narrower_one() {
    let s = TestServer::start_with(local_login()).await;
    let client = s.public_client().await;
    let mut b = Browser::default();
    let consent = reach_consent(&s, &mut b, &client, "alice", ALICE_PASSWORD).await;
    assert_code_redirect(
        &s,
        &decide(&s, &mut b, &consent, "allow").await,
        "st-consent",
    );
    let wide = "mcp:tools.read mcp:tools.write";
    let consent = page(
        b.authorize(&s, &request(&client, &[("scope", wide)])).await,
        200,
    )
    .await;
    let code = assert_code_redirect(
        &s,
        &decide(&s, &mut b, &consent, "allow").await,
        "st-consent",
    );
    assert_eq!(redeem(&s, &client, &code).await["scope"], wide);
    assert_eq!(consents(&s, &client).await[0].1, wide);
    // Both the wide and a narrow request now skip the screen.
    assert_code_redirect(
        &s,
        &b.authorize(&s, &request(&client, &[("scope", wide)])).await,
        "st-consent",
    );
    assert_code_redirect(
        &s,
        &b.authorize(&s, &request(&client, &[("scope", "mcp:tools.write")]))
            .await,
        "st-consent",
    );
    s.stop().await;
}

#[tokio::test]
async fn consent_page_shows_the_redirect_host_and_warns_about_loopback() {
    let s = TestServer::start_with(local_login()).await;
    let (status, body) = s
        .register(json!({"redirect_uris": ["https://notes.example.com/oauth/cb"], "token_endpoint_auth_method": "none"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let web_client = body["client_id"].as_str().unwrap().to_owned();
    let local_client = s.public_client().await;
    let mut b = Browser::default();
    // A client without a name is shown by its id.
    let login = page(
        b.authorize(
            &s,
            &request(
                &web_client,
                &[("redirect_uri", "https://notes.example.com/oauth/cb")],
            ),
        )
        .await,
        200,
    )
    .await;
    assert!(login.contains(&web_client), "{login}");
    let consent = page(
        log_in(&s, &mut b, &login, "alice", ALICE_PASSWORD).await,
        200,
    )
    .await;
    assert!(
        consent.contains("<strong>notes.example.com</strong>"),
        "{consent}"
    );
    assert!(
        !consent.contains("local address"),
        "no loopback warning for an https redirect: {consent}"
    );
    let consent = page(b.authorize(&s, &request(&local_client, &[])).await, 200).await;
    assert!(consent.contains("<strong>127.0.0.1</strong>"), "{consent}");
    assert!(
        consent.contains("local address"),
        "loopback redirects get a warning: {consent}"
    );
    s.stop().await;
}

#[tokio::test]
async fn racing_consent_submissions_issue_one_code() {
    let s = TestServer::start_with(local_login()).await;
    let client = s.public_client().await;
    let mut b = Browser::default();
    let consent = reach_consent(&s, &mut b, &client, "alice", ALICE_PASSWORD).await;
    let form = [
        ("request", hidden(&consent, "request")),
        ("csrf", hidden(&consent, "csrf")),
        ("decision", "allow".to_owned()),
    ];
    let cookie = b.cookie_header();
    let submissions = (0..8).map(|_| {
        s.http
            .post(s.url("/consent"))
            .header("cookie", &cookie)
            .form(&form)
            .send()
    });
    let results = futures_util::future::join_all(submissions).await;
    let statuses: Vec<u16> = results
        .iter()
        .map(|r| r.as_ref().unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 302).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(audited(&s, "code.issued", &client, 1).await, 1);
    s.stop().await;
}

#[tokio::test]
async fn redirect_uri_removed_while_pending_is_not_used() {
    // "Reject if it changed without re-registration": a redirect URI the client removed (RFC 7592
    // update) between /authorize and the user's decision no longer receives anything.
    let s = TestServer::start_with(local_login()).await;
    let (status, reg) = s
        .register(json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}))
        .await;
    assert_eq!(status, 201, "{reg}");
    let client = reg["client_id"].as_str().unwrap().to_owned();
    let token = reg["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Two pending decisions: one to allow, one to deny; and a pending login.
    let mut b = Browser::default();
    let to_allow = reach_consent(&s, &mut b, &client, "alice", ALICE_PASSWORD).await;
    let to_deny = page(b.authorize(&s, &request(&client, &[])).await, 200).await;
    assert!(to_deny.contains("action=\"consent\""), "{to_deny}");
    let mut bob = Browser::default();
    let login = page(bob.authorize(&s, &request(&client, &[])).await, 200).await;
    let r = s
        .http
        .put(s.url(&format!("/register/{client}")))
        .bearer_auth(&token)
        .json(&json!({
            "client_id": client,
            "redirect_uris": ["https://new.example.com/cb"],
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_error_page(decide(&s, &mut b, &to_allow, "allow").await).await;
    assert_error_page(decide(&s, &mut b, &to_deny, "deny").await).await;
    assert_error_page(log_in(&s, &mut bob, &login, "bob", BOB_PASSWORD).await).await;
    assert!(consents(&s, &client).await.is_empty());
    assert_eq!(audited(&s, "code.issued", &client, 0).await, 0);
    s.stop().await;
}

#[tokio::test]
async fn prompt_consent_asks_again_despite_a_stored_consent() {
    let s = TestServer::start_with(local_login()).await;
    let client = s.public_client().await;
    let mut b = Browser::default();
    let consent = reach_consent(&s, &mut b, &client, "alice", ALICE_PASSWORD).await;
    assert_code_redirect(
        &s,
        &decide(&s, &mut b, &consent, "allow").await,
        "st-consent",
    );
    // Stored consent: straight to a code ...
    let r = b
        .authorize(&s, &request(&client, &[("state", "again")]))
        .await;
    assert_code_redirect(&s, &r, "again");
    // ... unless the client asks for the consent screen (OIDC `prompt=consent`).
    let html = page(
        b.authorize(&s, &request(&client, &[("prompt", "consent")]))
            .await,
        200,
    )
    .await;
    assert!(html.contains("action=\"consent\""), "{html}");
    s.stop().await;
}

#[tokio::test]
async fn password_guessing_is_rate_limited() {
    // An hour-long window, entered with at least 30 s to spare: the four attempts (slow argon2
    // checks on a loaded machine) must fall in one window, or the count starts over.
    const WINDOW_SECS: u64 = 3600;
    let mut opts = local_login();
    opts.env.push(("MCPAUTH__RATE_LIMIT__LOGIN", "3".into()));
    opts.env
        .push(("MCPAUTH__RATE_LIMIT__WINDOW_SECS", WINDOW_SECS.to_string()));
    let left = WINDOW_SECS - chrono::Utc::now().timestamp() as u64 % WINDOW_SECS;
    if left < 30 {
        tokio::time::sleep(std::time::Duration::from_secs(left + 1)).await;
    }
    let s = TestServer::start_with(opts).await;
    let client = s.public_client().await;
    let mut b = Browser::default();
    let form = page(b.authorize(&s, &request(&client, &[])).await, 200).await;
    let mut statuses = vec![];
    for _ in 0..4 {
        let r = log_in(&s, &mut b, &form, "alice", "wrong").await;
        statuses.push((
            r.status().as_u16(),
            r.headers().get("retry-after").is_some(),
        ));
    }
    assert_eq!(
        statuses,
        vec![(401, false), (401, false), (401, false), (429, true)]
    );
    s.stop().await;
}
