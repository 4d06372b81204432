//! HTTP/1.1 load: one keep-alive connection per worker, driven with hyper's connection-level
//! client (no pool, no redirects, no TLS), each response body read to the end.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::run::Probe;
use crate::target::Target;

/// What every request of a run looks like.
#[derive(Debug)]
pub struct RequestSpec {
    addr: SocketAddr,
    method: Method,
    /// Origin-form (`/path?query`), as sent on the request line.
    path: Uri,
    headers: HeaderMap,
    body: Bytes,
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
    /// Builds the request template. `method` defaults to `POST` when there is a body and `GET`
    /// otherwise; `headers` are `Name: value` strings; `expect` is the only status that counts
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
        let path: Uri = target
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .parse()
            .context("invalid request path")?;

        let mut map = HeaderMap::new();
        for line in headers {
            let (name, value) = parse_header(line)?;
            map.append(name, value);
        }
        if !map.contains_key(HOST) {
            let authority = target.uri.authority().context("URL has no host")?;
            map.insert(HOST, HeaderValue::from_str(authority.as_str())?);
        }
        let body = match payload {
            Payload::None => Bytes::new(),
            Payload::Raw(s) => Bytes::from(s),
            Payload::Form(s) => {
                if !map.contains_key(CONTENT_TYPE) {
                    map.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/x-www-form-urlencoded"),
                    );
                }
                Bytes::from(s)
            }
        };
        let expect = expect
            .map(StatusCode::from_u16)
            .transpose()
            .context("invalid --expect-status")?;
        Ok(Self {
            addr: target.addr,
            method,
            path,
            headers: map,
            body,
            expect,
        })
    }

    /// A fresh copy of the request (cheap: the body is reference-counted).
    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.path.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }

    /// Opens a new keep-alive connection.
    async fn connect(&self) -> Result<Conn, String> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect to {}: {e}", self.addr))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("set TCP_NODELAY: {e}"))?;
        let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {}: {e}", self.addr))?;
        Ok(Conn {
            sender,
            driver: Box::pin(driver),
        })
    }

    /// Whether `status` counts as a success.
    fn accepts(&self, status: StatusCode) -> bool {
        match self.expect {
            Some(expected) => status == expected,
            None => status.is_success(),
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

/// A keep-alive HTTP/1.1 connection. Its I/O (`driver`) is polled by the worker's own task
/// while a request is in flight rather than by a task of its own: no cross-task wake-ups per
/// request, which is most of the client's cost on a loaded 2-core machine.
/// The driver is boxed so that moving a `Conn` in and out of each request's future is cheap.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
}

/// Why an exchange did not produce a response.
enum ExchangeError {
    /// The connection was closed before the request was written: safe to retry elsewhere.
    Unsent(Box<Request<Full<Bytes>>>),
    /// The request failed (or its fate is unknown).
    Failed(String),
}

impl Conn {
    /// Sends `req` and reads the response to its end, driving the connection meanwhile.
    /// Returns the status and the connection, if it can carry another request.
    async fn exchange(
        self,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Option<Self>), ExchangeError> {
        let Conn { sender, mut driver } = self;
        let exchange = send_and_drain(sender, req);
        tokio::pin!(exchange);
        let ended = tokio::select! {
            biased;
            done = &mut exchange => {
                let (status, sender) = done?;
                return Ok((status, Some(Conn { sender, driver })));
            }
            ended = driver.as_mut() => ended,
        };
        // The connection ended first: closed by the server (possibly right after delivering
        // this very response, e.g. with `Connection: close`) or broken. Dropping its state
        // resolves the pending request: complete if its response was fully read, handed back
        // if it was never written, failed otherwise.
        drop(driver);
        match exchange.await {
            Ok((status, _)) => Ok((status, None)),
            Err(ExchangeError::Unsent(req)) => Err(ExchangeError::Unsent(req)),
            Err(ExchangeError::Failed(e)) => Err(ExchangeError::Failed(match ended {
                Err(cause) => format!("{e} (connection: {cause})"),
                Ok(()) => e,
            })),
        }
    }
}

/// The request half of an exchange: waits for the connection to be ready, sends, drains.
async fn send_and_drain(
    mut sender: SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, SendRequest<Full<Bytes>>), ExchangeError> {
    if sender.ready().await.is_err() {
        return Err(ExchangeError::Unsent(Box::new(req)));
    }
    let response = sender
        .try_send_request(req)
        .await
        .map_err(|mut e| match e.take_message() {
            Some(req) => ExchangeError::Unsent(Box::new(req)),
            None => ExchangeError::Failed(format!("request failed: {}", e.into_error())),
        })?;
    let status = response.status();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame.map_err(|e| ExchangeError::Failed(format!("reading the response body: {e}")))?;
    }
    Ok((status, sender))
}

/// One worker and its connection.
pub struct HttpProbe {
    spec: Arc<RequestSpec>,
    /// `None` while a request is in flight or after the connection was lost.
    conn: Option<Conn>,
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
        // Taken out for the duration of the call: if the call is abandoned (timeout), the
        // connection is dropped with it and the next call starts on a new one.
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => spec.connect().await?,
        };
        let (status, conn) = match conn.exchange(spec.request()).await {
            Ok(done) => done,
            // The server closed the connection between requests (keep-alive limit,
            // `Connection: close`): retry once on a new one.
            Err(ExchangeError::Unsent(req)) => match spec.connect().await?.exchange(*req).await {
                Ok(done) => done,
                Err(ExchangeError::Unsent(_)) => {
                    return Err("the connection closed before the request was sent".into());
                }
                Err(ExchangeError::Failed(e)) => return Err(e),
            },
            Err(ExchangeError::Failed(e)) => return Err(e),
        };
        self.conn = conn;
        if spec.accepts(status) {
            Ok(())
        } else {
            Err(match spec.expect {
                Some(expected) => format!("status {status}, expected {}", expected.as_u16()),
                None => format!("status {status}, expected 2xx"),
            })
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
        let req = spec.request();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri().to_string(), "/oauth/token?x=1");
        assert_eq!(req.headers()[HOST], "localhost:8080");
        assert_eq!(req.headers()["authorization"], "Basic abc");
        assert_eq!(req.headers()["x-a"], "1");
        assert_eq!(
            req.headers()[CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        assert!(spec.accepts(StatusCode::OK));
        assert!(!spec.accepts(StatusCode::CREATED));

        let get = RequestSpec::new(&t, None, &[], Payload::None, None).unwrap();
        assert_eq!(get.request().method(), Method::GET);
        assert!(get.accepts(StatusCode::NO_CONTENT));
        assert!(!get.accepts(StatusCode::UNAUTHORIZED));
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
