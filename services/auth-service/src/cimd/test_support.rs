//! What the CIMD unit tests share: a configuration, and a minimal HTTP/1.1 server that serves
//! documents (or hangs).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{CimdError, ClientMetadataDocument, parse_document};
use crate::config::CimdConfig;

pub(super) fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub(super) fn cfg(dangerous: bool) -> CimdConfig {
    CimdConfig {
        enabled: true,
        timeout_ms: 3000,
        max_bytes: 5120,
        max_cache_secs: 3600,
        dangerous_allow_loopback: dangerous,
        queue_wait_ms: 1000,
        failure_cache_secs: 30,
        max_clients: 100,
        unused_client_ttl_secs: 0,
    }
}

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().expect(s)
}

// ---- a minimal HTTP/1.1 server for the fetch tests ----

type Handler = dyn Fn(&str, &str) -> Option<Vec<u8>> + Send + Sync;

pub(super) struct TestServer {
    pub(super) base: String,
    pub(super) hits: Arc<AtomicUsize>,
}

/// Serves `handler(path, base_url)`; `None` holds the connection open without answering.
pub(super) async fn serve(
    bind: &str,
    handler: impl Fn(&str, &str) -> Option<Vec<u8>> + Send + Sync + 'static,
) -> TestServer {
    let listener = TcpListener::bind((bind, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}");
    let hits = Arc::new(AtomicUsize::new(0));
    let handler: Arc<Handler> = Arc::new(handler);
    let (h, b) = (hits.clone(), base.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (handler, hits, base) = (handler.clone(), h.clone(), b.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                hits.fetch_add(1, Ordering::SeqCst);
                let req = String::from_utf8_lossy(&buf);
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_owned();
                match handler(&path, &base) {
                    Some(resp) => {
                        let _ = sock.write_all(&resp).await;
                        let _ = sock.shutdown().await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    TestServer { base, hits }
}

pub(super) fn response(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}

pub(super) fn json_ok(body: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(extra);
    response("200 OK", &h, body)
}

pub(super) fn doc(client_id: &str) -> Value {
    serde_json::json!({
        "client_id": client_id,
        "client_name": "Example MCP Client",
        "redirect_uris": ["http://127.0.0.1:33418/callback", "https://app.example.com/cb"],
        "scope": "mcp:tools",
        "logo_uri": "https://app.example.com/logo.png",
    })
}

/// A server whose every path answers with `f(url_of_that_path)`.
pub(super) async fn serve_docs(
    f: impl Fn(&str) -> Option<Vec<u8>> + Send + Sync + 'static,
) -> TestServer {
    serve("127.0.0.1", move |path, base| f(&format!("{base}{path}"))).await
}
pub(super) const URL: &str = "https://app.example.com/client.json";

pub(super) fn validate(v: Value) -> Result<ClientMetadataDocument, CimdError> {
    parse_document(URL, v.to_string().as_bytes())
}
