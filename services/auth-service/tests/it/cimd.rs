//! Client ID Metadata Documents against the running service (issue 12 item 5): what naming a
//! document URL at `/revoke`, `/introspect` or `/authorize` may cost the server. A local document
//! server stands in for the client's host (`cimd.dangerous_allow_loopback`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// A document server on 127.0.0.1: every path answers a valid document whose `client_id` is
/// `http://<Host header><path>`, except `/missing/…` (404). `version` goes into `client_name`.
/// Counts requests per first path segment.
struct DocServer {
    port: u16,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    version: Arc<AtomicUsize>,
}

impl DocServer {
    async fn start() -> DocServer {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let version = Arc::new(AtomicUsize::new(1));
        let (h, v) = (hits.clone(), version.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (hits, version) = (h.clone(), v.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 2048];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    let req = String::from_utf8_lossy(&buf).to_string();
                    let path = req.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let host = req
                        .lines()
                        .find_map(|l| {
                            l.split_once(':')
                                .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
                                .map(|(_, v)| v.trim().to_owned())
                        })
                        .unwrap_or_default();
                    let segment = path.split('/').nth(1).unwrap_or_default().to_owned();
                    *hits.lock().unwrap().entry(segment.clone()).or_default() += 1;
                    let resp = if segment == "missing" {
                        "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                            .to_owned()
                    } else {
                        let body = json!({
                            "client_id": format!("http://{host}{path}"),
                            "client_name": format!("Doc client v{}", version.load(Ordering::SeqCst)),
                            "redirect_uris": [REDIRECT],
                        })
                        .to_string();
                        format!(
                            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\n\
                             Cache-Control: no-store\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    };
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        DocServer {
            port,
            hits,
            version,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self, segment: &str) -> usize {
        self.hits.lock().unwrap().get(segment).copied().unwrap_or(0)
    }
}

fn cimd_options(extra: &[(&'static str, &str)]) -> Options {
    let mut env = vec![("MCPAUTH__CIMD__DANGEROUS_ALLOW_LOOPBACK", "true".to_owned())];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    Options {
        toml: String::new(),
        env,
    }
}

/// `POST /revoke` naming `client_id` (a public client): the cheapest way to make the server look
/// a client up.
async fn revoke_naming(s: &TestServer, client_id: &str) -> reqwest::Response {
    s.http
        .post(s.url("/revoke"))
        .form(&[("token", "not-a-token"), ("client_id", client_id)])
        .send()
        .await
        .unwrap()
}

/// The row version of a client: every write of the row, even of equal values, changes it.
async fn row_version(s: &TestServer, client_id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT xmin::text FROM clients WHERE client_id = $1")
        .bind(client_id)
        .fetch_optional(&s.pool)
        .await
        .unwrap()
}

async fn cimd_rows(s: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM clients WHERE source = 'cimd'")
        .fetch_one(&s.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn looking_up_an_unchanged_document_writes_nothing() {
    // Attack: every lookup (here /revoke, unauthenticated, unlimited) rewrote the client's row.
    let docs = DocServer::start().await;
    let s = TestServer::start_with(cimd_options(&[])).await;
    let id = docs.url("/stable/client.json");
    assert_eq!(revoke_naming(&s, &id).await.status().as_u16(), 200);
    let first = row_version(&s, &id)
        .await
        .expect("a row for the document client");
    for _ in 0..10 {
        assert_eq!(revoke_naming(&s, &id).await.status().as_u16(), 200);
    }
    assert_eq!(docs.hits("stable"), 11, "no-store: fetched every time");
    assert_eq!(
        row_version(&s, &id).await.unwrap(),
        first,
        "an unchanged document is not written again"
    );
    // A changed document is written (once).
    docs.version.store(2, Ordering::SeqCst);
    assert_eq!(revoke_naming(&s, &id).await.status().as_u16(), 200);
    let second = row_version(&s, &id).await.unwrap();
    assert_ne!(second, first);
    let name: String = sqlx::query_scalar("SELECT client_name FROM clients WHERE client_id = $1")
        .bind(&id)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(name, "Doc client v2");
    assert_eq!(revoke_naming(&s, &id).await.status().as_u16(), 200);
    assert_eq!(row_version(&s, &id).await.unwrap(), second);
    s.stop().await;
}

#[tokio::test]
async fn a_failing_document_is_fetched_once_per_failure_interval() {
    // Attack: naming a broken document URL made the server fetch it on every request.
    let docs = DocServer::start().await;
    let s = TestServer::start_with(cimd_options(&[])).await;
    let id = docs.url("/missing/client.json");
    for _ in 0..10 {
        let r = revoke_naming(&s, &id).await;
        assert_eq!(r.status().as_u16(), 401);
    }
    assert_eq!(docs.hits("missing"), 1);
    assert_eq!(cimd_rows(&s).await, 0);
    s.stop().await;
}

#[tokio::test]
async fn document_fetches_are_limited_per_address_at_every_endpoint() {
    // Attack: /revoke and /introspect had no rate limit, so one address could make the server
    // fetch any number of distinct document URLs.
    let docs = DocServer::start().await;
    let s = TestServer::start_with(cimd_options(&[
        ("MCPAUTH__RATE_LIMIT__CIMD_FETCH", "4"),
        ("MCPAUTH__RATE_LIMIT__WINDOW_SECS", "3600"),
    ]))
    .await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(
            revoke_naming(&s, &docs.url(&format!("/many/{i}")))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
    assert_eq!(docs.hits("many"), 4);
    // The same budget covers /introspect and /authorize.
    let r = s
        .http
        .post(s.url("/introspect"))
        .form(&[("token", "x"), ("client_id", &docs.url("/many/introspect"))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    let r = s
        .authorize(&[
            ("response_type", "code"),
            ("client_id", &docs.url("/many/authorize")),
            ("redirect_uri", REDIRECT),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ])
        .await;
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(docs.hits("many"), 4);
    // Documents already in memory cost nothing: a cached failure is answered as before.
    let _ = s.stop().await;
}

#[tokio::test]
async fn fetch_errors_reveal_no_address_and_no_network_error() {
    let s = TestServer::start_with(cimd_options(&[])).await;
    // Nothing listens on this port: the connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let id = format!("http://localhost:{port}/client.json");
    let r = revoke_naming(&s, &id).await;
    assert_eq!(r.status().as_u16(), 401);
    let body = r.text().await.unwrap();
    let page = s
        .authorize(&[
            ("response_type", "code"),
            ("client_id", &id),
            ("redirect_uri", REDIRECT),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ])
        .await
        .text()
        .await
        .unwrap();
    for text in [&body, &page] {
        assert!(
            text.contains("could not fetch the client metadata document"),
            "{text}"
        );
        for leak in [
            "127.0.0.1",
            "::1",
            "refused",
            "connect",
            "resolve",
            "os error",
        ] {
            assert!(!text.to_lowercase().contains(leak), "{leak:?} in {text}");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn document_clients_are_capped_and_swept() {
    let docs = DocServer::start().await;
    let s = TestServer::start_with(cimd_options(&[
        ("MCPAUTH__CIMD__MAX_CLIENTS", "2"),
        ("MCPAUTH__CIMD__UNUSED_CLIENT_TTL_SECS", "60"),
        ("MCPAUTH__TOKENS__ACCESS_TTL_SECS", "60"),
    ]))
    .await;
    let (granted, idle, third) = (
        docs.url("/cap/granted"),
        docs.url("/cap/idle"),
        docs.url("/cap/third"),
    );
    // `granted` gets a real grant (authorization code → tokens); `idle` is only looked up.
    let code = s.code_for(&granted, None).await;
    let (status, body, _) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", &granted),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(revoke_naming(&s, &idle).await.status().as_u16(), 200);
    assert_eq!(cimd_rows(&s).await, 2);
    // Attack: document clients were not counted, so any number of rows could be made.
    let r = revoke_naming(&s, &third).await;
    assert_eq!(r.status().as_u16(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("cannot take more client metadata document clients"),
        "{body}"
    );
    assert_eq!(cimd_rows(&s).await, 2);
    // Both age past the TTL; the sweeper removes the one without a live grant.
    sqlx::query(
        "UPDATE clients SET created_at = now() - interval '2 hours', updated_at = now() - interval '2 hours', \
         last_used_at = now() - interval '2 hours' WHERE source = 'cimd'",
    )
    .execute(&s.pool)
    .await
    .unwrap();
    auth_service::background::sweep_once(&s.running.as_ref().unwrap().state).await;
    let left: Vec<String> =
        sqlx::query_scalar("SELECT client_id FROM clients WHERE source = 'cimd'")
            .fetch_all(&s.pool)
            .await
            .unwrap();
    assert_eq!(left, [granted]);
    // Room again: the third document client is stored now, and the swept one comes back when
    // it is used again.
    assert_eq!(revoke_naming(&s, &third).await.status().as_u16(), 200);
    assert_eq!(cimd_rows(&s).await, 2);
    s.stop().await;
}
