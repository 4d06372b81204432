//! The audit trail under hostile input: a control character in a request is refused at the edge
//! (400, never a 500), and an event the database refuses anyway is quarantined without stopping
//! the trail or the endpoints behind it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use auth_service::{AuditEvent, AuditKind};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::*;

/// The poison of the security review: `client_id=a%00b` with a bearer header on `/revoke`, and
/// the same NUL byte in every identifier of every endpoint.
#[tokio::test]
async fn control_characters_in_identifiers_are_refused_at_the_edge() {
    let s = TestServer::start().await;
    let form = |path: &str, body: &str| {
        s.http
            .post(s.url(path))
            .header("authorization", "Bearer x")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
    };
    let cases = [
        ("/revoke", "client_id=a%00b&token=x"),
        ("/introspect", "client_id=a%00b&token=x"),
        ("/token", "grant_type=client_credentials&client_id=a%00b"),
        (
            "/token",
            "grant_type=authorization_code&code=a%01b&client_id=c",
        ),
        (
            "/token",
            "grant_type=refresh_token&refresh_token=x%7F&client_id=c",
        ),
        ("/token", "grant_type=client%00credentials"),
        ("/token", "a%00=1"),
    ];
    for (path, body) in cases {
        let r = form(path, body).send().await.unwrap();
        let status = r.status().as_u16();
        let body_json: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 400, "{path} {body}: {body_json}");
        assert_eq!(body_json["error"], "invalid_request", "{path} {body}");
        assert!(
            body_json["error_description"]
                .as_str()
                .unwrap()
                .contains("control character"),
            "{body_json}"
        );
    }
    // A NUL inside Basic credentials: malformed client authentication.
    let basic = base64::engine::general_purpose::STANDARD.encode("a%00b:secret");
    let r = s
        .http
        .post(s.url("/token"))
        .header("authorization", format!("Basic {basic}"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");

    // Registration metadata: any string, anywhere in the document.
    for doc in [
        json!({"client_name": "x", "redirect_uris": [REDIRECT], "contacts": ["a\u{0}b"]}),
        json!({"client_name": "x\u{1b}[31m", "redirect_uris": [REDIRECT]}),
        json!({"client_name": "x", "redirect_uris": [REDIRECT], "software_id": "\u{0}"}),
    ] {
        let (status, body) = s.register(doc).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_client_metadata");
    }
    // Paths and queries.
    for path in [
        "/register/a%00b",
        "/connect/a%00b",
        "/authorize?response_type=code&client_id=a%00b",
    ] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{path}");
    }
    s.stop().await;
}

/// Events the database refuses (a NUL byte reaching `text`, `\u0000` reaching `jsonb`) while
/// 100,000 audited requests go on: every request is answered, every other event is stored.
#[tokio::test]
async fn a_refused_event_is_quarantined_and_the_trail_and_token_endpoint_keep_going() {
    const REQUESTS: usize = 100_000;
    const IN_FLIGHT: usize = 32;
    let s = TestServer::start().await;
    let audit = s.running.as_ref().unwrap().state.audit.clone();

    // The poison, past the edge checks and the builder's sanitizing (the fields are public).
    let mut nul_client = AuditEvent::new(AuditKind::ClientAuthFailed);
    nul_client.client_id = Some("a\0b".into());
    let mut nul_detail = AuditEvent::new(AuditKind::ClientAuthFailed);
    nul_detail.detail = json!({"endpoint": "/revoke\u{0}"});
    audit.record(nul_client).await;

    let sent = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{STATIC_CLIENT}:{STATIC_SECRET}"));
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (http, url, basic) = (s.http.clone(), s.url("/token"), basic.clone());
        let (sent, answered) = (sent.clone(), answered.clone());
        workers.push(tokio::spawn(async move {
            while sent.fetch_add(1, Ordering::Relaxed) < REQUESTS {
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    http.post(&url)
                        .header("authorization", format!("Basic {basic}"))
                        .form(&[("grant_type", "client_credentials"), ("resource", RESOURCE)])
                        .send(),
                )
                .await
                .expect("every token request is answered within 10 s")
                .unwrap();
                assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // The second poison lands mid-load, inside a batch of real events.
    while answered.load(Ordering::Relaxed) < REQUESTS / 2 {
        assert!(
            workers.iter().all(|w| !w.is_finished()),
            "a load worker stopped early"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    audit.record(nul_detail).await;
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(answered.load(Ordering::Relaxed), REQUESTS);

    // The trail completes: every token issued is there.
    let mut stored = 0i64;
    for _ in 0..300 {
        stored = sqlx::query_scalar(
            "SELECT count(*) FROM audit_events WHERE kind = 'token.issued' AND client_id = $1",
        )
        .bind(STATIC_CLIENT)
        .fetch_one(&s.pool)
        .await
        .unwrap();
        if stored == REQUESTS as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored, REQUESTS as i64, "audit events stored");
    // Only the two poisoned events are missing, and they are counted.
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE kind = 'client.auth_failed'")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(failed, 0);
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let quarantined = metrics
        .lines()
        .find(|l| l.starts_with("mcpauth_batch_quarantined_total{trail=\"audit\"}"))
        .unwrap_or_else(|| panic!("quarantine counter missing:\n{metrics}"));
    assert!(quarantined.ends_with(" 2"), "{quarantined}");
    assert!(
        !metrics.contains("mcpauth_batch_dropped_total"),
        "no event may be dropped under this load"
    );
    s.stop().await;
}
