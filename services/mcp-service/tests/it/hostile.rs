//! Hostile-input sweep (issue 12 item 0b) for mcp-service: generated junk JSON-RPC, session
//! ids, protocol versions, credentials and bodies at `/mcp` (POST, GET, DELETE and others) and
//! the protected-resource metadata, against a running stack (real Postgres and Redis). None may
//! be answered with a 5xx, go unanswered or hang; afterwards a tools/call still works.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::harness::*;
#[path = "../../../auth-service/tests/it/hostile_http.rs"]
mod hostile_http;
use hostile_http::*;

/// Generated requests per run: bounded so the sweep takes seconds in a debug build
/// (`MCPAUTH_SWEEP_CASES` overrides it for a longer run).
const CASES: u32 = 500;

fn jsonrpc() -> impl Strategy<Value = Vec<u8>> {
    let id = prop_oneof![
        any::<i64>().prop_map(Value::from),
        junk_text().prop_map(Value::String),
        Just(Value::Null),
        Just(json!({"a": 1})),
        Just(json!([1])),
        Just(json!(1.5)),
    ];
    let method = prop_oneof![
        prop::sample::select(vec![
            "initialize",
            "notifications/initialized",
            "ping",
            "tools/list",
            "tools/call",
            "resources/list",
            "resources/read",
            "prompts/list",
            "logging/setLevel",
            "completion/complete",
            "notifications/cancelled",
            "",
        ])
        .prop_map(str::to_owned),
        junk_text(),
    ];
    let arg = prop_oneof![
        junk_text().prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        Just(Value::Null),
        Just(json!({"nested": {"deeper": [1, 2, {"x": "y"}]}})),
        (1usize..50_000).prop_map(|n| Value::String("a".repeat(n))),
    ];
    let params = prop_oneof![
        Just(Value::Null),
        Just(json!({})),
        Just(
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}})
        ),
        (
            prop_oneof![
                prop::sample::select(vec!["whoami", "write_thing", "echo", ""])
                    .prop_map(str::to_owned),
                junk_text()
            ],
            prop::collection::btree_map(junk_text(), arg.clone(), 0..4)
        )
            .prop_map(|(name, args)| json!({"name": name, "arguments": args})),
        arg,
    ];
    let version = prop_oneof![
        4 => Just(json!("2.0")),
        1 => Just(json!("1.0")),
        1 => Just(json!(2)),
        1 => Just(Value::Null),
    ];
    let message = (version, prop::option::of(id), method, params).prop_map(|(v, id, m, p)| {
        let mut msg = json!({"jsonrpc": v, "method": m, "params": p});
        if let Some(id) = id {
            msg["id"] = id;
        }
        msg
    });
    prop_oneof![
        6 => message.clone().prop_map(|m| serde_json::to_vec(&m).unwrap()),
        1 => prop::collection::vec(message, 0..5).prop_map(|b| serde_json::to_vec(&b).unwrap()),
        1 => Just(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}".to_vec()),
        1 => Just(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1,\"message\":\"x\"}}".to_vec()),
        2 => json_junk(),
        1 => (4_200_000usize..4_400_000).prop_map(|n| vec![b' '; n]),
    ]
}

/// The token with one character changed: well-formed, but its seal fails.
fn mangle(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let last = chars.len() - 1;
    chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

fn requests(
    token: String,
    session: String,
    metadata_path: String,
) -> impl Strategy<Value = RawRequest> {
    let auth = prop_oneof![
        6 => Just(Some(format!("Bearer {token}").into_bytes())),
        1 => Just(None),
        1 => Just(Some(format!("Bearer {}", mangle(&token)).into_bytes())),
        1 => Just(Some(format!("bearer  {token} ").into_bytes())),
    ];
    let session_id = prop_oneof![
        3 => Just(Some(session.into_bytes())),
        2 => Just(None),
        2 => junk_text().prop_map(|t| Some(header_safe(t.into_bytes()))),
        1 => (1usize..40_000).prop_map(|n| Some(vec![b'a'; n])),
    ];
    let version = prop_oneof![
        3 => Just(Some(b"2025-11-25".to_vec())),
        1 => Just(Some(b"2025-06-18".to_vec())),
        1 => Just(None),
        1 => junk_text().prop_map(|t| Some(header_safe(t.into_bytes()))),
    ];
    let accept = prop_oneof![
        4 => Just(Some(b"application/json, text/event-stream".to_vec())),
        1 => Just(Some(b"text/event-stream".to_vec())),
        1 => Just(Some(b"application/json".to_vec())),
        1 => Just(None),
        1 => junk_text().prop_map(|t| Some(header_safe(t.into_bytes()))),
    ];
    let route = prop_oneof![
        8 => prop::sample::select(vec!["POST", "POST", "POST", "GET", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD", "FOO"])
            .prop_map(|m| (m.to_owned(), "/mcp".to_owned())),
        1 => prop::sample::select(vec!["GET", "OPTIONS", "POST"])
            .prop_map(move |m| (m.to_owned(), metadata_path.clone())),
        1 => prop::sample::select(vec!["/healthz", "/readyz", "/metrics", "/", "/mcp/", "/MCP", "/mcp/x"])
            .prop_map(|p| ("GET".to_owned(), p.to_owned())),
    ];
    let content_type = prop::sample::select(vec![
        Some("application/json"),
        Some("application/json"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ]);
    (
        route,
        path_suffix(),
        prop::option::weighted(
            0.2,
            form_bytes(&["sessionId", "x"], vec!["1".to_owned()]).prop_map(|q| target_safe(&q)),
        ),
        (auth, session_id, version, accept, content_type),
        jsonrpc(),
        junk_headers(vec![]),
    )
        .prop_map(
            |((method, path), suffix, query, (auth, sid, version, accept, ct), body, extra)| {
                let mut target = path.into_bytes();
                target.extend_from_slice(&suffix);
                if let Some(q) = query {
                    target.push(b'?');
                    target.extend_from_slice(&q);
                }
                let mut req = RawRequest::new(&method, target);
                for (name, value) in [
                    ("Authorization", auth),
                    ("Mcp-Session-Id", sid),
                    ("MCP-Protocol-Version", version),
                    ("Accept", accept),
                    ("Content-Type", ct.map(|c| c.as_bytes().to_vec())),
                ] {
                    if let Some(v) = value {
                        req = req.header(name, v);
                    }
                }
                // Junk headers come after the good ones: duplicates of them are part of it.
                req.headers.extend(extra);
                if method != "GET" && method != "HEAD" || body.len() < 1000 {
                    req = req.body(body);
                }
                req
            },
        )
        .prop_flat_map(maybe_break_http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_no_5xx_and_no_hang() {
    let stack = Stack::start().await;
    let token = stack.access_token().await;
    let session = stack.session(&token).await;
    let metadata_path = url::Url::parse(&stack.mcp_config.metadata_url())
        .unwrap()
        .path()
        .to_owned();
    let addr: std::net::SocketAddr = stack
        .mcp_base
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let started = std::time::Instant::now();
    let result = sweep(
        addr,
        cases(CASES),
        requests(token.clone(), session, metadata_path),
    );
    eprintln!("hostile requests: {:?}", started.elapsed());
    // Still serving: a fresh session and a tools/call.
    let fresh = tokio::time::timeout(REQUEST_TIMEOUT, stack.session(&token))
        .await
        .expect("mcp-service answers after the sweep");
    let call = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    let status = stack.post_status(Some(&token), call, Some(&fresh)).await;
    stack.stop().await;
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_eq!(status, 200);
}
