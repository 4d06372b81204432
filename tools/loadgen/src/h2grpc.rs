//! The lean gRPC engine: unary calls written straight on the `h2` crate (the HTTP/2
//! implementation under tonic and hyper), a few connections each driven by one task that keeps
//! `streams` calls in flight.
//!
//! A call is the pre-encoded request frame (the 5-byte gRPC prefix and the protobuf message,
//! built once), a header map cloned from a template, and a response whose HTTP status, message
//! framing, `grpc-status` trailer and — per scenario — decoded message are checked. Next to a
//! tonic client this leaves out the per-call tower/buffer layers, body channels, task wake-ups
//! and message encoding, which cost about as much CPU as the server spends answering.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use h2::client::{Connection, SendRequest};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use prost::Message;
use tokio::net::TcpStream;

use crate::run::Budget;
use crate::stats::WorkerStats;
use crate::target::Target;

/// Largest response message accepted.
const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// HTTP/2 receive windows: large, so that flow control does not add round trips.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 1 << 24;

/// How a successful response message is recognized (beyond `grpc-status` 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Any well-framed message.
    Any,
    /// Exactly these message bytes.
    Exact(Vec<u8>),
    /// A `grpc.health.v1.HealthCheckResponse` saying `SERVING`.
    Serving,
    /// A `mcpauth.v1.IntrospectResponse` with this `active`.
    Active(bool),
    /// A `mcpauth.v1.GetAccessTokenResponse` with a non-empty `access_token`.
    AccessToken,
}

/// One unary method call, sent identically on every stream. Its `Debug` output shows neither
/// the credential nor the request message (which may hold a token).
pub struct UnarySpec {
    uri: Uri,
    headers: HeaderMap,
    /// The gRPC length-prefixed message: flag byte 0, big-endian length, protobuf bytes.
    frame: Bytes,
    expect: Expect,
}

impl std::fmt::Debug for UnarySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnarySpec")
            .field("uri", &self.uri)
            .field("message_len", &(self.frame.len() - 5))
            .field("expect", &self.expect)
            .finish_non_exhaustive()
    }
}

impl UnarySpec {
    /// A call of `path` (`/package.Service/Method`) on the checked target with the encoded
    /// request `message`, authenticated with `authorization: Bearer <credential>` when given.
    pub fn new(
        target: &Target,
        path: &str,
        message: &[u8],
        credential: Option<&str>,
        expect: Expect,
    ) -> Result<Self> {
        let valid_path = path.strip_prefix('/').and_then(|p| p.split_once('/'));
        if !valid_path.is_some_and(|(service, method)| {
            !service.is_empty() && !method.is_empty() && !method.contains('/')
        }) {
            bail!("gRPC path {path:?} is not of the form /package.Service/Method");
        }
        // The checked address, not the host name: nothing is re-resolved behind the guard.
        let uri: Uri = format!("http://{}{path}", target.addr)
            .parse()
            .with_context(|| format!("invalid gRPC path {path:?}"))?;
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        if let Some(credential) = credential {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {credential}")).map_err(|_| {
                    anyhow::anyhow!(
                        "the credential is not a valid metadata value (visible ASCII only)"
                    )
                })?;
            // Never indexed by HPACK, as tonic does for sensitive metadata.
            value.set_sensitive(true);
            headers.insert("authorization", value);
        }
        let length = u32::try_from(message.len()).context("request message too large")?;
        let mut frame = BytesMut::with_capacity(5 + message.len());
        frame.put_u8(0);
        frame.put_u32(length);
        frame.put_slice(message);
        Ok(Self {
            uri,
            headers,
            frame: frame.freeze(),
            expect,
        })
    }

    fn request(&self) -> Request<()> {
        let mut request = Request::new(());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }

    /// Checks a response message.
    fn check(&self, message: &[u8]) -> Result<(), String> {
        match &self.expect {
            Expect::Any => Ok(()),
            Expect::Exact(expected) if message == expected.as_slice() => Ok(()),
            // Not shown: a response message may hold a token (`GetAccessToken`).
            Expect::Exact(_) => Err(format!(
                "response message ({} bytes) differs from the expected one",
                message.len()
            )),
            Expect::Serving => {
                let response = tonic_health::pb::HealthCheckResponse::decode(message)
                    .map_err(|e| format!("undecodable HealthCheckResponse: {e}"))?;
                use tonic_health::pb::health_check_response::ServingStatus;
                match ServingStatus::try_from(response.status) {
                    Ok(ServingStatus::Serving) => Ok(()),
                    Ok(other) => Err(format!("health status {}", other.as_str_name())),
                    Err(_) => Err(format!("unknown health status {}", response.status)),
                }
            }
            Expect::Active(expected) => {
                let response = mcpauth_proto::v1::IntrospectResponse::decode(message)
                    .map_err(|e| format!("undecodable IntrospectResponse: {e}"))?;
                if response.active == *expected {
                    Ok(())
                } else {
                    Err(format!(
                        "introspection answered active={}, expected active={expected}",
                        response.active
                    ))
                }
            }
            Expect::AccessToken => {
                let response = mcpauth_proto::v1::GetAccessTokenResponse::decode(message)
                    .map_err(|e| format!("undecodable GetAccessTokenResponse: {e}"))?;
                if response.access_token.is_empty() {
                    Err("GetAccessToken answered an empty access token".into())
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Parses hex digits (whitespace allowed between bytes) into bytes.
pub fn parse_hex(text: &str) -> Result<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        bail!("odd number of hex digits");
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).unwrap_or("??");
            u8::from_str_radix(pair, 16).with_context(|| format!("invalid hex byte {pair:?}"))
        })
        .collect()
}

/// Encodes `N=VALUE` arguments as protobuf string/bytes fields (wire type 2), in order.
pub fn encode_string_fields(fields: &[String]) -> Result<Vec<u8>> {
    let mut message = Vec::new();
    for field in fields {
        let (number, value) = field
            .split_once('=')
            .with_context(|| format!("field {field:?} is not of the form NUMBER=VALUE"))?;
        let number: u32 = number
            .parse()
            .ok()
            .filter(|n| (1..=536_870_911).contains(n) && !(19_000..=19_999).contains(n))
            .with_context(|| format!("invalid field number in {field:?}"))?;
        prost::encoding::string::encode(number, &value.to_owned(), &mut message);
    }
    Ok(message)
}

/// An HTTP/2 connection: the handle that opens streams and the task-less connection future
/// that must be polled for anything to move.
pub type H2Conn = (SendRequest<Bytes>, Connection<TcpStream, Bytes>);

/// Connects and performs the HTTP/2 handshake (prior knowledge, no TLS).
pub async fn connect(addr: SocketAddr) -> Result<H2Conn, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    tcp.set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY on {addr}: {e}"))?;
    h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake(tcp)
        .await
        .map_err(|e| format!("HTTP/2 handshake with {addr}: {e}"))
}

/// Drives one connection with up to `streams` calls in flight until the budget is spent and
/// every started call has completed, failed or timed out; reconnects if the server closes it.
pub async fn drive(
    spec: Arc<UnarySpec>,
    addr: SocketAddr,
    first: H2Conn,
    streams: usize,
    budget: Arc<Budget>,
    timeout: Duration,
) -> WorkerStats {
    let mut stats = WorkerStats::new();
    let mut next = Some(first);
    loop {
        let (client, connection) = match next.take() {
            Some(conn) => conn,
            None => match connect(addr).await {
                Ok(conn) => conn,
                Err(e) => {
                    // One request of the budget per failed attempt: a server that went away
                    // ends the run with errors instead of a spin.
                    if !budget.take(Instant::now()) {
                        break;
                    }
                    stats.failure(|| e);
                    continue;
                }
            },
        };
        let mut connection = std::pin::pin!(connection);
        // Why the connection ended, once it has.
        let mut ended: Option<String> = None;
        let mut inflight = FuturesUnordered::new();
        let now = Instant::now();
        while inflight.len() < streams && budget.take(now) {
            inflight.push(call(client.clone(), &spec, now, timeout));
        }
        if inflight.is_empty() {
            break;
        }
        loop {
            tokio::select! {
                biased;
                result = &mut connection, if ended.is_none() => {
                    ended = Some(match result {
                        Ok(()) => "the server closed the connection".to_owned(),
                        Err(e) => format!("HTTP/2 connection: {e}"),
                    });
                }
                done = inflight.next() => {
                    let Some((started, outcome)) = done else { break };
                    let end = Instant::now();
                    match outcome {
                        Ok(()) => stats.success(end - started),
                        Err(e) => stats.failure(|| e),
                    }
                    // One clock read per call: the end of one is the start of the next.
                    if ended.is_none() && budget.take(end) {
                        inflight.push(call(client.clone(), &spec, end, timeout));
                    }
                }
            }
        }
        if ended.is_none() {
            break; // the budget is spent and everything answered
        }
    }
    stats
}

/// One call with its start time and timeout.
async fn call(
    client: SendRequest<Bytes>,
    spec: &UnarySpec,
    started: Instant,
    timeout: Duration,
) -> (Instant, Result<(), String>) {
    let outcome = match tokio::time::timeout(timeout, unary(client, spec)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    };
    (started, outcome)
}

fn h2_error(what: &str, e: &h2::Error) -> String {
    format!("{what}: {e}")
}

/// Sends the request and checks the whole response.
async fn unary(client: SendRequest<Bytes>, spec: &UnarySpec) -> Result<(), String> {
    let mut client = client
        .ready()
        .await
        .map_err(|e| h2_error("opening a stream", &e))?;
    let (response, mut send) = client
        .send_request(spec.request(), false)
        .map_err(|e| h2_error("sending the request", &e))?;
    send.send_data(spec.frame.clone(), true)
        .map_err(|e| h2_error("sending the request message", &e))?;
    let response = response
        .await
        .map_err(|e| h2_error("awaiting the response", &e))?;
    let (head, mut body) = response.into_parts();
    if head.status != StatusCode::OK {
        return Err(format!("HTTP status {}", head.status));
    }
    if head.headers.contains_key("grpc-status") {
        // A trailers-only response: an error, or a unary success without its message.
        check_status(&head.headers)?;
        return Err("grpc-status 0 without a response message".into());
    }
    // Usually the whole framed message arrives in one DATA frame: keep it without copying.
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| h2_error("reading the response", &e))?;
        body.flow_control()
            .release_capacity(chunk.len())
            .map_err(|e| h2_error("flow control", &e))?;
        if first.is_none() && joined.is_empty() {
            first = Some(chunk);
        } else {
            if let Some(f) = first.take() {
                joined.extend_from_slice(&f);
            }
            joined.extend_from_slice(&chunk);
            if joined.len() > MAX_MESSAGE + 5 {
                return Err(format!("response larger than {MAX_MESSAGE} bytes"));
            }
        }
    }
    let trailers = body
        .trailers()
        .await
        .map_err(|e| h2_error("reading the trailers", &e))?
        .ok_or("response without trailers (no grpc-status)")?;
    check_status(&trailers)?;
    let data = match &first {
        Some(f) => &f[..],
        None => &joined[..],
    };
    spec.check(unframe(data)?)
}

/// Accepts `grpc-status: 0`; describes anything else without echoing request metadata.
fn check_status(headers: &HeaderMap) -> Result<(), String> {
    match headers.get("grpc-status").map(HeaderValue::as_bytes) {
        Some(b"0") => Ok(()),
        Some(code) => {
            let code = String::from_utf8_lossy(code);
            let message = headers
                .get("grpc-message")
                .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                .unwrap_or_default();
            Err(format!(
                "gRPC status {code} ({}): {message}",
                code_name(&code)
            ))
        }
        None => Err("trailers without grpc-status".into()),
    }
}

fn code_name(code: &str) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "Cancelled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    code.parse::<usize>()
        .ok()
        .and_then(|n| NAMES.get(n).copied())
        .unwrap_or("not a gRPC code")
}

/// The single message of a unary response body (uncompressed, as requested).
fn unframe(data: &[u8]) -> Result<&[u8], String> {
    let Some((prefix, rest)) = data.split_first_chunk::<5>() else {
        return Err(format!(
            "response body of {} bytes has no message",
            data.len()
        ));
    };
    if prefix[0] != 0 {
        return Err(format!(
            "compressed or unknown message flag {} (no compression was offered)",
            prefix[0]
        ));
    }
    let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if rest.len() != length {
        return Err(format!(
            "response message framed as {length} bytes, body holds {}",
            rest.len()
        ));
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use mcpauth_proto::v1::token_introspection_server::{
        TokenIntrospection, TokenIntrospectionServer,
    };
    use mcpauth_proto::v1::{IntrospectRequest, IntrospectResponse};
    use tokio::net::TcpListener;
    use tonic::transport::server::TcpIncoming;

    use super::*;
    use crate::run::{Limits, run_drivers};

    /// Active iff the caller presents `Bearer cred` and the token is `good`.
    struct FakeIntrospection;

    #[tonic::async_trait]
    impl TokenIntrospection for FakeIntrospection {
        async fn introspect(
            &self,
            request: tonic::Request<IntrospectRequest>,
        ) -> Result<tonic::Response<IntrospectResponse>, tonic::Status> {
            let authorization = request.metadata().get("authorization");
            if authorization.map(|v| v.as_bytes()) != Some(b"Bearer cred".as_slice()) {
                return Err(tonic::Status::unauthenticated("bad service credential"));
            }
            Ok(tonic::Response::new(IntrospectResponse {
                active: request.get_ref().token == "good",
                subject: "user-1".into(),
                ..Default::default()
            }))
        }

        async fn exchange(
            &self,
            _request: tonic::Request<mcpauth_proto::v1::ExchangeRequest>,
        ) -> Result<tonic::Response<mcpauth_proto::v1::ExchangeResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not measured here"))
        }
    }

    /// A tonic server (health SERVING and the fake introspection) on 127.0.0.1.
    async fn server() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .add_service(TokenIntrospectionServer::new(FakeIntrospection))
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        crate::target::resolve(&url).await.unwrap()
    }

    async fn load(
        target: &Target,
        spec: UnarySpec,
        connections: usize,
        streams: usize,
        requests: u64,
    ) -> (u64, u64, Option<String>) {
        let spec = Arc::new(spec);
        let mut conns = Vec::new();
        for _ in 0..connections {
            conns.push(Some(connect(target.addr).await.unwrap()));
        }
        let limits = Limits {
            duration: Duration::from_secs(20),
            requests,
            timeout: Duration::from_secs(5),
        };
        let addr = target.addr;
        let (stats, elapsed) = run_drivers(connections, limits, |i, budget| {
            drive(
                Arc::clone(&spec),
                addr,
                conns[i].take().unwrap(),
                streams,
                budget,
                limits.timeout,
            )
        })
        .await
        .unwrap();
        let first = stats.summarize("t", elapsed, connections).first_error;
        (stats.successes(), stats.errors(), first)
    }

    fn introspect(target: &Target, credential: &str, token: &str, active: bool) -> UnarySpec {
        let message = IntrospectRequest {
            token: token.into(),
            expected_resource: String::new(),
        }
        .encode_to_vec();
        UnarySpec::new(
            target,
            "/mcpauth.v1.TokenIntrospection/Introspect",
            &message,
            Some(credential),
            Expect::Active(active),
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn introspection_answers_are_checked() {
        let t = server().await;
        let ok = load(&t, introspect(&t, "cred", "good", true), 2, 16, 500).await;
        assert_eq!(ok, (500, 0, None));
        let inactive = load(&t, introspect(&t, "cred", "forged", false), 1, 4, 50).await;
        assert_eq!(inactive, (50, 0, None));

        let (good, bad, first) = load(&t, introspect(&t, "cred", "forged", true), 1, 4, 50).await;
        assert_eq!((good, bad), (0, 50));
        assert_eq!(
            first.as_deref(),
            Some("introspection answered active=false, expected active=true")
        );
        let (good, bad, first) = load(&t, introspect(&t, "wrong", "good", true), 1, 4, 50).await;
        assert_eq!((good, bad), (0, 50));
        let first = first.unwrap();
        assert!(
            first.starts_with("gRPC status 16 (Unauthenticated)"),
            "{first}"
        );
        assert!(!first.contains("wrong"), "{first}");
    }

    #[tokio::test]
    async fn health_and_generic_calls() {
        let t = server().await;
        let health = |service: &str, expect| {
            let message = tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            }
            .encode_to_vec();
            UnarySpec::new(&t, "/grpc.health.v1.Health/Check", &message, None, expect).unwrap()
        };
        assert_eq!(
            load(&t, health("", Expect::Serving), 1, 8, 200).await,
            (200, 0, None)
        );
        // SERVING is the message 08 01; anything else is an error.
        assert_eq!(
            load(&t, health("", Expect::Exact(vec![8, 1])), 2, 3, 30).await,
            (30, 0, None)
        );
        let (_, bad, first) = load(&t, health("", Expect::Exact(vec![8, 2])), 1, 1, 3).await;
        assert_eq!(bad, 3);
        assert_eq!(
            first.as_deref(),
            Some("response message (2 bytes) differs from the expected one")
        );
        let (_, bad, first) = load(&t, health("no.such.Service", Expect::Any), 1, 2, 10).await;
        assert_eq!(bad, 10);
        assert!(first.unwrap().starts_with("gRPC status 5 (NotFound)"));

        let message = encode_string_fields(&["1=good".into()]).unwrap();
        let generic = UnarySpec::new(
            &t,
            "/mcpauth.v1.TokenIntrospection/Introspect",
            &message,
            Some("cred"),
            Expect::Any,
        )
        .unwrap();
        assert_eq!(load(&t, generic, 1, 4, 40).await, (40, 0, None));
        let missing = UnarySpec::new(&t, "/no.Such/Method", &[], None, Expect::Any).unwrap();
        let (_, bad, first) = load(&t, missing, 1, 1, 2).await;
        assert_eq!(bad, 2);
        assert!(first.unwrap().starts_with("gRPC status 12 (Unimplemented)"));
    }

    #[tokio::test]
    async fn a_server_that_goes_away_yields_errors_not_a_hang() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let t = crate::target::resolve(&url).await.unwrap();
        // Accepts one connection, answers nothing and closes it; then nothing listens.
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(stream);
        });
        let spec = UnarySpec::new(&t, "/a.B/C", &[], None, Expect::Any).unwrap();
        let started = Instant::now();
        let (good, bad, first) = load(&t, spec, 1, 4, 20).await;
        server.await.unwrap();
        assert_eq!((good, bad), (0, 20));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(first.is_some());
    }

    #[test]
    fn request_encoding_and_validation() {
        let t = Target {
            addr: "127.0.0.1:9090".parse().unwrap(),
            uri: "http://localhost:9090".parse().unwrap(),
        };
        let message = encode_string_fields(&["1=tok".into(), "2=github".into()]).unwrap();
        assert_eq!(message, b"\x0a\x03tok\x12\x06github");
        assert!(encode_string_fields(&["x=1".into()]).is_err());
        assert!(encode_string_fields(&["0=a".into()]).is_err());
        assert!(encode_string_fields(&["19000=a".into()]).is_err());
        assert_eq!(parse_hex("0a 03 74").unwrap(), vec![0x0a, 3, 0x74]);
        assert!(parse_hex("0a0").is_err() && parse_hex("zz").is_err());

        let spec = UnarySpec::new(&t, "/p.S/M", &message, Some("s3cret"), Expect::Any).unwrap();
        assert_eq!(&spec.frame[..5], &[0, 0, 0, 0, 13]);
        assert_eq!(&spec.frame[5..], &message[..]);
        let request = spec.request();
        assert_eq!(request.uri(), "http://127.0.0.1:9090/p.S/M");
        let auth = &request.headers()["authorization"];
        assert!(auth.is_sensitive() && auth == "Bearer s3cret");
        let shown = format!("{spec:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("github"),
            "{shown}"
        );
        for bad in ["p.S/M", "/p.S", "/p.S/", "//M", "/p.S/M/x"] {
            assert!(
                UnarySpec::new(&t, bad, &[], None, Expect::Any).is_err(),
                "{bad}"
            );
        }
        assert!(UnarySpec::new(&t, "/p.S/M", &[], Some("a\nb"), Expect::Any).is_err());

        let vault = |expect| UnarySpec::new(&t, "/p.S/M", &[], None, expect).unwrap();
        let token = mcpauth_proto::v1::GetAccessTokenResponse {
            access_token: "upstream".into(),
            ..Default::default()
        };
        assert_eq!(
            vault(Expect::AccessToken).check(&token.encode_to_vec()),
            Ok(())
        );
        let empty = mcpauth_proto::v1::GetAccessTokenResponse::default().encode_to_vec();
        assert_eq!(
            vault(Expect::AccessToken).check(&empty),
            Err("GetAccessToken answered an empty access token".into())
        );
        assert!(vault(Expect::AccessToken).check(&[0xff]).is_err());
        assert!(vault(Expect::Active(true)).check(&empty).is_err());

        assert_eq!(unframe(&[0, 0, 0, 0, 2, 8, 1]), Ok(&[8u8, 1][..]));
        assert!(unframe(&[0, 0, 0, 0, 3, 8, 1]).is_err());
        assert!(unframe(&[1, 0, 0, 0, 0]).is_err());
        assert!(unframe(&[0, 0]).is_err());
    }
}
