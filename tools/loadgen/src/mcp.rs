//! MCP Streamable HTTP load (`mcp-call`): per connection one MCP session (protocol 2025-11-25 by
//! default: `initialize` → `Mcp-Session-Id`, then `notifications/initialized`), then pre-encoded
//! `tools/call` requests through the lean pipelined HTTP/1.1 engine ([`crate::pipe`]), each with
//! its own JSON-RPC id (ids must not repeat within a session), `Authorization: Bearer`,
//! `Mcp-Session-Id`, `MCP-Protocol-Version` and `Accept: application/json, text/event-stream`.
//! Every response must be a JSON-RPC result without `isError`, as plain JSON or as an event
//! stream carrying it.

use std::ops::Range;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::http::{Payload, RequestSpec};
use crate::pipe::ID_WIDTH;
use crate::target::Target;

/// Longest server text quoted in an error (it never holds the caller's token, but may hold
/// whatever a tool answered).
const QUOTE: usize = 200;

fn quote(text: &str) -> String {
    let mut t: String = text.chars().take(QUOTE).collect();
    if text.chars().count() > QUOTE {
        t.push('…');
    }
    t
}

/// The JSON-RPC response in an MCP POST answer: the body itself (`application/json`), or the
/// first message with an `id` in an event stream (priming events without data, notifications
/// and comments are skipped).
pub fn jsonrpc_response(body: &[u8]) -> Result<Value, String> {
    let trimmed = body.trim_ascii_start();
    if trimmed.first() == Some(&b'{') {
        return serde_json::from_slice(trimmed)
            .map_err(|e| format!("the body is not JSON ({e}, {} bytes)", body.len()));
    }
    let mut data: Vec<u8> = Vec::new();
    let mut events = 0;
    // A final event without its blank line is dispatched too.
    for line in body.split(|&b| b == b'\n').chain(std::iter::once(&b""[..])) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if !data.is_empty() {
                events += 1;
                let message: Value = serde_json::from_slice(&data)
                    .map_err(|e| format!("an event's data is not JSON ({e})"))?;
                if message.get("id").is_some() {
                    return Ok(message);
                }
                data.clear();
            }
            continue;
        }
        if let Some(value) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
        }
    }
    Err(format!(
        "no JSON-RPC response in the event stream ({events} events, {} bytes)",
        body.len()
    ))
}

/// Checks that `body` answers a `tools/call` with a result whose `isError` is not true.
pub fn check_tool_result(body: &[u8]) -> Result<(), String> {
    let message = jsonrpc_response(body)?;
    if let Some(error) = message.get("error") {
        return Err(format!(
            "JSON-RPC error {}: {}",
            error.get("code").unwrap_or(&Value::Null),
            quote(error.get("message").and_then(Value::as_str).unwrap_or(""))
        ));
    }
    let result = message
        .get("result")
        .ok_or("a JSON-RPC response with neither result nor error")?;
    if result.get("isError") == Some(&Value::Bool(true)) {
        let text = result
            .pointer("/content/0/text")
            .and_then(Value::as_str)
            .unwrap_or("");
        return Err(format!("the tool answered an error: {}", quote(text)));
    }
    if !result.get("content").is_some_and(Value::is_array) {
        return Err("a tools/call result without content".into());
    }
    Ok(())
}

/// How to reach the MCP endpoint.
#[derive(Clone)]
pub struct Endpoint {
    /// `http://<checked address><path>`: requests go to the address the loopback guard checked.
    url: String,
    token: String,
    version: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("version", &self.version)
            .finish()
    }
}

impl Endpoint {
    pub fn new(target: &Target, token: String, version: String) -> Result<Self> {
        let path = target.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            url: format!("http://{}{path}", target.addr),
            token,
            version,
            http,
        })
    }

    fn post(&self, session: Option<&str>) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", &self.version);
        if let Some(id) = session {
            r = r.header("mcp-session-id", id);
        }
        r
    }

    /// Starts a session: `initialize` (the server must agree on the version and answer with an
    /// `Mcp-Session-Id`), then `notifications/initialized`. Returns the session id.
    pub async fn open_session(&self) -> Result<String> {
        let init = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": self.version,
                "capabilities": {},
                "clientInfo": {"name": "mcpauth-loadgen", "version": env!("CARGO_PKG_VERSION")},
            },
        });
        let resp = self
            .post(None)
            .body(init.to_string())
            .send()
            .await
            .with_context(|| format!("initialize at {}", self.url))?;
        let status = resp.status();
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .bytes()
            .await
            .context("reading the initialize answer")?;
        if status != reqwest::StatusCode::OK {
            bail!("initialize answered {status} (is the token valid for this server?)");
        }
        let message = jsonrpc_response(&body).map_err(anyhow::Error::msg)?;
        let agreed = message
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
            .context("initialize answered no result.protocolVersion")?;
        if agreed != self.version {
            bail!(
                "the server answered protocol version {agreed}, not {}",
                self.version
            );
        }
        let session = session.context(
            "initialize answered no Mcp-Session-Id: this client needs a server with sessions",
        )?;
        let resp = self
            .post(Some(&session))
            .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .send()
            .await
            .context("notifications/initialized")?;
        if !resp.status().is_success() {
            bail!("notifications/initialized answered {}", resp.status());
        }
        Ok(session)
    }

    /// Ends a session (DELETE); failures are ignored (sessions also expire).
    pub async fn close_session(&self, session: &str) {
        let _ = self
            .http
            .delete(&self.url)
            .bearer_auth(&self.token)
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", &self.version)
            .send()
            .await;
    }

    /// The `tools/call` request of `session`, and where its JSON-RPC id digits are.
    pub fn call_request(
        &self,
        target: &Target,
        session: &str,
        tool: &str,
        arguments: &Value,
    ) -> Result<(RequestSpec, Range<usize>)> {
        let marker = format!(r#""id":"{}""#, "0".repeat(ID_WIDTH));
        let body = format!(
            r#"{{"jsonrpc":"2.0",{marker},"method":"tools/call","params":{{"name":{},"arguments":{}}}}}"#,
            serde_json::to_string(tool)?,
            arguments
        );
        let headers = [
            format!("Authorization: Bearer {}", self.token),
            "Content-Type: application/json".to_owned(),
            "Accept: application/json, text/event-stream".to_owned(),
            format!("Mcp-Session-Id: {session}"),
            format!("MCP-Protocol-Version: {}", self.version),
        ];
        let id_at = body.find(&marker).expect("the marker is in the body") + 6;
        let body_len = body.len();
        let spec = RequestSpec::new(
            target,
            Some("POST"),
            &headers,
            Payload::Raw(body),
            Some(200),
        )?;
        let start = spec.wire.len() - body_len + id_at;
        Ok((spec, start..start + ID_WIDTH))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESULT: &str = r#"{"jsonrpc":"2.0","id":"000000000001","result":{"content":[{"type":"text","text":"hi"}],"isError":false}}"#;

    #[test]
    fn plain_json_and_event_streams() {
        assert!(check_tool_result(RESULT.as_bytes()).is_ok());
        // rmcp: a priming event without data, then the response.
        let sse =
            format!("id: 0\nretry: 3000\ndata: \n\nevent: message\nid: 1\ndata: {RESULT}\n\n");
        assert!(check_tool_result(sse.as_bytes()).is_ok());
        // CRLF lines, a comment, a notification first, no final blank line, data split in two.
        let sse = format!(
            ": hello\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\r\n\r\ndata: {}\r\ndata: {}",
            &RESULT[..RESULT.find(",\"result\"").unwrap()],
            &RESULT[RESULT.find(",\"result\"").unwrap()..]
        );
        assert!(
            check_tool_result(sse.as_bytes()).is_ok(),
            "{:?}",
            check_tool_result(sse.as_bytes())
        );
    }

    #[test]
    fn errors_are_failures() {
        let tool_error = r#"{"jsonrpc":"2.0","id":"1","result":{"content":[{"type":"text","text":"upstream down"}],"isError":true}}"#;
        let e = check_tool_result(tool_error.as_bytes()).unwrap_err();
        assert!(e.contains("upstream down"), "{e}");
        let rpc_error =
            r#"{"jsonrpc":"2.0","id":"1","error":{"code":-32602,"message":"unknown tool"}}"#;
        let e = check_tool_result(rpc_error.as_bytes()).unwrap_err();
        assert!(e.contains("-32602") && e.contains("unknown tool"), "{e}");
        assert!(check_tool_result(b"data: \n\n").is_err());
        assert!(check_tool_result(b"not json").is_err());
        assert!(check_tool_result(br#"{"jsonrpc":"2.0","id":"1","result":{}}"#).is_err());
    }

    #[tokio::test]
    async fn call_requests_carry_a_stampable_id_and_the_session_headers() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let target = crate::target::resolve("http://127.0.0.1:9/mcp")
            .await
            .unwrap();
        let ep = Endpoint::new(&target, "tok".into(), "2025-11-25".into()).unwrap();
        let (spec, slot) = ep
            .call_request(&target, "sess-1", "whoami", &json!({}))
            .unwrap();
        assert_eq!(&spec.wire[slot.clone()], "0".repeat(ID_WIDTH).as_bytes());
        assert_eq!(&spec.wire[slot.start - 6..slot.start], br#""id":""#);
        let text = String::from_utf8(spec.wire.clone()).unwrap();
        for header in [
            "authorization: Bearer tok\r\n",
            "mcp-session-id: sess-1\r\n",
            "mcp-protocol-version: 2025-11-25\r\n",
            "accept: application/json, text/event-stream\r\n",
            "content-type: application/json\r\n",
        ] {
            assert!(text.contains(header), "{header:?} in {text}");
        }
        assert!(
            text.ends_with(r#""method":"tools/call","params":{"name":"whoami","arguments":{}}}"#)
        );
        assert!(!format!("{ep:?}").contains("tok\""));
    }
}
