//! Test support for the integration tests of the three services (a dev-dependency only): the
//! dev-login authorization-code flow — register a public client (RFC 7591), `/authorize` with
//! PKCE (S256), and redeem the code at `/token` — against a running auth-service.
//!
//! Each service's harness used to carry its own copy of this flow. It speaks HTTP only, to the
//! issuer's published endpoints, so it depends on no service's internals (which change while
//! the storage is reworked) and works against any auth-service: in-process, another process or
//! a container. The auth-service must run with `login.provider = "dev"` (a signed-in dev user
//! who consents at once), so that `/authorize` answers straight with a redirect to the client.
//!
//! The `reqwest::Client` passed in must not follow redirects: the code is read from the
//! `Location` of `/authorize`'s answer.

use serde_json::{Value, json};

/// The redirect URI of every test client (loopback; nothing listens there).
pub const REDIRECT: &str = "http://127.0.0.1:3000/callback";
/// The PKCE code verifier of RFC 7636 appendix B …
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// … and its S256 challenge.
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// Registers a public client (`token_endpoint_auth_method = none`, redirect URI [`REDIRECT`])
/// allowed `grant_types`; returns its `client_id`. Panics unless registration answers 201.
pub async fn register_public_client(
    http: &reqwest::Client,
    issuer: &str,
    name: &str,
    grant_types: &[&str],
) -> String {
    let r = http
        .post(format!("{issuer}/register"))
        .json(&json!({
            "client_name": name,
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": grant_types,
        }))
        .send()
        .await
        .expect("POST /register");
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 201, "registration: {body}");
    body["client_id"].as_str().expect("client_id").to_owned()
}

/// `/authorize` for `client_id` with the PKCE challenge, `response_type=code` and the redirect
/// URI, plus `extra` parameters (`resource`, `scope`, `state`, …); returns the code of the
/// redirect. Panics unless auth-service redirects with a code.
pub async fn authorize_code(
    http: &reqwest::Client,
    issuer: &str,
    client_id: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut query = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    query.extend_from_slice(extra);
    let r = http
        .get(format!("{issuer}/authorize"))
        .query(&query)
        .send()
        .await
        .expect("GET /authorize");
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    let Some(location) = location.filter(|_| status == 302) else {
        panic!(
            "/authorize answered {status}, not a redirect: {:?}",
            r.text().await
        );
    };
    let location = url::Url::parse(&location).expect("Location is a URL");
    let code = location.query_pairs().find(|(k, _)| k == "code");
    code.unwrap_or_else(|| panic!("no code in {location}"))
        .1
        .into_owned()
}

/// Redeems `code` at `/token` with the PKCE verifier (and `resource`, when given); returns
/// the token response. Panics unless it answers with an access token.
pub async fn redeem_code(
    http: &reqwest::Client,
    issuer: &str,
    client_id: &str,
    code: &str,
    resource: Option<&str>,
) -> Value {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", VERIFIER),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
    ];
    if let Some(r) = resource {
        form.push(("resource", r));
    }
    let r = http
        .post(format!("{issuer}/token"))
        .form(&form)
        .send()
        .await
        .expect("POST /token");
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert!(
        status == 200 && body["access_token"].is_string(),
        "/token answered {status}: {body}"
    );
    body
}

/// What [`dev_login`] asks for.
#[derive(Debug, Clone, Copy)]
pub struct DevLogin<'a> {
    /// `client_name` of the client registered for it.
    pub client_name: &'a str,
    /// RFC 8707 `resource`, at `/authorize` and `/token`.
    pub resource: Option<&'a str>,
    /// `scope`; `None`: the resource's default scopes.
    pub scope: Option<&'a str>,
    /// The client's grant types; `refresh_token` among them gets a refresh token too.
    pub grant_types: &'a [&'a str],
}

impl Default for DevLogin<'_> {
    fn default() -> Self {
        Self {
            client_name: "mcpauth test client",
            resource: None,
            scope: None,
            grant_types: &["authorization_code", "refresh_token"],
        }
    }
}

/// The whole flow for a fresh public client: register, authorize, redeem. Returns
/// (client_id, token response).
pub async fn dev_login(
    http: &reqwest::Client,
    issuer: &str,
    login: DevLogin<'_>,
) -> (String, Value) {
    let client = register_public_client(http, issuer, login.client_name, login.grant_types).await;
    let mut extra = Vec::new();
    if let Some(r) = login.resource {
        extra.push(("resource", r));
    }
    if let Some(s) = login.scope {
        extra.push(("scope", s));
    }
    let code = authorize_code(http, issuer, &client, &extra).await;
    let body = redeem_code(http, issuer, &client, &code, login.resource).await;
    (client, body)
}
