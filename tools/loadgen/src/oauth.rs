//! OAuth flow probes for auth-service: whole authorization-code flows (authorize → token, with
//! the dev login), and refresh-token rotation chains (each worker refreshes with the token its
//! previous refresh returned).

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::run::Probe;

// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// What every OAuth probe needs.
#[derive(Debug, Clone)]
pub struct OAuthTarget {
    pub issuer: String,
    pub resource: String,
}

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")
}

/// Registers a public client (dynamic registration must be open).
pub async fn register(t: &OAuthTarget) -> Result<String> {
    let body: Value = client()?
        .post(format!("{}/register", t.issuer))
        .json(&serde_json::json!({
            "client_name": "mcpauth-loadgen",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await?
        .error_for_status()
        .context("registering a client")?
        .json()
        .await?;
    body["client_id"]
        .as_str()
        .map(str::to_owned)
        .context("no client_id in registration")
}

/// One authorization-code flow: `/authorize` (302 with a code) then `/token`.
async fn code_flow(
    http: &reqwest::Client,
    t: &OAuthTarget,
    client_id: &str,
) -> Result<Value, String> {
    let r = http
        .get(format!("{}/authorize", t.issuer))
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("state", "loadgen"),
            ("resource", t.resource.as_str()),
        ])
        .send()
        .await
        .map_err(|e| format!("authorize: {e}"))?;
    if r.status().as_u16() != 302 {
        return Err(format!("authorize answered {}", r.status()));
    }
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("authorize: no Location")?;
    let code = url::Url::parse(location)
        .map_err(|e| format!("authorize Location: {e}"))?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .ok_or("authorize redirect without a code")?;
    token(
        http,
        t,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("resource", &t.resource),
        ],
    )
    .await
}

async fn token(
    http: &reqwest::Client,
    t: &OAuthTarget,
    form: &[(&str, &str)],
) -> Result<Value, String> {
    let r = http
        .post(format!("{}/token", t.issuer))
        .form(form)
        .send()
        .await
        .map_err(|e| format!("token: {e}"))?;
    let status = r.status();
    let body: Value = r.json().await.map_err(|e| format!("token body: {e}"))?;
    if status.as_u16() != 200 {
        return Err(format!("token answered {status}: {body}"));
    }
    Ok(body)
}

/// Complete authorize → token flows.
pub struct CodeFlowProbe {
    http: reqwest::Client,
    target: OAuthTarget,
    client_id: String,
}

impl CodeFlowProbe {
    pub fn new(target: OAuthTarget, client_id: String) -> Result<Self> {
        Ok(Self {
            http: client()?,
            target,
            client_id,
        })
    }
}

impl Probe for CodeFlowProbe {
    async fn call(&mut self) -> Result<(), String> {
        code_flow(&self.http, &self.target, &self.client_id)
            .await
            .map(|_| ())
    }
}

/// A refresh-token chain: every call rotates the token the previous call returned.
pub struct RefreshChainProbe {
    http: reqwest::Client,
    target: OAuthTarget,
    client_id: String,
    refresh_token: String,
}

impl RefreshChainProbe {
    /// Starts a chain with one authorization-code flow (not measured).
    pub async fn start(target: OAuthTarget, client_id: String) -> Result<Self> {
        let http = client()?;
        let first = code_flow(&http, &target, &client_id)
            .await
            .map_err(anyhow::Error::msg)?;
        let Some(rt) = first["refresh_token"].as_str() else {
            bail!("the code flow returned no refresh_token");
        };
        Ok(Self {
            refresh_token: rt.to_owned(),
            http,
            target,
            client_id,
        })
    }
}

impl Probe for RefreshChainProbe {
    async fn call(&mut self) -> Result<(), String> {
        let body = token(
            &self.http,
            &self.target,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &self.refresh_token),
                ("client_id", &self.client_id),
            ],
        )
        .await?;
        let next = body["refresh_token"]
            .as_str()
            .ok_or("refresh answered without a refresh_token")?;
        self.refresh_token = next.to_owned();
        Ok(())
    }
}
