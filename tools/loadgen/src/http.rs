//! HTTP/1.1 load: one keep-alive connection per worker, driven with hyper's connection-level
//! client (no pool, no redirects, no TLS), each response body read to the end.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
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

    /// Opens a new keep-alive connection; its I/O is driven by a task of its own.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect to {}: {e}", self.addr))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("set TCP_NODELAY: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {}: {e}", self.addr))?;
        tokio::spawn(async move {
            // Its errors surface on the request that was in flight.
            let _ = connection.await;
        });
        Ok(sender)
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

/// One worker's connection.
pub struct HttpProbe {
    spec: Arc<RequestSpec>,
    /// `None` while a request is in flight or after the connection was lost.
    conn: Option<SendRequest<Full<Bytes>>>,
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
        let mut sender = match self.conn.take() {
            Some(mut s) => match s.ready().await {
                Ok(()) => s,
                // The server closed the idle connection (keep-alive limit, `Connection: close`).
                Err(_) => spec.connect().await?,
            },
            None => spec.connect().await?,
        };
        let response = match sender.try_send_request(spec.request()).await {
            Ok(response) => response,
            Err(mut e) => match e.take_message() {
                // Never written: the connection died in between. Retry once on a new one.
                Some(req) => {
                    sender = spec.connect().await?;
                    sender
                        .send_request(req)
                        .await
                        .map_err(|e| format!("request failed: {e}"))?
                }
                None => return Err(format!("request failed: {}", e.into_error())),
            },
        };
        let status = response.status();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| format!("reading the response body: {e}"))?;
        }
        self.conn = Some(sender);
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
    use super::*;

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
