//! The SEP-2322 multi-round-trip reference tools of the conformance suite's
//! `input-required-result-*` scenarios (2026-07-28): a tool that needs input from the client
//! answers an `InputRequiredResult` (`inputRequests`, optionally `requestState`); the client
//! retries the same `tools/call` with `inputResponses` (and the echoed `requestState`) and gets
//! the complete result.
//!
//! The server is stateless between rounds, so whatever a later round must trust travels in
//! `requestState`, sealed: HMAC-SHA256 over a payload that names the tool, the caller's subject
//! and an expiry, under a key drawn at start. A state changed by the client, issued to another
//! caller or for another tool, or expired, is refused with -32602 (the `tampered-state`
//! scenario). The key lives only in this process: a round that lands on another replica is
//! refused the same way, which is acceptable for a dev-only tool set (a production tool would
//! share the key through config).
//!
//! Every input response is checked against what was asked (an accepted elicitation with the
//! requested field, a sampling result with text, a roots list with URIs); a malformed one is a
//! -32602 error and a missing one is asked for again in a new `InputRequiredResult`.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use rmcp::ErrorData;
use rmcp::model::{CallToolResponse, ClientCapabilities, InputRequiredResult, InputResponses};
use serde_json::{Value, json};

use crate::tools::CallContext;

use super::text;

/// How long a `requestState` stays valid: a client answers an input request within minutes.
const STATE_TTL_SECS: u64 = 600;

/// The multi-round-trip tools (one per behaviour the suite checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mrtr {
    Elicitation,
    Sampling,
    ListRoots,
    RequestState,
    MultipleInputs,
    MultiRound,
    TamperedState,
    Capabilities,
}

/// Name, tool, description of each multi-round-trip tool.
pub(super) fn catalogue() -> [(&'static str, Mrtr, &'static str); 8] {
    [
        (
            "test_input_required_result_elicitation",
            Mrtr::Elicitation,
            "Asks for the user's name (elicitation input request), then greets them.",
        ),
        (
            "test_input_required_result_sampling",
            Mrtr::Sampling,
            "Asks the client's LLM a question (sampling input request), then returns the answer.",
        ),
        (
            "test_input_required_result_list_roots",
            Mrtr::ListRoots,
            "Asks for the client's roots (roots/list input request), then lists them.",
        ),
        (
            "test_input_required_result_request_state",
            Mrtr::RequestState,
            "Asks for a confirmation with a sealed requestState; answers state-ok once verified.",
        ),
        (
            "test_input_required_result_multiple_inputs",
            Mrtr::MultipleInputs,
            "Asks for elicitation, sampling and roots at once, with a sealed requestState.",
        ),
        (
            "test_input_required_result_multi_round",
            Mrtr::MultiRound,
            "Two rounds of elicitation (name, then colour); requestState carries the first answer.",
        ),
        (
            "test_input_required_result_tampered_state",
            Mrtr::TamperedState,
            "Asks for a confirmation with a sealed requestState; a modified state is refused.",
        ),
        (
            "test_input_required_result_capabilities",
            Mrtr::Capabilities,
            "Asks only for the inputs whose capability the request's _meta declares.",
        ),
    ]
}

/// The key that seals `requestState` (see the module doc).
pub(super) struct StateKey(hmac::Key);

impl StateKey {
    /// A fresh random key.
    pub(super) fn random() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .expect("the system random source is available");
        Self(key)
    }

    /// `base64url(payload).base64url(tag)`, the payload binding tool, subject and expiry to
    /// `data`.
    fn seal(&self, tool: &str, subject: &str, data: Value) -> String {
        let payload = json!({"tool": tool, "sub": subject, "exp": now() + STATE_TTL_SECS,
                             "data": data})
        .to_string();
        let tag = hmac::sign(&self.0, payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The data of a state sealed by [`StateKey::seal`] for this tool and subject; -32602
    /// otherwise (the tag is compared in constant time by `ring`).
    fn open(&self, tool: &str, subject: &str, state: &str) -> Result<Value, ErrorData> {
        let refused = || {
            ErrorData::invalid_params(
                "requestState failed its integrity check (modified, expired, or not issued to this caller for this tool)",
                None,
            )
        };
        let (payload, tag) = state.split_once('.').ok_or_else(refused)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| refused())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| refused())?;
        hmac::verify(&self.0, &payload, &tag).map_err(|_| refused())?;
        let mut payload: Value = serde_json::from_slice(&payload).map_err(|_| refused())?;
        let fresh = payload["exp"].as_u64().is_some_and(|exp| exp > now());
        if payload["tool"] != tool || payload["sub"] != subject || !fresh {
            return Err(refused());
        }
        Ok(payload["data"].take())
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An input request, as JSON.
fn ask_name(key_message: &str, field: &str) -> Value {
    json!({"method": "elicitation/create", "params": {
        "mode": "form", "message": key_message,
        "requestedSchema": {"type": "object",
            "properties": {field: {"type": "string"}}, "required": [field]}}})
}

fn ask_confirm() -> Value {
    json!({"method": "elicitation/create", "params": {
        "mode": "form", "message": "Please confirm",
        "requestedSchema": {"type": "object",
            "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}})
}

fn ask_sampling(prompt: &str, max_tokens: u32) -> Value {
    json!({"method": "sampling/createMessage", "params": {
        "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
        "maxTokens": max_tokens}})
}

fn ask_roots() -> Value {
    json!({"method": "roots/list", "params": {}})
}

/// An `InputRequiredResult` with `requests` (key → request JSON) and `state`.
fn input_required(
    requests: Vec<(&str, Value)>,
    state: Option<String>,
) -> Result<CallToolResponse, ErrorData> {
    let requests: serde_json::Map<String, Value> = requests
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let mut v = json!({"resultType": "input_required", "inputRequests": requests});
    if let Some(state) = state {
        v["requestState"] = Value::String(state);
    }
    let r: InputRequiredResult = serde_json::from_value(v)
        .map_err(|e| ErrorData::internal_error(format!("input request: {e}"), None))?;
    Ok(r.into())
}

fn malformed(key: &str, what: &str) -> ErrorData {
    ErrorData::invalid_params(format!("inputResponses.{key}: expected {what}"), None)
}

/// An elicitation answer: `Some(content)` when accepted, `None` when declined or cancelled.
fn elicited<'a>(
    key: &str,
    v: &'a Value,
) -> Result<Option<&'a serde_json::Map<String, Value>>, ErrorData> {
    let what = "an elicitation result (action accept|decline|cancel, content object)";
    match v.get("action").and_then(Value::as_str) {
        Some("accept") => v
            .get("content")
            .and_then(Value::as_object)
            .map(Some)
            .ok_or_else(|| malformed(key, what)),
        Some("decline" | "cancel") => Ok(None),
        _ => Err(malformed(key, what)),
    }
}

/// The string field `field` of an accepted elicitation answer (`None`: declined).
fn elicited_string(key: &str, v: &Value, field: &str) -> Result<Option<String>, ErrorData> {
    let Some(content) = elicited(key, v)? else {
        return Ok(None);
    };
    content
        .get(field)
        .and_then(Value::as_str)
        .map(|s| Some(s.to_owned()))
        .ok_or_else(|| malformed(key, &format!("content.{field} (string)")))
}

/// The text of a sampling result (`CreateMessageResult`).
fn sampled(key: &str, v: &Value) -> Result<String, ErrorData> {
    let content = v.get("content");
    let block = match content {
        Some(Value::Array(blocks)) => blocks.iter().find(|b| b["type"] == "text"),
        other => other,
    };
    match (v.get("role").and_then(Value::as_str), block) {
        (Some(_), Some(b)) if b["type"] == "text" => b["text"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| malformed(key, "a sampling result with text content")),
        _ => Err(malformed(key, "a sampling result (role, text content)")),
    }
}

/// The URIs of a roots/list result.
fn roots(key: &str, v: &Value) -> Result<Vec<String>, ErrorData> {
    let what = "a roots/list result (roots: [{uri}])";
    let list = v
        .get("roots")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(key, what))?;
    list.iter()
        .map(|r| {
            r["uri"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| malformed(key, what))
        })
        .collect()
}

fn done(t: String) -> Result<CallToolResponse, ErrorData> {
    text(t).map(Into::into)
}

/// One round of `which`.
pub(super) fn call(
    which: Mrtr,
    tool: &str,
    key: &StateKey,
    ctx: &CallContext,
) -> Result<CallToolResponse, ErrorData> {
    if !ctx.stateless() {
        return Err(ErrorData::invalid_request(
            "this tool asks for input with an InputRequiredResult: call it on protocol revision 2026-07-28",
            None,
        ));
    }
    let empty = InputResponses::new();
    let responses = ctx.input_responses.as_ref().unwrap_or(&empty);
    let subject = ctx.subject.as_str();
    let seal = |data: Value| key.seal(tool, subject, data);
    // A state the client echoed, verified; `None` when it sent none.
    let opened = || {
        ctx.request_state
            .as_deref()
            .map(|s| key.open(tool, subject, s))
            .transpose()
    };
    match which {
        Mrtr::Elicitation => match responses.get("user_name") {
            None => input_required(
                vec![("user_name", ask_name("What is your name?", "name"))],
                None,
            ),
            Some(v) => match elicited_string("user_name", v, "name")? {
                Some(name) => done(format!("Hello, {name}!")),
                None => done("The user declined to give a name.".into()),
            },
        },
        Mrtr::Sampling => match responses.get("capital_question") {
            None => input_required(
                vec![(
                    "capital_question",
                    ask_sampling("What is the capital of France?", 100),
                )],
                None,
            ),
            Some(v) => done(format!("LLM response: {}", sampled("capital_question", v)?)),
        },
        Mrtr::ListRoots => match responses.get("client_roots") {
            None => input_required(vec![("client_roots", ask_roots())], None),
            Some(v) => done(format!(
                "Client roots: {}",
                roots("client_roots", v)?.join(", ")
            )),
        },
        Mrtr::RequestState | Mrtr::TamperedState => {
            let state = opened()?;
            match (responses.get("confirm"), state) {
                (Some(v), Some(_)) => {
                    let ok = elicited("confirm", v)?
                        .map(|c| {
                            c.get("ok")
                                .and_then(Value::as_bool)
                                .ok_or_else(|| malformed("confirm", "content.ok (boolean)"))
                        })
                        .transpose()?;
                    done(format!(
                        "state-ok: requestState verified, confirmed={}",
                        ok.unwrap_or(false)
                    ))
                }
                (Some(_), None) => Err(ErrorData::invalid_params(
                    "requestState is required with inputResponses for this tool",
                    None,
                )),
                (None, _) => input_required(
                    vec![("confirm", ask_confirm())],
                    Some(seal(json!({"step": 1}))),
                ),
            }
        }
        Mrtr::MultipleInputs => {
            let state = match opened()? {
                Some(s) => s,
                None if responses.is_empty() => json!({"step": 1}),
                None => {
                    return Err(ErrorData::invalid_params(
                        "requestState is required with inputResponses for this tool",
                        None,
                    ));
                }
            };
            let wanted = [
                ("user_name", ask_name("What is your name?", "name")),
                ("greeting", ask_sampling("Generate a greeting", 50)),
                ("client_roots", ask_roots()),
            ];
            let missing: Vec<_> = wanted
                .into_iter()
                .filter(|(k, _)| !responses.contains_key(*k))
                .collect();
            if !missing.is_empty() {
                return input_required(missing, Some(seal(state)));
            }
            let name = elicited_string("user_name", &responses["user_name"], "name")?
                .unwrap_or_else(|| "(declined)".into());
            let greeting = sampled("greeting", &responses["greeting"])?;
            let roots = roots("client_roots", &responses["client_roots"])?;
            done(format!(
                "name: {name}; greeting: {greeting}; roots: {}",
                roots.join(", ")
            ))
        }
        Mrtr::MultiRound => {
            let state = opened()?;
            let step1 = || {
                input_required(
                    vec![("step1", ask_name("Step 1: What is your name?", "name"))],
                    Some(seal(json!({"step": 1}))),
                )
            };
            let Some(state) = state else { return step1() };
            match state["step"].as_u64() {
                Some(1) => match responses.get("step1") {
                    None => step1(),
                    Some(v) => {
                        let name = elicited_string("step1", v, "name")?
                            .unwrap_or_else(|| "(declined)".into());
                        input_required(
                            vec![(
                                "step2",
                                ask_name("Step 2: What is your favorite color?", "color"),
                            )],
                            Some(seal(json!({"step": 2, "name": name}))),
                        )
                    }
                },
                Some(2) => {
                    let name = state["name"].as_str().unwrap_or_default();
                    match responses.get("step2") {
                        None => input_required(
                            vec![(
                                "step2",
                                ask_name("Step 2: What is your favorite color?", "color"),
                            )],
                            ctx.request_state.clone(),
                        ),
                        Some(v) => {
                            let color = elicited_string("step2", v, "color")?
                                .unwrap_or_else(|| "(declined)".into());
                            done(format!("{name}'s favorite color is {color}"))
                        }
                    }
                }
                _ => Err(ErrorData::internal_error(
                    "requestState without a step",
                    None,
                )),
            }
        }
        Mrtr::Capabilities => {
            let caps = ctx.meta.client_capabilities().unwrap_or_default();
            let mut wanted = Vec::new();
            if caps.elicitation.is_some() {
                wanted.push(("user_name", ask_name("What is your name?", "name")));
            }
            if caps.sampling.is_some() {
                wanted.push((
                    "capital_question",
                    ask_sampling("What is the capital of France?", 100),
                ));
            }
            if caps.roots.is_some() {
                wanted.push(("client_roots", ask_roots()));
            }
            if wanted.is_empty() {
                let required: ClientCapabilities = serde_json::from_value(json!({"sampling": {}}))
                    .map_err(|e| ErrorData::internal_error(format!("capabilities: {e}"), None))?;
                return Err(ErrorData::missing_required_client_capability(required));
            }
            let missing: Vec<_> = wanted
                .iter()
                .filter(|(k, _)| !responses.contains_key(*k))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return input_required(missing, None);
            }
            let mut said = Vec::new();
            for (k, _) in &wanted {
                let v = &responses[*k];
                said.push(match *k {
                    "user_name" => format!(
                        "name: {}",
                        elicited_string(k, v, "name")?.unwrap_or_else(|| "(declined)".into())
                    ),
                    "capital_question" => format!("answer: {}", sampled(k, v)?),
                    _ => format!("roots: {}", roots(k, v)?.join(", ")),
                });
            }
            done(said.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_state_opens_only_unchanged_for_its_tool_and_subject() {
        let key = StateKey::random();
        let s = key.seal("t", "alice", json!({"step": 2}));
        assert_eq!(key.open("t", "alice", &s).unwrap(), json!({"step": 2}));
        assert!(key.open("t", "alice", &format!("{s}-TAMPERED")).is_err());
        assert!(key.open("other", "alice", &s).is_err());
        assert!(key.open("t", "bob", &s).is_err());
        assert!(StateKey::random().open("t", "alice", &s).is_err());
        let (payload, tag) = s.split_once('.').unwrap();
        let mut forged: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        forged["data"]["step"] = json!(1);
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(forged.to_string()));
        assert!(key.open("t", "alice", &forged).is_err());
    }

    #[test]
    fn input_responses_are_checked_against_what_was_asked() {
        let accept = json!({"action": "accept", "content": {"name": "Alice"}});
        assert_eq!(
            elicited_string("k", &accept, "name").unwrap().as_deref(),
            Some("Alice")
        );
        assert!(elicited_string("k", &json!(12345), "name").is_err());
        assert!(elicited_string("k", &json!({"action": "accept", "content": {}}), "name").is_err());
        assert_eq!(
            elicited_string("k", &json!({"action": "decline"}), "name").unwrap(),
            None
        );
        let sample = json!({"role": "assistant", "content": {"type": "text", "text": "Paris"},
                            "model": "m", "stopReason": "endTurn"});
        assert_eq!(sampled("k", &sample).unwrap(), "Paris");
        assert!(sampled("k", &json!({"content": "Paris"})).is_err());
        assert_eq!(
            roots("k", &json!({"roots": [{"uri": "file:///r"}]})).unwrap(),
            ["file:///r"]
        );
        assert!(roots("k", &json!({"roots": [{"name": "r"}]})).is_err());
    }
}
