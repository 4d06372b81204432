//! The lean HTTP/1.1 engine: a few keep-alive connections, each driven by one task that keeps
//! up to `depth` requests in flight (HTTP/1.1 pipelining; depth 1 is ordinary keep-alive).
//!
//! Per connection and round trip it does one `write` (every request it may start, copied from a
//! pre-serialized batch) and one `read`, then parses every complete response in the buffer: at
//! depth 16 that is two system calls, two clock reads and one timer per 16 requests, which is
//! what makes the generator cheap enough to leave the server most of a 2-core machine.
//!
//! Every response is checked (status, and the body when `--expect-body` is given); the latency of
//! a request is the time from the `write` that carried it to the `read` that completed its
//! response. Responses come back in request order (RFC 9112 §9.3.2), so a queue of write times
//! matches them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::h1::{Framing, parse_chunk_size, parse_head};
use crate::http::RequestSpec;
use crate::run::Budget;
use crate::stats::WorkerStats;

/// Largest pipelining depth: the requests of one round trip and their responses must fit in the
/// loopback socket buffers, or the single task that both writes and reads could stall.
pub const MAX_DEPTH: u16 = 256;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response (head and body) accepted.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;
/// Initial read buffer; it grows when a response needs more.
const INITIAL_BUFFER: usize = 64 * 1024;
/// Free space kept at the end of the read buffer before each read.
const MIN_READ: usize = 16 * 1024;

/// A complete response found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Bytes it occupies (interim 1xx responses included).
    pub len: usize,
    /// Final status code.
    pub status: u16,
    /// Whether the server keeps the connection open after it.
    pub keep_alive: bool,
    /// Where its body is, relative to the start of the buffer.
    pub body: Range<usize>,
    /// Whether the body range is still chunk-encoded.
    pub chunked: bool,
}

/// Parses the response at the start of `buf`: `Ok(None)` when it is not complete yet.
pub fn parse_response(buf: &[u8], head_request: bool) -> Result<Option<Parsed>, String> {
    let mut at = 0;
    loop {
        let Some(head_len) = memmem::find(&buf[at..], b"\r\n\r\n") else {
            if buf.len() - at > MAX_HEAD {
                return Err(format!("response head larger than {MAX_HEAD} bytes"));
            }
            return Ok(None);
        };
        let head = parse_head(&buf[at..at + head_len], head_request)?;
        let body_start = at + head_len + 4;
        match head.status {
            101 => {
                return Err("the server switched protocols (101), which is not supported".into());
            }
            100..=199 => {
                at = body_start; // interim response: the final one follows
                continue;
            }
            _ => {}
        }
        let (end, chunked) = match head.framing {
            Framing::Empty => (body_start, false),
            Framing::Length(n) => {
                let n = usize::try_from(n)
                    .ok()
                    .filter(|&n| n <= MAX_RESPONSE)
                    .ok_or_else(|| format!("response body of {n} bytes is too large"))?;
                (body_start + n, false)
            }
            Framing::Chunked => match chunked_len(&buf[body_start..])? {
                Some(n) => (body_start + n, true),
                None => return Ok(None),
            },
            Framing::UntilClose => {
                return Err("a response delimited by closing the connection cannot be \
                            pipelined (use --client classic)"
                    .into());
            }
        };
        if buf.len() < end {
            return Ok(None);
        }
        return Ok(Some(Parsed {
            len: end,
            status: head.status,
            keep_alive: head.keep_alive,
            body: body_start..end,
            chunked,
        }));
    }
}

/// The next CRLF-terminated line of `buf` from `at`: its end (before CRLF), or `None`.
fn line_end(buf: &[u8], at: usize) -> Result<Option<usize>, String> {
    match memmem::find(&buf[at..], b"\r\n") {
        Some(n) => Ok(Some(at + n)),
        None if buf.len() - at > MAX_HEAD => Err("overlong line in a chunked body".into()),
        None => Ok(None),
    }
}

/// Length of the complete chunked body (trailers included) at the start of `buf`, or `None`.
fn chunked_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let mut at = 0;
    loop {
        let Some(end) = line_end(buf, at)? else {
            return Ok(None);
        };
        let size = parse_chunk_size(&buf[at..end])?;
        at = end + 2;
        if size == 0 {
            // Trailer section: header lines up to an empty line.
            loop {
                let Some(end) = line_end(buf, at)? else {
                    return Ok(None);
                };
                let empty = end == at;
                at = end + 2;
                if empty {
                    return Ok(Some(at));
                }
            }
        }
        let size = usize::try_from(size)
            .ok()
            .filter(|&n| n <= MAX_RESPONSE)
            .ok_or_else(|| format!("chunk of {size} bytes is too large"))?;
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        at += size + 2;
    }
}

/// The data of a complete chunked body (as delimited by [`chunked_len`]), appended to `out`.
fn dechunk(mut raw: &[u8], out: &mut Vec<u8>) {
    while let Some(end) = memmem::find(raw, b"\r\n") {
        let size = parse_chunk_size(&raw[..end]).unwrap_or(0) as usize;
        if size == 0 {
            return;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
}

/// What every request of a lean HTTP run sends and expects.
#[derive(Debug)]
pub struct PipeSpec {
    request: Arc<RequestSpec>,
    /// `depth` copies of the request, so any number up to `depth` goes out in one write.
    batch: Vec<u8>,
    depth: usize,
    /// A byte string the response body must contain.
    expect_body: Option<Vec<u8>>,
    /// Whether the body must be a JSON-RPC result of an MCP `tools/call` without `isError`
    /// (plain JSON, or an SSE stream carrying it).
    mcp_result: bool,
    /// Where each request carries [`ID_WIDTH`] decimal digits that [`drive`] replaces with a
    /// number unique on the connection (JSON-RPC ids must not repeat within an MCP session).
    id_slot: Option<Range<usize>>,
}

/// Digits of a stamped request id.
pub const ID_WIDTH: usize = 12;

impl PipeSpec {
    /// Up to `depth` (1..=[`MAX_DEPTH`]) requests in flight per connection.
    pub fn new(request: Arc<RequestSpec>, depth: u16, expect_body: Option<String>) -> Self {
        let depth = usize::from(depth.clamp(1, MAX_DEPTH));
        Self {
            batch: request.wire.repeat(depth),
            request,
            depth,
            expect_body: expect_body.map(String::into_bytes),
            mcp_result: false,
            id_slot: None,
        }
    }

    /// Every response must be an MCP `tools/call` result without `isError`
    /// ([`crate::mcp::check_tool_result`]).
    pub fn with_mcp_result(mut self) -> Self {
        self.mcp_result = true;
        self
    }

    /// Each request's bytes `slot` ([`ID_WIDTH`] digits) are replaced by a per-connection
    /// counter before it is written.
    pub fn with_id_slot(mut self, slot: Range<usize>) -> Self {
        assert_eq!(slot.len(), ID_WIDTH, "an id slot is {ID_WIDTH} digits");
        assert!(
            slot.end <= self.request.wire.len(),
            "id slot inside the request"
        );
        self.id_slot = Some(slot);
        self
    }

    /// The checked loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.request.addr
    }

    /// Checks one response; `Err` says why it is a failure.
    fn check(&self, buf: &[u8], parsed: &Parsed, scratch: &mut Vec<u8>) -> Result<(), String> {
        if !self.request.accepts(parsed.status) {
            return Err(self.request.unexpected(parsed.status));
        }
        if self.expect_body.is_some() || self.mcp_result {
            let body = &buf[parsed.body.clone()];
            let body = if parsed.chunked {
                scratch.clear();
                dechunk(body, scratch);
                &scratch[..]
            } else {
                body
            };
            if self.mcp_result {
                crate::mcp::check_tool_result(body)?;
            }
            let Some(expected) = &self.expect_body else {
                return Ok(());
            };
            if memmem::find(body, expected).is_none() {
                // The body is not shown: it may hold a token (`/token`).
                return Err(format!(
                    "status {} but the body ({} bytes) does not contain the expected text",
                    parsed.status,
                    body.len()
                ));
            }
        }
        Ok(())
    }
}

/// Opens a connection with `TCP_NODELAY`.
pub async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY on {addr}: {e}"))?;
    Ok(stream)
}

/// Drives one connection (reconnecting when the server closes it) until the budget is spent
/// and every request it started has been answered, failed or timed out.
pub async fn drive(
    spec: Arc<PipeSpec>,
    first: TcpStream,
    budget: Arc<Budget>,
    timeout: Duration,
) -> WorkerStats {
    let mut stats = WorkerStats::new();
    let wire_len = spec.request.wire.len();
    let head_request = spec.request.head_request;
    let mut stream = Some(first);
    // Write times of the requests sent on this connection and not answered yet, oldest first.
    let mut sent: VecDeque<Instant> = VecDeque::with_capacity(spec.depth);
    // How many of `sent` must be written again (after the server closed the connection).
    let mut resend = 0;
    // Whether the current connection has answered anything (if not, a failure is not retried).
    let mut answered = false;
    let mut buf = vec![0u8; INITIAL_BUFFER];
    let (mut start, mut end) = (0, 0);
    let mut scratch = Vec::new();
    // With an id slot: this connection's copy of the batch and the next id.
    let mut stamped = spec.id_slot.as_ref().map(|_| (spec.batch.clone(), 1u64));

    loop {
        let mut now = Instant::now();
        if stream.is_none() {
            match connect(spec.addr()).await {
                Ok(conn) => {
                    stream = Some(conn);
                    (start, end, answered) = (0, 0, false);
                    now = Instant::now();
                }
                Err(e) => {
                    // Fail what was waiting for this connection, or one new request, so that a
                    // server that went away ends the run through the budget instead of a spin.
                    if sent.is_empty() {
                        if !budget.take(now) {
                            break;
                        }
                        stats.failure(|| e);
                    } else {
                        fail_all(&mut stats, &mut sent, &e);
                        resend = 0;
                    }
                    continue;
                }
            }
        }
        let conn = stream.as_mut().expect("connected above");

        let mut count = resend;
        resend = 0;
        while sent.len() < spec.depth && budget.take(now) {
            sent.push_back(now);
            count += 1;
        }
        if sent.is_empty() {
            break;
        }
        let bytes = match (&mut stamped, &spec.id_slot) {
            (Some((batch, next)), Some(slot)) => {
                for i in 0..count {
                    let at = i * wire_len;
                    stamp_id(&mut batch[at + slot.start..at + slot.end], *next);
                    *next += 1;
                }
                &batch[..count * wire_len]
            }
            _ => &spec.batch[..count * wire_len],
        };
        if count > 0
            && let Err(e) = conn.write_all(bytes).await
        {
            lost(
                &mut stats,
                &mut sent,
                &mut resend,
                answered,
                format!("writing requests: {e}"),
            );
            stream = None;
            continue;
        }

        // Room to read into: drop consumed bytes, grow for a large response.
        if start == end {
            (start, end) = (0, 0);
        } else if buf.len() - end < MIN_READ && start > 0 {
            buf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        if buf.len() - end < MIN_READ {
            if buf.len() >= MAX_RESPONSE + MIN_READ {
                fail_all(
                    &mut stats,
                    &mut sent,
                    &format!("response larger than {MAX_RESPONSE} bytes"),
                );
                stream = None;
                continue;
            }
            buf.resize(buf.len() * 2, 0);
        }

        let oldest = *sent.front().expect("a request is in flight");
        let read = tokio::time::timeout_at((oldest + timeout).into(), conn.read(&mut buf[end..]));
        match read.await {
            Err(_) => {
                fail_all(
                    &mut stats,
                    &mut sent,
                    &format!("no answer within {timeout:?}"),
                );
                stream = None;
                continue;
            }
            Ok(Err(e)) => {
                lost(
                    &mut stats,
                    &mut sent,
                    &mut resend,
                    answered,
                    format!("reading responses: {e}"),
                );
                stream = None;
                continue;
            }
            Ok(Ok(0)) => {
                let what = if start == end {
                    "the server closed the connection".to_owned()
                } else {
                    "the server closed the connection in the middle of a response".to_owned()
                };
                lost(&mut stats, &mut sent, &mut resend, answered, what);
                stream = None;
                continue;
            }
            Ok(Ok(n)) => end += n,
        }

        let now = Instant::now();
        while start < end {
            let window = &buf[start..end];
            match parse_response(window, head_request) {
                Ok(None) => break,
                Ok(Some(parsed)) => {
                    let Some(written) = sent.pop_front() else {
                        stats.failure(|| "a response to no request".into());
                        stream = None;
                        break;
                    };
                    match spec.check(window, &parsed, &mut scratch) {
                        Ok(()) => stats.success(now - written),
                        Err(e) => stats.failure(|| e),
                    }
                    start += parsed.len;
                    answered = true;
                    if !parsed.keep_alive {
                        // The server closes after this response: what it has not answered was
                        // not processed and goes out again on a new connection.
                        resend = sent.len();
                        stream = None;
                        break;
                    }
                }
                Err(e) => {
                    // The stream cannot be resynchronized: everything in flight on it is lost.
                    if sent.pop_front().is_some() {
                        stats.failure(|| e);
                    }
                    fail_all(
                        &mut stats,
                        &mut sent,
                        "abandoned after a malformed response",
                    );
                    stream = None;
                    break;
                }
            }
        }
    }
    stats
}

/// Writes `id` as zero-padded decimal digits filling `slot`.
fn stamp_id(slot: &mut [u8], mut id: u64) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (id % 10) as u8;
        id /= 10;
    }
}

/// Counts every request in `sent` as failed.
fn fail_all(stats: &mut WorkerStats, sent: &mut VecDeque<Instant>, what: &str) {
    for _ in sent.drain(..) {
        stats.failure(|| what.to_owned());
    }
}

/// The connection was lost with `sent` unanswered: they are written again on a new connection
/// if this one had answered something (the server closed an old connection), and fail if not
/// (a new connection that fails before any response would fail again).
fn lost(
    stats: &mut WorkerStats,
    sent: &mut VecDeque<Instant>,
    resend: &mut usize,
    answered: bool,
    what: String,
) {
    if answered {
        *resend = sent.len();
    } else {
        fail_all(stats, sent, &what);
        *resend = 0;
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn ids_are_stamped_zero_padded() {
        let mut slot = *b"xxxxxxxxxxxx";
        stamp_id(&mut slot, 42);
        assert_eq!(&slot, b"000000000042");
        stamp_id(&mut slot, 999_999_999_999);
        assert_eq!(&slot, b"999999999999");
    }
    use crate::http::Payload;
    use crate::run::{Limits, run_drivers};

    fn parse(raw: &str) -> Result<Option<Parsed>, String> {
        parse_response(raw.as_bytes(), false)
    }

    #[test]
    fn complete_and_incomplete_responses() {
        let one = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let p = parse(one).unwrap().unwrap();
        assert_eq!((p.len, p.status, p.keep_alive), (one.len(), 200, true));
        assert_eq!(&one.as_bytes()[p.body.clone()], b"ok");
        for cut in 0..one.len() {
            assert_eq!(parse(&one[..cut]).unwrap(), None, "{cut}");
        }
        // Two pipelined responses: the first is parsed alone.
        let two = format!("{one}HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(parse(&two).unwrap().unwrap().len, one.len());
        let rest = parse(&two[one.len()..]).unwrap().unwrap();
        assert_eq!((rest.status, rest.body.is_empty()), (404, true));

        let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nt: 1\r\n\r\n";
        let p = parse(chunked).unwrap().unwrap();
        assert_eq!(p.len, chunked.len());
        assert!(p.chunked);
        let mut data = Vec::new();
        dechunk(&chunked.as_bytes()[p.body], &mut data);
        assert_eq!(data, b"abcde");
        for cut in 0..chunked.len() {
            assert_eq!(parse(&chunked[..cut]).unwrap(), None, "{cut}");
        }

        let interim = format!("HTTP/1.1 100 Continue\r\n\r\n{one}");
        let p = parse(&interim).unwrap().unwrap();
        assert_eq!((p.len, p.status), (interim.len(), 200));
        let close = "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(!parse(close).unwrap().unwrap().keep_alive);
    }

    #[test]
    fn malformed_responses_are_errors() {
        assert!(parse("HTTP/1.1 200 OK\r\n\r\n").is_err()); // delimited by close
        assert!(parse("HTTP/1.1 101 Switching\r\n\r\n").is_err());
        assert!(parse("HTTP/1.1 2x0 OK\r\ncontent-length: 0\r\n\r\n").is_err());
        assert!(parse("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcXY").is_err());
        assert!(parse("HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n").is_err());
        let huge_head = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD + 1));
        assert!(parse(&huge_head).is_err());
    }

    /// Serves pipelined requests: answers each complete request (head + Content-Length body)
    /// with `respond(n)`, n counting requests on the connection from 1; stops after `per_conn`.
    async fn server(respond: fn(usize) -> String, per_conn: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 8192];
                    let mut served = 0;
                    loop {
                        let mut out = String::new();
                        while let Some(end) = memmem::find(&pending, b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&pending[..end]).to_lowercase();
                            let body: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse().unwrap());
                            if pending.len() < end + 4 + body {
                                break;
                            }
                            pending.drain(..end + 4 + body);
                            served += 1;
                            out.push_str(&respond(served));
                            if served == per_conn {
                                break;
                            }
                        }
                        if !out.is_empty() && stream.write_all(out.as_bytes()).await.is_err() {
                            return;
                        }
                        if served == per_conn {
                            return;
                        }
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    }
                });
            }
        });
        format!("http://{addr}/p")
    }

    async fn load(
        url: &str,
        connections: usize,
        depth: u16,
        requests: u64,
        expect_body: Option<&str>,
    ) -> (u64, u64, Option<String>) {
        let target = crate::target::resolve(url).await.unwrap();
        let request = Arc::new(
            RequestSpec::new(&target, None, &[], Payload::Form("a=1".into()), None).unwrap(),
        );
        let spec = Arc::new(PipeSpec::new(request, depth, expect_body.map(Into::into)));
        let mut streams = Vec::new();
        for _ in 0..connections {
            streams.push(Some(connect(spec.addr()).await.unwrap()));
        }
        let limits = Limits {
            duration: Duration::from_secs(20),
            requests,
            timeout: Duration::from_secs(2),
        };
        let timeout = limits.timeout;
        let (stats, elapsed) = run_drivers(connections, limits, |i, budget| {
            drive(
                Arc::clone(&spec),
                streams[i].take().unwrap(),
                budget,
                timeout,
            )
        })
        .await
        .unwrap();
        let first = stats.summarize("t", elapsed, connections).first_error;
        (stats.successes(), stats.errors(), first)
    }

    fn ok(_: usize) -> String {
        "HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n{\"ok\":true}\n".into()
    }

    #[tokio::test]
    async fn pipelined_requests_all_succeed_with_exact_budget() {
        let url = server(ok, usize::MAX).await;
        assert_eq!(load(&url, 3, 16, 1000, None).await, (1000, 0, None));
        assert_eq!(
            load(&url, 2, 1, 100, Some("\"ok\":true")).await,
            (100, 0, None)
        );
    }

    #[tokio::test]
    async fn unexpected_bodies_and_statuses_are_errors() {
        let url = server(ok, usize::MAX).await;
        let (good, bad, first) = load(&url, 1, 8, 50, Some("\"ok\":false")).await;
        assert_eq!((good, bad), (0, 50));
        assert!(first.unwrap().contains("does not contain"));
        // Every third answer is a 500 (chunked, to exercise that framing too).
        let url = server(
            |n| {
                if n % 3 == 0 {
                    "HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n"
                        .into()
                } else {
                    ok(n)
                }
            },
            usize::MAX,
        )
        .await;
        let (good, bad, first) = load(&url, 1, 16, 300, None).await;
        assert_eq!((good, bad), (200, 100));
        assert_eq!(
            first.as_deref(),
            Some("status 500 Internal Server Error, expected 2xx")
        );
    }

    #[tokio::test]
    async fn unanswered_requests_are_resent_when_the_server_closes() {
        // The server answers five requests per connection, the last with `connection: close`,
        // and drops whatever else was pipelined behind them.
        let url = server(
            |n| {
                if n == 5 {
                    "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n".into()
                } else {
                    ok(n)
                }
            },
            5,
        )
        .await;
        assert_eq!(load(&url, 2, 16, 500, None).await, (500, 0, None));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let hold = tokio::spawn(async move {
            let (_stream, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let started = Instant::now();
        let (good, bad, first) = load(&url, 1, 4, 4, None).await;
        assert_eq!((good, bad), (0, 4));
        assert!(first.unwrap().starts_with("no answer within"));
        assert!(started.elapsed() < Duration::from_secs(5));
        hold.abort();
    }
}
