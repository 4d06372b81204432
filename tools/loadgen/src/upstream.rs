//! `serve-upstream`: a minimal upstream API for the connector benchmark. It answers every
//! HTTP/1.1 request (keep-alive, pipelining, `Content-Length` bodies) with 200 and a small JSON
//! body when `Authorization: Bearer <token>` carries exactly the configured upstream token
//! (compared in constant time), and 401 otherwise. It is deliberately cheap, so that a
//! benchmark of a connector tool measures mcp-service and token-vault rather than the upstream.
//! Loopback only; it stops after `--max-secs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted.
const MAX_BODY: usize = 1024 * 1024;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 47\r\n\r\n{\"ok\":true,\"source\":\"mcpauth-loadgen upstream\"}";
const UNAUTHORIZED: &[u8] = b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\nwww-authenticate: Bearer error=\"invalid_token\"\r\ncontent-length: 25\r\n\r\n{\"error\":\"invalid_token\"}";
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// Whether `a` and `b` are equal, in time independent of where they differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a complete request at the start of a buffer is.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// Head and body occupy `len` bytes; `authorized` says whether the bearer token matched.
    Complete { len: usize, authorized: bool },
    /// More bytes are needed.
    Partial,
    /// Not something this server serves (answered 400, then the connection is closed).
    Bad,
}

fn parse(buf: &[u8], expected: &[u8]) -> Request {
    let Some(head_len) = memmem::find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Request::Bad
        } else {
            Request::Partial
        };
    };
    let head = &buf[..head_len];
    let mut lines = head.split(|&b| b == b'\n');
    let request_line = lines.next().unwrap_or_default();
    if !request_line.ends_with(b"HTTP/1.1\r") && !request_line.ends_with(b"HTTP/1.1") {
        return Request::Bad;
    }
    let (mut body_len, mut authorized) = (0usize, false);
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            return Request::Bad;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            match std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                Some(n) if n <= MAX_BODY => body_len = n,
                _ => return Request::Bad,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Request::Bad;
        } else if name.eq_ignore_ascii_case(b"authorization") {
            authorized = value.len() > 7
                && value[..7].eq_ignore_ascii_case(b"bearer ")
                && ct_eq(value[7..].trim_ascii(), expected);
        }
    }
    let len = head_len + 4 + body_len;
    if buf.len() < len {
        return Request::Partial;
    }
    Request::Complete { len, authorized }
}

/// Serves one connection until the client closes it.
async fn serve(mut stream: TcpStream, token: Arc<[u8]>) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(16 * OK.len());
    let (mut start, mut end) = (0, 0);
    loop {
        if start == end {
            (start, end) = (0, 0);
        } else if buf.len() - end < 4096 {
            buf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
            if buf.len() - end < 4096 {
                buf.resize(buf.len() * 2, 0);
            }
        }
        match stream.read(&mut buf[end..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => end += n,
        }
        out.clear();
        let mut close = false;
        while start < end {
            match parse(&buf[start..end], &token) {
                Request::Partial => break,
                Request::Complete { len, authorized } => {
                    out.extend_from_slice(if authorized { OK } else { UNAUTHORIZED });
                    start += len;
                }
                Request::Bad => {
                    out.extend_from_slice(BAD_REQUEST);
                    close = true;
                    break;
                }
            }
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
        if close {
            return;
        }
    }
}

/// Listens on `addr` (loopback only) for `max` and serves every connection. Prints
/// `ready http://ADDR` on stdout once listening.
pub async fn run(addr: SocketAddr, token: String, max: Duration) -> Result<()> {
    if !crate::target::is_loopback_ip(addr.ip()) {
        bail!("--addr must be a loopback address");
    }
    if token.is_empty() {
        bail!("the upstream token must not be empty");
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    println!("ready http://{}", listener.local_addr()?);
    let token: Arc<[u8]> = Arc::from(token.into_bytes());
    let deadline = tokio::time::sleep(max);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(serve(stream, Arc::clone(&token)));
                }
            }
            () = &mut deadline => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_parsed_and_the_token_checked() {
        let t = b"up-tok";
        let get = b"GET /api/item HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer up-tok\r\n\r\n";
        assert_eq!(
            parse(get, t),
            Request::Complete {
                len: get.len(),
                authorized: true
            }
        );
        let wrong = b"GET / HTTP/1.1\r\nauthorization: bearer up-tok2\r\n\r\n";
        assert!(matches!(
            parse(wrong, t),
            Request::Complete {
                authorized: false,
                ..
            }
        ));
        let none = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
        assert!(matches!(
            parse(none, t),
            Request::Complete {
                authorized: false,
                ..
            }
        ));
        let post =
            b"POST /a HTTP/1.1\r\nauthorization: Bearer up-tok\r\ncontent-length: 4\r\n\r\nab";
        assert_eq!(parse(post, t), Request::Partial);
        let mut full = post.to_vec();
        full.extend_from_slice(b"cdGET");
        assert_eq!(
            parse(&full, t),
            Request::Complete {
                len: post.len() + 2,
                authorized: true
            }
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\nhost", t), Request::Partial);
        let chunked = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(parse(chunked, t), Request::Bad);
        assert_eq!(parse(b"GET / HTTP/1.0\r\n\r\n", t), Request::Bad);
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"ab"));
    }

    #[tokio::test]
    async fn answers_pipelined_requests_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            serve(s, Arc::from(&b"tok"[..])).await;
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nauthorization: Bearer tok\r\n\r\nGET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let want = OK.len() + UNAUTHORIZED.len();
        while got.len() < want {
            let mut b = [0u8; 1024];
            let n = c.read(&mut b).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(&got[..OK.len()], OK);
        assert_eq!(&got[OK.len()..], UNAUTHORIZED);
    }
}
