//! Hostile HTTP requests for the sweeps (issue 12 item 0b): raw HTTP/1.1 over TCP, so that
//! what a real client library would refuse to send (invalid UTF-8 in a header, a bad percent
//! escape in the path, duplicate or oversize headers) reaches the server byte for byte, and
//! proptest strategies for the pieces. Shared with mcp-service's sweep (its tests/it/hostile.rs
//! includes this file by path), so it depends on nothing but std, tokio and proptest.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one request may take before the sweep calls it a hang: generous, a liveness bound.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// One request, as bytes.
#[derive(Clone)]
pub struct RawRequest {
    pub method: String,
    /// The request-target: path and query, already in wire form.
    pub target: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The request breaks HTTP/1.1 itself (bytes a request-target or header may not hold): the
    /// server may close the connection without an answer. Every other request must be answered.
    pub malformed_http: bool,
}

impl std::fmt::Debug for RawRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |b: &[u8]| {
            let s = String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned();
            if b.len() > 300 {
                format!("{s:?}… ({} bytes)", b.len())
            } else {
                format!("{s:?}")
            }
        };
        writeln!(f, "{} {}", self.method, show(&self.target))?;
        for (k, v) in &self.headers {
            writeln!(f, "  {k}: {}", show(v))?;
        }
        write!(
            f,
            "  body: {} (malformed_http: {})",
            show(&self.body),
            self.malformed_http
        )
    }
}

impl RawRequest {
    pub fn new(method: &str, target: impl Into<Vec<u8>>) -> Self {
        RawRequest {
            method: method.to_owned(),
            target: target.into(),
            headers: vec![],
            body: vec![],
            malformed_http: false,
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn to_bytes(&self, host: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if !self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("host"))
        {
            out.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
        }
        for (k, v) in &self.headers {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() || self.method == "POST" || self.method == "PUT" {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// The connection closed (or reset) before a status line.
    Closed,
    /// No status line within [`REQUEST_TIMEOUT`].
    Hung,
}

/// Sends `req` on a fresh connection and reads up to the status line (not the body: an event
/// stream may stay open).
pub async fn send(addr: SocketAddr, req: &RawRequest) -> Outcome {
    let exchange = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
        // The server may answer (413, 431) and close before it has read a large request.
        let _ = conn.write_all(&req.to_bytes(&addr.to_string())).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&buf[..end]).into_owned();
                return line.split(' ').nth(1).and_then(|s| s.parse().ok());
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Some(status)) => Outcome::Status(status),
        Ok(None) => Outcome::Closed,
        Err(_) => Outcome::Hung,
    }
}

/// The sweep's assertion: answered, within the bound, and not with a server error.
pub fn check(req: &RawRequest, outcome: &Outcome) -> Result<(), TestCaseError> {
    match outcome {
        Outcome::Status(s) if *s < 500 => Ok(()),
        Outcome::Closed if req.malformed_http => Ok(()),
        other => Err(TestCaseError::fail(format!("{other:?} for\n{req:?}"))),
    }
}

/// The case count of a sweep: `default`, or `MCPAUTH_SWEEP_CASES` for a longer campaign.
pub fn cases(default: u32) -> u32 {
    std::env::var("MCPAUTH_SWEEP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `cases` generated requests against `addr` (inside a multi-thread Tokio runtime), failing
/// with the shrunk request on the first 5xx, unanswered or hung one.
pub fn sweep(
    addr: SocketAddr,
    cases: u32,
    strategy: impl Strategy<Value = RawRequest>,
) -> Result<(), String> {
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        // Shrinking re-sends requests; a bounded number is plenty to get a readable example.
        max_shrink_iters: 256,
        ..Config::default()
    });
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<String, u32>::new());
    let result = tokio::task::block_in_place(|| {
        runner
            .run(&strategy, |req| {
                let outcome = handle.block_on(send(addr, &req));
                let key = match &outcome {
                    Outcome::Status(s) => s.to_string(),
                    other => format!("{other:?}"),
                };
                *seen.lock().unwrap().entry(key).or_default() += 1;
                check(&req, &outcome)
            })
            .map_err(|e| e.to_string())
    });
    // What the run saw, for judging its reach (a sweep that only ever got 400 explores little).
    eprintln!("outcomes: {:?}", seen.lock().unwrap());
    result
}

/// Percent-encodes every byte outside unreserved ASCII (a query or path fragment in wire form).
pub fn pct(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Makes arbitrary bytes safe for a request-target without changing their meaning where they
/// were already legal: keeps visible ASCII, escapes the rest (space, CR, LF, controls, 8-bit).
pub fn target_safe(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'#' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

/// Strips what would break the message framing out of a header value (CR, LF); everything
/// else, controls and 8-bit bytes included, goes on the wire.
pub fn header_safe(bytes: Vec<u8>) -> Vec<u8> {
    bytes
        .into_iter()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect()
}

/// Hostile text fragments: percent escapes good and bad (NUL, overlong and truncated UTF-8),
/// separators, controls, unicode.
pub fn junk_text() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        "[a-zA-Z0-9_.~-]{0,12}",
        "(%[0-9a-fA-FgGzZ+ -]{0,2}){1,4}",
        prop::sample::select(vec![
            "%00", "%C0%80", "%ff%fe", "%E2%80", "%", "%%", "%2", "\u{0}", "\u{7f}", "\u{85}",
            "\u{202e}", "\u{feff}", "&", "=", "&&", "==", "+", ";", "../", "..%2f", "\\", "'\"<>",
            "${x}", "null", "[]", "{}", " ",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

/// C0, DEL and C1 control characters: what no identifier may hold.
pub fn control_char() -> impl Strategy<Value = char> + Clone {
    prop_oneof![
        // NUL first: Postgres refuses it in any text value, so it is the one that reaches a 500.
        3 => Just('\0'),
        1 => (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap()),
        1 => Just('\u{7f}'),
        1 => (0x80u32..0xa0).prop_map(|c| char::from_u32(c).unwrap()),
    ]
}

/// A real value with a control character put in somewhere (`client_id=a%00b`).
pub fn poisoned(values: Vec<String>) -> impl Strategy<Value = String> + Clone {
    (
        prop::sample::select(values),
        control_char(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(v, c, at)| {
            let mut chars: Vec<char> = v.chars().collect();
            chars.insert(at.index(chars.len() + 1), c);
            chars.into_iter().collect()
        })
}

/// A form or query string: pairs from `names` (and random names) with values from `values`
/// (and junk), encoded properly, or raw junk fragments, or arbitrary bytes.
pub fn form_bytes(
    names: &'static [&'static str],
    values: Vec<String>,
) -> impl Strategy<Value = Vec<u8>> + Clone {
    let name = prop_oneof![
        // The identifiers every OAuth endpoint looks up: most often where the junk goes.
        3 => prop::sample::select(vec!["client_id", "token", "code", "refresh_token", "grant_type"])
            .prop_map(str::to_owned),
        4 => prop::sample::select(names).prop_map(str::to_owned),
        1 => junk_text(),
    ];
    let value = prop_oneof![
        3 => prop::sample::select(values.clone()),
        2 => poisoned(values),
        2 => junk_text(),
        1 => (1usize..40_000).prop_map(|n| "a".repeat(n)),
    ];
    prop_oneof![
        5 => prop::collection::vec((name, value), 0..8).prop_map(|pairs| {
            let mut s = String::new();
            for (k, v) in pairs {
                if !s.is_empty() {
                    s.push('&');
                }
                s.push_str(&pct(k.as_bytes()));
                s.push('=');
                s.push_str(&pct(v.as_bytes()));
            }
            s.into_bytes()
        }),
        2 => prop::collection::vec(junk_text(), 0..12).prop_map(|v| v.concat().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..300),
    ]
}

/// JSON-ish bodies: arbitrary JSON, invalid UTF-8, truncated or deeply nested text.
pub fn json_junk() -> impl Strategy<Value = Vec<u8>> + Clone {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        junk_text().prop_map(serde_json::Value::String),
    ];
    let value = leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(junk_text(), inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        4 => value.prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => (1usize..5_000).prop_map(|n| "[".repeat(n).into_bytes()),
        1 => (1usize..5_000).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes()),
        1 => Just(b"{\"client_name\": \"\xff\xfe\"}".to_vec()),
        1 => Just(b"{\"a\": \"\\ud800\"}".to_vec()),
        1 => Just(b"{\"a\": 1e999999}".to_vec()),
        1 => Just(b"{\"a\":".to_vec()),
    ]
}

/// Headers that every endpoint may get: credentials of every shape, content types that do not
/// match the body, cookies, forwarding and CORS headers, 8-bit and control bytes, and now and
/// then an oversize value or a flood of headers.
pub fn junk_headers(tokens: Vec<String>) -> impl Strategy<Value = Vec<(String, Vec<u8>)>> + Clone {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let tokens = if tokens.is_empty() {
        vec![String::new()]
    } else {
        tokens
    };
    let raw_value = prop_oneof![
        4 => junk_text().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ]
    .prop_map(header_safe);
    let auth = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40)
            .prop_map(move |b| format!("Basic {}", b64(&b)).into_bytes()),
        (junk_text(), junk_text()).prop_map(move |(u, p)| format!(
            "Basic {}",
            b64(format!("{u}:{p}").as_bytes())
        )
        .into_bytes()),
        (poisoned(tokens.clone()), junk_text()).prop_map(move |(u, p)| format!(
            "Basic {}",
            b64(format!("{u}:{p}").as_bytes())
        )
        .into_bytes()),
        raw_value
            .clone()
            .prop_map(|v| [b"Basic ".as_slice(), &v].concat()),
        raw_value
            .clone()
            .prop_map(|v| [b"Bearer ".as_slice(), &v].concat()),
        prop::sample::select(tokens).prop_map(|t| format!("Bearer {t}").into_bytes()),
        prop::sample::select(vec![
            "Basic",
            "Bearer",
            "Bearer  ",
            "basic Og==",
            "Basic Og==",
            "Digest x",
            "",
            "Bearer a b"
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ];
    let content_type = prop_oneof![
        prop::sample::select(vec![
            "application/x-www-form-urlencoded",
            "application/json",
            "application/json; charset=utf-8",
            "application/x-www-form-urlencoded; charset=iso-8859-1",
            "APPLICATION/JSON",
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "",
            ";;;",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        raw_value.clone(),
    ];
    let one = prop_oneof![
        3 => auth.prop_map(|v| ("Authorization".to_owned(), v)),
        3 => content_type.prop_map(|v| ("Content-Type".to_owned(), v)),
        1 => raw_value.clone().prop_map(|v| ("Cookie".to_owned(), [b"__Host-mcpauth_session=".as_slice(), &v].concat())),
        1 => raw_value.clone().prop_map(|v| ("Cookie".to_owned(), [b"__Host-mcpauth_browser=".as_slice(), &v].concat())),
        1 => raw_value.clone().prop_map(|v| ("Cookie".to_owned(), [b"__Host-mcpauth_upstream=".as_slice(), &v].concat())),
        1 => raw_value.clone().prop_map(|v| ("Cookie".to_owned(), v)),
        1 => raw_value.clone().prop_map(|v| ("X-Forwarded-For".to_owned(), v)),
        1 => raw_value.clone().prop_map(|v| ("Forwarded".to_owned(), v)),
        1 => raw_value.clone().prop_map(|v| ("Origin".to_owned(), v)),
        1 => raw_value.clone().prop_map(|v| ("Accept".to_owned(), v)),
        1 => raw_value.clone().prop_map(|v| ("Accept-Encoding".to_owned(), v)),
        1 => raw_value.clone().prop_map(|v| ("Mcp-Session-Id".to_owned(), v)),
        1 => raw_value.clone().prop_map(|v| ("MCP-Protocol-Version".to_owned(), v)),
        1 => raw_value.clone().prop_map(|v| ("Last-Event-ID".to_owned(), v)),
        1 => raw_value.clone().prop_map(|v| ("Host".to_owned(), v)),
        1 => ("X-[A-Za-z0-9-]{1,20}", raw_value.clone()).prop_map(|(k, v)| (k, v)),
        1 => (1usize..80_000).prop_map(|n| ("X-Big".to_owned(), vec![b'a'; n])),
    ];
    prop_oneof![
        20 => prop::collection::vec(one, 0..6),
        1 => (50usize..200).prop_map(|n| (0..n).map(|i| (format!("X-Flood-{i}"), b"1".to_vec())).collect()),
    ]
}

/// Junk to put after a path (another segment, escapes, traversal) — legal request-target bytes.
pub fn path_suffix() -> impl Strategy<Value = Vec<u8>> + Clone {
    prop_oneof![
        6 => Just(Vec::new()),
        1 => prop::sample::select(vec![
            "/", "//", "/.", "/..", "/%2e%2e", "/%2F", "%00", "/%00", "/%zz", "/%", "/%C0%AF",
            "/%ff", ";x=1", "/x/y/z", "%20", "/a%0ab",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => junk_text().prop_map(|t| target_safe(format!("/{t}").as_bytes())),
        1 => (1usize..20_000).prop_map(|n| format!("/{}", "a".repeat(n)).into_bytes()),
    ]
}

/// Now and then, a request the HTTP layer itself must refuse: raw 8-bit bytes or controls in
/// the request-target. Marks the request as allowed to go unanswered.
pub fn maybe_break_http(req: RawRequest) -> impl Strategy<Value = RawRequest> + Clone {
    prop_oneof![
        12 => Just(req.clone()),
        1 => (prop::collection::vec(prop_oneof![0x80u8..=0xff, 0u8..0x20], 1..4), any::<prop::sample::Index>())
            .prop_map(move |(junk, at)| {
                let mut r = req.clone();
                let i = at.index(r.target.len() + 1);
                r.target.splice(i..i, junk.into_iter().filter(|b| !b" \r\n".contains(b)));
                r.malformed_http = true;
                r
            }),
    ]
}
