//! HTTP/1.1 load: one keep-alive connection per worker, each request pre-serialized once and
//! written in one go, each response read to its end by the minimal client in [`crate::h1`]
//! (no pool, no redirects, no TLS).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::h1::{ExchangeError, H1Conn};
use crate::run::Probe;
use crate::target::Target;

/// What every request of a run looks like.
#[derive(Debug)]
pub struct RequestSpec {
    /// The checked loopback address.
    pub(crate) addr: SocketAddr,
    /// The complete request as written on the wire.
    pub(crate) wire: Vec<u8>,
    /// Whether the method is `HEAD` (whose responses have no body).
    pub(crate) head_request: bool,
    expect: Option<StatusCode>,
}

/// Body of the requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// No body.
    None,
    /// A raw body, sent as given.
    Raw(String),
    /// An `application/x-www-form-urlencoded` body, already encoded (`a=1&b=x%20y`).
    Form(String),
}

impl RequestSpec {
    /// Builds the request. `method` defaults to `POST` when there is a body and `GET`
    /// otherwise; `headers` are `Name: value` strings (not `Content-Length` or
    /// `Transfer-Encoding`: the body is framed here); `expect` is the only status that counts
    /// as a success (any 2xx when `None`).
    pub fn new(
        target: &Target,
        method: Option<&str>,
        headers: &[String],
        payload: Payload,
        expect: Option<u16>,
    ) -> Result<Self> {
        let method = match method {
            Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .with_context(|| format!("invalid method {m:?}"))?,
            None if payload == Payload::None => Method::GET,
            None => Method::POST,
        };
        let path = target.uri.path_and_query().map_or("/", |pq| pq.as_str());

        let mut map = HeaderMap::new();
        for line in headers {
            let (name, value) = parse_header(line)?;
            if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
                bail!("header {name} is set by the tool from --body/--form");
            }
            map.append(name, value);
        }
        if !map.contains_key(HOST) {
            let authority = target.uri.authority().context("URL has no host")?;
            map.insert(HOST, HeaderValue::from_str(authority.as_str())?);
        }
        let body = match payload {
            Payload::None => String::new(),
            Payload::Raw(s) => s,
            Payload::Form(s) => {
                if !map.contains_key(CONTENT_TYPE) {
                    map.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/x-www-form-urlencoded"),
                    );
                }
                s
            }
        };
        if !body.is_empty() || [Method::POST, Method::PUT, Method::PATCH].contains(&method) {
            map.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        }

        let mut wire = Vec::with_capacity(256 + body.len());
        wire.extend_from_slice(format!("{method} {path} HTTP/1.1\r\n").as_bytes());
        for (name, value) in &map {
            wire.extend_from_slice(name.as_str().as_bytes());
            wire.extend_from_slice(b": ");
            wire.extend_from_slice(value.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(body.as_bytes());

        let expect = expect
            .map(StatusCode::from_u16)
            .transpose()
            .context("invalid --expect-status")?;
        Ok(Self {
            addr: target.addr,
            wire,
            head_request: method == Method::HEAD,
            expect,
        })
    }

    /// Opens a new keep-alive connection.
    async fn connect(&self) -> Result<H1Conn, String> {
        H1Conn::connect(self.addr)
            .await
            .map_err(|e| format!("connect to {}: {e}", self.addr))
    }

    /// Whether `status` counts as a success.
    pub(crate) fn accepts(&self, status: u16) -> bool {
        match self.expect {
            Some(expected) => status == expected.as_u16(),
            None => (200..300).contains(&status),
        }
    }

    /// Describes an unexpected status.
    pub(crate) fn unexpected(&self, status: u16) -> String {
        let shown =
            StatusCode::from_u16(status).map_or_else(|_| status.to_string(), |s| s.to_string());
        match self.expect {
            Some(expected) => format!("status {shown}, expected {}", expected.as_u16()),
            None => format!("status {shown}, expected 2xx"),
        }
    }
}

/// Parses a `Name: value` header argument.
pub fn parse_header(line: &str) -> Result<(HeaderName, HeaderValue)> {
    let Some((name, value)) = line.split_once(':') else {
        bail!("header {line:?} is not of the form 'Name: value'");
    };
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .with_context(|| format!("invalid header name in {line:?}"))?;
    let value = HeaderValue::from_str(value.trim())
        .with_context(|| format!("invalid header value in {line:?}"))?;
    Ok((name, value))
}

/// One worker and its connection.
pub struct HttpProbe {
    spec: Arc<RequestSpec>,
    /// `None` after the connection was closed or lost (and while a call is in flight, so that
    /// a call abandoned on timeout leaves no half-read connection behind).
    conn: Option<H1Conn>,
}

impl HttpProbe {
    /// Connects a worker (before the clock starts, so connection setup is not measured).
    pub async fn connect(spec: Arc<RequestSpec>) -> Result<Self> {
        let conn = spec.connect().await.map_err(anyhow::Error::msg)?;
        Ok(Self {
            spec,
            conn: Some(conn),
        })
    }
}

impl Probe for HttpProbe {
    async fn call(&mut self) -> Result<(), String> {
        let spec = &*self.spec;
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => spec.connect().await?,
        };
        let answer = match conn.exchange(&spec.wire, spec.head_request).await {
            Ok(answer) => answer,
            // The server had closed the idle connection: retry once on a new one.
            Err(ExchangeError::Stale(_)) => {
                conn = spec.connect().await?;
                match conn.exchange(&spec.wire, spec.head_request).await {
                    Ok(answer) => answer,
                    Err(ExchangeError::Stale(e) | ExchangeError::Failed(e)) => return Err(e),
                }
            }
            Err(ExchangeError::Failed(e)) => return Err(e),
        };
        if answer.reusable {
            self.conn = Some(conn);
        }
        if spec.accepts(answer.status) {
            Ok(())
        } else {
            Err(spec.unexpected(answer.status))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::run::{Limits, run};

    /// A raw HTTP/1.1 server on 127.0.0.1: answers every request on a connection with
    /// `response`, and closes the connection after `per_connection` requests.
    async fn raw_server(response: &'static str, per_connection: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 4096];
                    let mut served = 0;
                    while served < per_connection {
                        // Serve every complete request (head + Content-Length body) buffered.
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head =
                                String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
                            let body_len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse().unwrap());
                            if pending.len() < end + 4 + body_len {
                                break;
                            }
                            pending.drain(..end + 4 + body_len);
                            if stream.write_all(response.as_bytes()).await.is_err() {
                                return;
                            }
                            served += 1;
                            if served == per_connection {
                                return;
                            }
                        }
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    }
                });
            }
        });
        format!("http://{addr}/bench")
    }

    async fn load(
        url: &str,
        expect: Option<u16>,
        workers: usize,
        requests: u64,
    ) -> (u64, u64, Option<String>) {
        let spec = Arc::new(
            RequestSpec::new(
                &target(url).await,
                None,
                &[],
                Payload::Form("a=1".into()),
                expect,
            )
            .unwrap(),
        );
        let mut probes = Vec::new();
        for _ in 0..workers {
            probes.push(HttpProbe::connect(Arc::clone(&spec)).await.unwrap());
        }
        let limits = Limits {
            duration: Duration::from_secs(20),
            requests,
            timeout: Duration::from_secs(2),
        };
        let (stats, elapsed) = run(probes, limits).await.unwrap();
        let summary = stats.summarize("t", elapsed, workers);
        (stats.successes(), stats.errors(), summary.first_error)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    #[tokio::test]
    async fn keep_alive_requests_all_succeed() {
        let url = raw_server(OK, usize::MAX).await;
        assert_eq!(load(&url, Some(200), 4, 400).await, (400, 0, None));
    }

    #[tokio::test]
    async fn connection_close_is_followed_by_a_reconnect_not_an_error() {
        let url = raw_server(
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
            1,
        )
        .await;
        assert_eq!(load(&url, None, 2, 50).await, (50, 0, None));
    }

    #[tokio::test]
    async fn chunked_bodies_are_read_to_the_end() {
        let url = raw_server(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            usize::MAX,
        )
        .await;
        assert_eq!(load(&url, None, 2, 100).await, (100, 0, None));
    }

    #[tokio::test]
    async fn unexpected_statuses_are_errors() {
        let url = raw_server(
            "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n",
            usize::MAX,
        )
        .await;
        let (ok, errors, first) = load(&url, None, 2, 10).await;
        assert_eq!((ok, errors), (0, 10));
        assert_eq!(
            first.as_deref(),
            Some("status 401 Unauthorized, expected 2xx")
        );
        let url = raw_server(OK, usize::MAX).await;
        let (_, errors, first) = load(&url, Some(204), 1, 3).await;
        assert_eq!(errors, 3);
        assert_eq!(first.as_deref(), Some("status 200 OK, expected 204"));
    }

    #[tokio::test]
    async fn a_server_that_goes_away_yields_errors_not_a_hang() {
        // Serves one request per connection, then stops accepting altogether.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let spec = Arc::new(
            RequestSpec::new(&target(&url).await, None, &[], Payload::None, None).unwrap(),
        );
        let accept = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await.unwrap();
            stream.write_all(OK.as_bytes()).await.unwrap();
            // The listener and the connection are dropped here.
        });
        let probe = HttpProbe::connect(spec).await.unwrap();
        let limits = Limits {
            duration: Duration::from_secs(20),
            requests: 5,
            timeout: Duration::from_secs(2),
        };
        let (stats, elapsed) = run(vec![probe], limits).await.unwrap();
        accept.await.unwrap();
        assert_eq!((stats.successes(), stats.errors()), (1, 4));
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        let first = stats.summarize("t", elapsed, 1).first_error.unwrap();
        assert!(first.contains("connect to"), "{first}");
    }

    async fn target(url: &str) -> Target {
        crate::target::resolve(url).await.unwrap()
    }

    #[tokio::test]
    async fn request_template() {
        let t = target("http://localhost:8080/oauth/token?x=1").await;
        let spec = RequestSpec::new(
            &t,
            None,
            &["Authorization: Basic abc".into(), "x-a:1".into()],
            Payload::Form("grant_type=client_credentials".into()),
            Some(200),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(spec.wire.clone()).unwrap(),
            "POST /oauth/token?x=1 HTTP/1.1\r\n\
             authorization: Basic abc\r\n\
             x-a: 1\r\n\
             host: localhost:8080\r\n\
             content-type: application/x-www-form-urlencoded\r\n\
             content-length: 29\r\n\
             \r\n\
             grant_type=client_credentials"
        );
        assert!(spec.accepts(200));
        assert!(!spec.accepts(201));
        assert!(!spec.head_request);

        let get = RequestSpec::new(&t, None, &[], Payload::None, None).unwrap();
        assert_eq!(
            String::from_utf8(get.wire.clone()).unwrap(),
            "GET /oauth/token?x=1 HTTP/1.1\r\nhost: localhost:8080\r\n\r\n"
        );
        assert!(get.accepts(204));
        assert!(!get.accepts(401));
        assert_eq!(get.unexpected(401), "status 401 Unauthorized, expected 2xx");

        let post = RequestSpec::new(&t, Some("post"), &[], Payload::None, Some(201)).unwrap();
        assert!(
            String::from_utf8(post.wire)
                .unwrap()
                .ends_with("content-length: 0\r\n\r\n")
        );
        let head = RequestSpec::new(
            &t,
            Some("HEAD"),
            &["Host: other".into()],
            Payload::None,
            None,
        )
        .unwrap();
        assert!(head.head_request);
        assert_eq!(
            String::from_utf8(head.wire).unwrap(),
            "HEAD /oauth/token?x=1 HTTP/1.1\r\nhost: other\r\n\r\n"
        );
        for framing in ["Content-Length: 3", "transfer-encoding: chunked"] {
            assert!(RequestSpec::new(&t, None, &[framing.into()], Payload::None, None).is_err());
        }
    }

    #[test]
    fn header_arguments() {
        assert!(parse_header("no-colon").is_err());
        assert!(parse_header("bad name: x").is_err());
        let (n, v) = parse_header("Content-Type:  text/plain ").unwrap();
        assert_eq!(
            (n.as_str(), v.to_str().unwrap()),
            ("content-type", "text/plain")
        );
    }
}
