//! Two mcp-service replicas on one Redis: any replica takes any request of a session.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;
use crate::resource::machine_token;

fn whoami() -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}})
}

fn list() -> Value {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
}

async fn delete_at(s: &Stack, base: &str, token: &str, sid: &str) -> u16 {
    s.http
        .delete(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn get_stream(s: &Stack, base: &str, token: &str, sid: &str) -> reqwest::Response {
    s.http
        .get(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap()
}

/// Reads SSE `data:` messages from `r` until one has `method`, or `within` passes.
async fn wait_for_method(r: &mut reqwest::Response, method: &str, within: Duration) -> bool {
    let mut buf = String::new();
    tokio::time::timeout(within, async {
        while let Ok(Some(chunk)) = r.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            let found = buf
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .any(|m| m["method"] == method);
            if found {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

fn subject_of(msgs: &[Value]) -> String {
    let text = msgs.last().unwrap()["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    serde_json::from_str::<Value>(&text).unwrap()["subject"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_session_started_on_one_replica_works_on_another() {
    let s = Stack::start().await;
    let (b, b_base) = s.replica().await;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let sid = s.session(at).await;
    assert_eq!(b.state.sessions.local_sessions().await, 0);

    let r = s.post_at(&b_base, Some(at), whoami(), Some(&sid)).await;
    assert_eq!(r.status().as_u16(), 200);
    let on_b = subject_of(&messages(r).await);
    // A tool call needs no worker (the bridge answers it); anything else restores the session
    // on B, not created anew: the same session id, served by a worker on B.
    assert_eq!(b.state.sessions.local_sessions().await, 0);
    let r = s.post_at(&b_base, Some(at), list(), Some(&sid)).await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(messages(r).await[0]["result"]["tools"].is_array());
    assert_eq!(b.state.sessions.local_sessions().await, 1);
    let r = s.post(Some(at), whoami(), Some(&sid)).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(subject_of(&messages(r).await), on_b);
    b.shutdown().await;
    s.stop().await;
}

#[tokio::test]
async fn delete_on_one_replica_ends_the_session_on_every_replica() {
    let s = Stack::start().await;
    let (b, b_base) = s.replica().await;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let sid = s.session(at).await;
    // Both replicas hold a worker for it, and A holds its GET stream.
    assert_eq!(
        s.post_at(&b_base, Some(at), list(), Some(&sid))
            .await
            .status()
            .as_u16(),
        200
    );
    let mut stream = get_stream(&s, &s.mcp_base, at, &sid).await;
    assert_eq!(stream.status().as_u16(), 200);

    assert_eq!(delete_at(&s, &b_base, at, &sid).await, 202);
    // A learns of it from the `close` message (normally at once); its local ownership cache
    // bounds a lost message to 1 s (docs/mcp-service.md).
    let mut status = 0;
    for _ in 0..30 {
        status = s.post(Some(at), list(), Some(&sid)).await.status().as_u16();
        if status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 404, "replica A still serves a session deleted on B");
    assert_eq!(
        s.post_at(&b_base, Some(at), list(), Some(&sid))
            .await
            .status()
            .as_u16(),
        404
    );
    assert_eq!(delete_at(&s, &s.mcp_base, at, &sid).await, 404);
    // A's GET stream of the deleted session ends.
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the GET stream outlived its session");
    assert_eq!(
        s.mcp
            .as_ref()
            .unwrap()
            .state
            .sessions
            .local_sessions()
            .await,
        0
    );
    assert_eq!(b.state.sessions.local_sessions().await, 0);
    b.shutdown().await;
    s.stop().await;
}

#[tokio::test]
async fn another_users_session_id_is_404_on_every_replica() {
    let s = Stack::start().await;
    let (b, b_base) = s.replica().await;
    let alice = s.token(None, &s.resource).await;
    let alice = alice["access_token"].as_str().unwrap();
    let bob = machine_token(&s).await;
    let sid = s.session(alice).await;
    for base in [s.mcp_base.as_str(), b_base.as_str()] {
        assert_eq!(
            s.post_at(base, Some(&bob), whoami(), Some(&sid))
                .await
                .status()
                .as_u16(),
            404,
            "{base}"
        );
        assert_eq!(
            get_stream(&s, base, &bob, &sid).await.status().as_u16(),
            404
        );
        assert_eq!(delete_at(&s, base, &bob, &sid).await, 404);
    }
    // Bob's attempts changed nothing for Alice, on either replica.
    for base in [s.mcp_base.as_str(), b_base.as_str()] {
        assert_eq!(
            s.post_at(base, Some(alice), whoami(), Some(&sid))
                .await
                .status()
                .as_u16(),
            200
        );
    }
    b.shutdown().await;
    s.stop().await;
}

#[tokio::test]
async fn a_notification_published_through_one_replica_reaches_the_stream_held_on_another() {
    let s = Stack::start().await;
    let (b, b_base) = s.replica().await;
    let alice = s.token(None, &s.resource).await;
    let alice = alice["access_token"].as_str().unwrap();
    let bob = machine_token(&s).await;
    let alice_sid = s.session(alice).await;
    let bob_sid = s.session(&bob).await;
    let mut alice_stream = get_stream(&s, &s.mcp_base, alice, &alice_sid).await;
    assert_eq!(alice_stream.status().as_u16(), 200);
    let mut bob_stream = get_stream(&s, &b_base, &bob, &bob_sid).await;
    assert_eq!(bob_stream.status().as_u16(), 200);
    // Let the GET requests register before publishing.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let r = s.post(Some(alice), whoami(), Some(&alice_sid)).await;
    let alice_subject = subject_of(&messages(r).await);
    b.state.sessions.notify_tools_changed(&alice_subject);
    assert!(
        wait_for_method(
            &mut alice_stream,
            "notifications/tools/list_changed",
            Duration::from_secs(2)
        )
        .await,
        "the notification published on B did not reach the GET stream on A"
    );
    // Only Alice's sessions get Alice's notification.
    assert!(
        !wait_for_method(
            &mut bob_stream,
            "notifications/tools/list_changed",
            Duration::from_millis(300)
        )
        .await
    );
    b.shutdown().await;
    s.stop().await;
}

#[tokio::test]
async fn a_revocation_is_enforced_by_every_replica_within_a_second() {
    let s = Stack::start().await;
    let (b, b_base) = s.replica().await;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let sid = s.session(at).await;
    for base in [s.mcp_base.as_str(), b_base.as_str()] {
        assert_eq!(
            s.post_at(base, Some(at), list(), Some(&sid))
                .await
                .status()
                .as_u16(),
            200
        );
    }
    let state = &s.auth.as_ref().unwrap().state;
    let claims = state.tokens.validate_access(at).unwrap();
    state
        .tokens
        .revoke(
            auth_service::store::revocations::RevocationKind::Token,
            &claims.jti,
            claims.exp,
        )
        .await
        .unwrap();
    let started = Instant::now();
    for base in [s.mcp_base.as_str(), b_base.as_str()] {
        loop {
            let status = s
                .post_at(base, Some(at), list(), Some(&sid))
                .await
                .status()
                .as_u16();
            if status == 401 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{base} still accepts the token 1 s after revocation"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    b.shutdown().await;
    s.stop().await;
}

#[tokio::test]
async fn an_expired_or_unknown_session_is_404_everywhere() {
    let s = Stack::start_with(StackOptions {
        mcp_env: vec![("MCPAUTH__SESSIONS__IDLE_TIMEOUT_SECS", "1".into())],
        ..Default::default()
    })
    .await;
    let (b, b_base) = s.replica().await;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let sid = s.session(at).await;
    // Use keeps it alive past its idle timeout.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            s.post_at(&b_base, Some(at), list(), Some(&sid))
                .await
                .status()
                .as_u16(),
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for base in [s.mcp_base.as_str(), b_base.as_str()] {
        assert_eq!(
            s.post_at(base, Some(at), list(), Some(&sid))
                .await
                .status()
                .as_u16(),
            404,
            "{base}"
        );
    }
    // Both replicas dropped their workers of the expired session.
    assert_eq!(
        s.mcp
            .as_ref()
            .unwrap()
            .state
            .sessions
            .local_sessions()
            .await,
        0
    );
    assert_eq!(b.state.sessions.local_sessions().await, 0);
    let unknown = uuid::Uuid::new_v4().to_string();
    for base in [s.mcp_base.as_str(), b_base.as_str()] {
        assert_eq!(
            s.post_at(base, Some(at), list(), Some(&unknown))
                .await
                .status()
                .as_u16(),
            404
        );
        assert_eq!(
            get_stream(&s, base, at, &unknown).await.status().as_u16(),
            404
        );
    }
    // The client re-initializes.
    let again = s.session(at).await;
    assert_ne!(again, sid);
    b.shutdown().await;
    s.stop().await;
}

#[tokio::test]
async fn local_workers_live_as_long_as_the_sessions_redis_entry() {
    let s = Stack::start_with(StackOptions {
        mcp_env: vec![("MCPAUTH__SESSIONS__IDLE_TIMEOUT_SECS", "3".into())],
        ..Default::default()
    })
    .await;
    let a = &s.mcp.as_ref().unwrap().state;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let sid = s.session(at).await;
    assert_eq!(a.sessions.local_sessions().await, 1);
    // Used only through tool calls (which the bridge answers without the worker) for longer
    // than the idle timeout: the session and its worker stay.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let r = s.post(Some(at), whoami(), Some(&sid)).await;
        assert_eq!(r.status().as_u16(), 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(a.sessions.local_sessions().await, 1);
    assert_eq!(
        s.post(Some(at), list(), Some(&sid)).await.status().as_u16(),
        200
    );
    // The entry vanishes (as on expiry) and no request comes: the sweep (every third of the
    // idle timeout) drops the worker anyway.
    let mut redis = redis::Client::open(s.mcp_config.redis.url.expose())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("{}:session:{sid}", s.mcp_config.redis.key_prefix);
    let deleted: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.sessions.local_sessions().await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.sessions.local_sessions().await, 0);
    s.stop().await;
}

#[tokio::test]
async fn a_replica_drops_a_worker_it_no_longer_uses_while_the_session_lives_on() {
    let s = Stack::start_with(StackOptions {
        mcp_env: vec![("MCPAUTH__SESSIONS__IDLE_TIMEOUT_SECS", "3".into())],
        ..Default::default()
    })
    .await;
    let (b, b_base) = s.replica().await;
    let at = s.access_token().await;
    let sid = s.session(&at).await;
    // B restores the session once, then sees no more of it; A keeps using it.
    assert_eq!(
        s.post_at(&b_base, Some(&at), list(), Some(&sid))
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(b.state.sessions.local_sessions().await, 1);
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until && b.state.sessions.local_sessions().await > 0 {
        assert_eq!(s.post_status(Some(&at), whoami(), Some(&sid)).await, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Local idle limit = the idle timeout here (3 s; 300 s by default).
    assert_eq!(b.state.sessions.local_sessions().await, 0);
    assert_eq!(s.post_status(Some(&at), list(), Some(&sid)).await, 200);
    // Still B's to serve whenever a request comes: restored again.
    assert_eq!(
        s.post_at(&b_base, Some(&at), list(), Some(&sid))
            .await
            .status()
            .as_u16(),
        200
    );
    b.shutdown().await;
    s.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_event_streams_promptly() {
    let s = Stack::start().await;
    let (b, b_base) = s.replica().await;
    let t = s.token(None, &s.resource).await;
    let at = t["access_token"].as_str().unwrap();
    let sid = s.session(at).await;
    let mut stream = get_stream(&s, &b_base, at, &sid).await;
    assert_eq!(stream.status().as_u16(), 200);
    let started = Instant::now();
    let reader = tokio::spawn(async move { while let Ok(Some(_)) = stream.chunk().await {} });
    b.shutdown().await;
    tokio::time::timeout(Duration::from_secs(2), reader)
        .await
        .expect("the event stream outlived shutdown")
        .unwrap();
    // Well inside the 1 s graceful-shutdown timeout: the stream was ended, not cut off.
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // The session survives its replica: A serves it.
    assert_eq!(
        s.post(Some(at), list(), Some(&sid)).await.status().as_u16(),
        200
    );
    s.stop().await;
}
