//! The tools made from configuration: one per `[[connectors]]` entry, and per provider a
//! `connect_<provider>` tool (listed while the provider is not connected) and a
//! `disconnect_<provider>` tool (listed while it is).
//!
//! Every failure a user can act on is a tool result with `isError: true`, never a protocol
//! error, so the model can tell the user what to do.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool};
use rmcp::{ErrorData, Peer, RoleServer};
use serde_json::{Value, json};

use super::config::{ProviderConfig, connect_tool_name};
use super::connections::ConnectionCache;
use super::spec::ConnectorSpec;
use crate::auth::{BearerToken, Principal};
use crate::connect::ConnectClient;
use crate::tools::{Availability, McpTool};
use crate::vault::{VaultClient, VaultTokenError};

/// Longest upstream body excerpt quoted in an error.
const EXCERPT: usize = 500;

/// What every generated tool shares.
pub struct Deps {
    pub vault: VaultClient,
    pub connect: ConnectClient,
    /// The upstream HTTP client, one per thread.
    pub http: mcpauth_runtime::PerThread<reqwest::Client>,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub cache: ConnectionCache,
    pub elicitation_timeout: Duration,
    /// Connector tool names per provider (what connecting unlocks).
    pub unlocks: BTreeMap<String, Vec<String>>,
}

impl Deps {
    fn display(&self, provider: &str) -> String {
        self.providers
            .get(provider)
            .map_or_else(|| provider.to_owned(), |p| p.display_name.clone())
    }

    /// The sentence that tells a user how to connect `provider`, with a fresh connect URL when
    /// auth-service gives one.
    async fn connect_hint(&self, token: &BearerToken, provider: &str, why: &str) -> String {
        let display = self.display(provider);
        match self.connect.start(token, provider).await {
            Ok(c) => format!(
                "{why} To connect your {display} account, open this link in a browser: {} \
                 (it works once and expires soon). Then try again.",
                c.url
            ),
            Err(status) => {
                tracing::warn!(provider, code = ?status.code(), "cannot start a connect flow");
                format!(
                    "{why} Call the {} tool to connect your {display} account, then try again.",
                    connect_tool_name(provider)
                )
            }
        }
    }
}

fn error_result(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

fn token_of(p: &Principal) -> Result<&BearerToken, CallToolResult> {
    p.access_token.as_ref().ok_or_else(|| {
        error_result("this request carries no user token, so no upstream account can be used")
    })
}

fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

/// A bounded, printable excerpt of an upstream body.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    if clean.chars().count() > EXCERPT {
        let cut: String = clean.chars().take(EXCERPT).collect();
        format!("{cut}…")
    } else {
        clean
    }
}

/// Reads a response body, refusing one larger than `max` bytes.
async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("the response is larger than {max} bytes"));
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > max {
                    return Err(format!("the response is larger than {max} bytes"));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) if e.is_timeout() => return Err("the response timed out".into()),
            Err(_) => return Err("the response was cut off".into()),
        }
    }
}

/// A declarative HTTP tool.
pub struct ConnectorTool {
    pub spec: ConnectorSpec,
    pub deps: Arc<Deps>,
}

impl ConnectorTool {
    async fn run(&self, p: &Principal, args: JsonObject) -> CallToolResult {
        let token = match token_of(p) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let plan = match self.spec.plan(&args) {
            Ok(plan) => plan,
            Err(e) => return error_result(e),
        };
        let provider = self.spec.provider.as_str();
        let display = self.deps.display(provider);
        let tokens = &self.deps.cache.tokens;
        let mut fresh = false;
        let (resp, started) = loop {
            let (upstream, reused) = match tokens.access_token(p, token, provider, fresh).await {
                Ok(t) => t,
                Err(
                    e @ (VaultTokenError::NotConnected | VaultTokenError::ReauthorizationRequired),
                ) => {
                    self.deps.cache.invalidate(&p.subject);
                    let why = if e == VaultTokenError::NotConnected {
                        format!("{display} is not connected.")
                    } else {
                        format!("{display} needs you to sign in again.")
                    };
                    return error_result(self.deps.connect_hint(token, provider, &why).await);
                }
                Err(VaultTokenError::Unauthenticated) => {
                    return error_result(
                        "the token vault did not accept your session's token; sign in again",
                    );
                }
                Err(VaultTokenError::Refused(code)) => {
                    tracing::warn!(provider, code, "token-vault refused a GetAccessToken call");
                    return error_result(format!(
                        "{display} cannot be used right now: the token vault refused the request ({code})"
                    ));
                }
                Err(VaultTokenError::Unavailable(why)) => {
                    tracing::warn!(provider, why, "token-vault unavailable");
                    return error_result(format!(
                        "{display} is temporarily unavailable (the token vault could not provide a token); try again shortly"
                    ));
                }
            };
            let mut req = self
                .deps
                .http
                .get()
                .request(self.spec.method.clone(), plan.url.clone())
                .headers(self.spec.headers.clone())
                .bearer_auth(upstream.expose())
                .timeout(self.spec.timeout);
            if !self.spec.headers.contains_key(reqwest::header::ACCEPT) {
                req = req.header(reqwest::header::ACCEPT, "application/json");
            }
            if let Some(body) = &plan.body {
                req = req.json(body);
            }
            let started = std::time::Instant::now();
            let resp = match req.send().await {
                // A reused token the upstream no longer takes: forget it; an idempotent call
                // asks the vault once more and is sent again.
                Ok(r) if reused && r.status() == reqwest::StatusCode::UNAUTHORIZED => {
                    tokens.forget(token, provider);
                    if !self.spec.method.is_idempotent() {
                        break (r, started);
                    }
                    fresh = true;
                    continue;
                }
                Ok(r) => r,
                Err(e) => {
                    let what = if e.is_timeout() {
                        format!(
                            "{display} did not answer within {} s",
                            self.spec.timeout.as_secs_f32()
                        )
                    } else {
                        format!("{display} cannot be reached")
                    };
                    tracing::warn!(tool = %self.spec.name, provider, error = %e.without_url(), "upstream call failed");
                    return error_result(what);
                }
            };
            break (resp, started);
        };
        let status = resp.status();
        metrics::histogram!("mcpauth_mcp_connector_seconds", "tool" => self.spec.name.clone(), "status" => status.as_u16().to_string())
            .record(started.elapsed().as_secs_f64());
        let body = match read_limited(resp, self.spec.max_response_bytes).await {
            Ok(b) => b,
            Err(e) => return error_result(format!("{display}: {e}")),
        };
        if !status.is_success() {
            let reason = status.canonical_reason().unwrap_or("");
            let mut msg = format!("{display} answered HTTP {} {reason}", status.as_u16());
            let ex = excerpt(&body);
            if !ex.is_empty() {
                msg.push_str(&format!(": {ex}"));
            }
            if status == reqwest::StatusCode::UNAUTHORIZED {
                // The upstream no longer accepts the credential: offer to connect again.
                self.deps.cache.invalidate(&p.subject);
                msg = self
                    .deps
                    .connect_hint(token, provider, &format!("{msg}."))
                    .await;
            }
            return error_result(msg);
        }
        if body.is_empty() {
            return CallToolResult::success(vec![ContentBlock::text(format!(
                "{display} answered HTTP {} with no content",
                status.as_u16()
            ))]);
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => {
                let mut r = CallToolResult::success(vec![ContentBlock::text(v.to_string())]);
                if v.is_object() {
                    r.structured_content = Some(v);
                }
                r
            }
            Err(_) => CallToolResult::success(vec![ContentBlock::text(
                String::from_utf8_lossy(&body).into_owned(),
            )]),
        }
    }
}

impl McpTool for ConnectorTool {
    fn definition(&self) -> Tool {
        Tool::new(
            self.spec.name.clone(),
            self.spec.description.clone(),
            Arc::new(self.spec.schema.clone()),
        )
    }

    fn required_scopes(&self) -> &[String] {
        &self.spec.scopes
    }

    fn availability(&self) -> Availability<'_> {
        Availability::Connected(&self.spec.provider)
    }

    fn call<'a>(
        &'a self,
        principal: &'a Principal,
        arguments: JsonObject,
    ) -> BoxFuture<'a, Result<CallToolResult, ErrorData>> {
        Box::pin(async move { Ok(self.run(principal, arguments).await) })
    }
}

/// `connect_<provider>`: a connect URL (and a URL-mode elicitation where the client has it).
pub struct ConnectTool {
    pub provider: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub deps: Arc<Deps>,
}

impl ConnectTool {
    async fn run(&self, p: &Principal, peer: Option<Peer<RoleServer>>) -> CallToolResult {
        let token = match token_of(p) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let display = self.deps.display(&self.provider);
        let connect = match self.deps.connect.start(token, &self.provider).await {
            Ok(c) => c,
            Err(status) => {
                tracing::warn!(provider = %self.provider, code = ?status.code(), "StartConnect failed");
                return error_result(format!(
                    "cannot start connecting {display} right now ({:?}); try again shortly",
                    status.code()
                ));
            }
        };
        let unlocks = self
            .deps
            .unlocks
            .get(&self.provider)
            .map(|t| t.join(", "))
            .unwrap_or_default();
        let mut text = format!(
            "Open this link in a browser to connect your {display} account: {} \
             (it works once and expires soon). When you have finished, these tools become \
             available: {unlocks}.",
            connect.url
        );
        if let Some(peer) = peer
            && peer
                .supported_elicitation_modes()
                .contains(&rmcp::service::ElicitationMode::Url)
            && let Ok(url) = url::Url::parse(&connect.url)
        {
            let id = super::random_id();
            match peer
                .elicit_url_with_timeout(
                    format!("Connect your {display} account"),
                    url,
                    id,
                    Some(self.deps.elicitation_timeout),
                )
                .await
            {
                Ok(rmcp::model::ElicitationAction::Accept) => {
                    text.push_str(" The link was offered to the user.");
                }
                Ok(_) => text.push_str(" The user did not open the link yet."),
                Err(e) => {
                    tracing::debug!(error = %e, "URL elicitation not completed");
                }
            }
        }
        CallToolResult::success(vec![ContentBlock::text(text)])
    }
}

impl McpTool for ConnectTool {
    fn definition(&self) -> Tool {
        let display = self.deps.display(&self.provider);
        let unlocks = self
            .deps
            .unlocks
            .get(&self.provider)
            .map(|t| t.join(", "))
            .unwrap_or_default();
        let about = self
            .deps
            .providers
            .get(&self.provider)
            .map(|p| p.description.trim().to_owned())
            .filter(|d| !d.is_empty())
            .map(|d| format!(" {d}"))
            .unwrap_or_default();
        Tool::new(
            self.name.clone(),
            format!(
                "Connect your {display} account.{about} Returns a link the user opens in a browser; \
                 afterwards these tools become available: {unlocks}."
            ),
            schema(json!({"type": "object", "properties": {}})),
        )
    }

    fn required_scopes(&self) -> &[String] {
        &self.scopes
    }

    fn availability(&self) -> Availability<'_> {
        Availability::NotConnected(&self.provider)
    }

    fn call<'a>(
        &'a self,
        principal: &'a Principal,
        _arguments: JsonObject,
    ) -> BoxFuture<'a, Result<CallToolResult, ErrorData>> {
        Box::pin(async move { Ok(self.run(principal, None).await) })
    }

    /// The connect tool may ask the client to open the link (URL-mode elicitation).
    fn uses_peer(&self) -> bool {
        true
    }

    fn call_with_peer<'a>(
        &'a self,
        principal: &'a Principal,
        _arguments: JsonObject,
        peer: Peer<RoleServer>,
    ) -> BoxFuture<'a, Result<CallToolResult, ErrorData>> {
        Box::pin(async move { Ok(self.run(principal, Some(peer)).await) })
    }
}

/// `disconnect_<provider>`: deletes the user's credential (and revokes it upstream where the
/// provider supports RFC 7009).
pub struct DisconnectTool {
    pub provider: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub deps: Arc<Deps>,
}

impl McpTool for DisconnectTool {
    fn definition(&self) -> Tool {
        let display = self.deps.display(&self.provider);
        Tool::new(
            self.name.clone(),
            format!(
                "Disconnect your {display} account: forgets its credential (and revokes it at {display} where possible)."
            ),
            schema(json!({"type": "object", "properties": {}})),
        )
    }

    fn required_scopes(&self) -> &[String] {
        &self.scopes
    }

    fn availability(&self) -> Availability<'_> {
        Availability::Connected(&self.provider)
    }

    fn call<'a>(
        &'a self,
        p: &'a Principal,
        _arguments: JsonObject,
    ) -> BoxFuture<'a, Result<CallToolResult, ErrorData>> {
        Box::pin(async move {
            let token = match token_of(p) {
                Ok(t) => t,
                Err(e) => return Ok(e),
            };
            let display = self.deps.display(&self.provider);
            let r = self.deps.vault.disconnect(token, &self.provider).await;
            self.deps.cache.invalidate(&p.subject);
            Ok(match r {
                Ok((true, true)) => CallToolResult::success(vec![ContentBlock::text(format!(
                    "{display} is disconnected and its token was revoked at {display}."
                ))]),
                Ok((true, false)) => CallToolResult::success(vec![ContentBlock::text(format!(
                    "{display} is disconnected (its credential is deleted)."
                ))]),
                Ok((false, _)) => CallToolResult::success(vec![ContentBlock::text(format!(
                    "{display} was not connected."
                ))]),
                Err(e) => {
                    tracing::warn!(provider = %self.provider, error = %e, "DeleteCredential failed");
                    error_result(format!("cannot disconnect {display} right now: {e}"))
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_bounded_and_printable() {
        assert_eq!(
            excerpt(b"{\"message\":\n\"Not Found\"}"),
            "{\"message\": \"Not Found\"}"
        );
        let long = "é".repeat(2000);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), EXCERPT + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt(b"a\x00\x1b[31mb"), "a [31mb");
    }
}
