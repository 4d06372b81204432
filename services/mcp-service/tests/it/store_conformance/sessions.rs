//! MCP session records and the cluster session channel ([`SessionRecords`], [`SessionHub`]).

use std::sync::Arc;
use std::time::Duration;

use mcp_service::sessions::{Ownership, RecordedSessions, SessionHub, as_subject};
use mcp_service::store::Stores;
use rmcp::transport::streamable_http_server::session::{SessionState, SessionStore};
use serde_json::json;
use tokio::sync::mpsc::error::TryRecvError;
use tokio_util::sync::CancellationToken;

use super::{Backend, conformance, eventually};

const IDLE: Duration = Duration::from_secs(600);

fn session_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// rmcp's stored state of a session (the `initialize` parameters).
fn state() -> SessionState {
    serde_json::from_value(json!({"initialize_params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "conformance", "version": "1"}
    }}))
    .unwrap()
}

/// A running replica's session hub (stopped when the token is cancelled).
fn hub(b: &impl Backend, stores: &Stores, cancel: &CancellationToken) -> SessionHub {
    let hub = SessionHub::new(
        stores.sessions.clone(),
        stores.bus.clone(),
        b.prefix(),
        IDLE,
    );
    tokio::spawn(hub.clone().run(cancel.clone()));
    hub
}

/// Publishes `subject`'s tools/list_changed until each receiver got one: every hub then follows
/// the cluster channel, and a notification for a user reaches their streams on every replica.
async fn until_notified(
    from: &SessionHub,
    subject: &str,
    streams: &mut [tokio::sync::mpsc::Receiver<
        rmcp::transport::streamable_http_server::session::ServerSseMessage,
    >],
) {
    let mut got = vec![false; streams.len()];
    let deadline = tokio::time::Instant::now() + super::PATIENCE;
    while got.contains(&false) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "notifications never reached every replica: {got:?}"
        );
        from.notify_tools_changed(subject);
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (rx, got) in streams.iter_mut().zip(got.iter_mut()) {
            loop {
                match rx.try_recv() {
                    Ok(m) => {
                        let m = serde_json::to_value(&m.message).unwrap();
                        assert_eq!(m["method"], "notifications/tools/list_changed", "{m}");
                        *got = true;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => panic!("a stream ended"),
                }
            }
        }
    }
}

async fn a_session_is_recorded_read_and_deleted(b: impl Backend) {
    let records = b.replica().sessions;
    let id = session_id();
    assert_eq!(records.load(&id, "alice", IDLE).await.unwrap(), None);
    assert_eq!(records.owner(&id, IDLE).await.unwrap(), None);
    records
        .create(&id, "alice", "{\"s\":1}", IDLE)
        .await
        .unwrap();
    // Another replica reads what this one recorded.
    let other = b.replica().sessions;
    assert_eq!(
        other.load(&id, "alice", IDLE).await.unwrap().as_deref(),
        Some("{\"s\":1}")
    );
    assert_eq!(
        other.owner(&id, IDLE).await.unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(
        other
            .alive(&[(&id, false), ("nothing", false), (&id, true)], IDLE)
            .await
            .unwrap(),
        [true, false, true]
    );
    records.delete(&id).await.unwrap();
    assert_eq!(other.load(&id, "alice", IDLE).await.unwrap(), None);
    assert_eq!(other.owner(&id, IDLE).await.unwrap(), None);
    assert_eq!(other.alive(&[(&id, true)], IDLE).await.unwrap(), [false]);
    // Deleting what is gone is not an error.
    records.delete(&id).await.unwrap();
    records.ping().await.unwrap();
}

async fn an_unused_session_expires_and_a_used_one_does_not(b: impl Backend) {
    let records = b.replica().sessions;
    let (unused, used) = (session_id(), session_id());
    records
        .create(&unused, "alice", "{}", Duration::from_secs(1))
        .await
        .unwrap();
    records
        .create(&used, "alice", "{}", Duration::from_secs(3))
        .await
        .unwrap();
    // A use (reading the owner, or keeping a streamed session alive) moves the expiry.
    assert_eq!(
        records.owner(&used, IDLE).await.unwrap().as_deref(),
        Some("alice")
    );
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(records.load(&unused, "alice", IDLE).await.unwrap(), None);
    assert_eq!(records.owner(&unused, IDLE).await.unwrap(), None);
    assert_eq!(
        records
            .alive(&[(&unused, false), (&used, false)], IDLE)
            .await
            .unwrap(),
        [false, true]
    );
    assert_eq!(
        records.load(&used, "alice", IDLE).await.unwrap().as_deref(),
        Some("{}")
    );
}

async fn another_users_session_is_never_returned(b: impl Backend) {
    let cancel = CancellationToken::new();
    let stores = b.replica();
    let hub = hub(&b, &stores, &cancel);
    let rmcp_store = RecordedSessions::new(hub.clone());
    let id = session_id();
    as_subject("alice", rmcp_store.store(&id, &state()))
        .await
        .unwrap();
    // A session created outside a request would belong to nobody: refused.
    assert!(rmcp_store.store(&session_id(), &state()).await.is_err());

    let records = b.replica().sessions;
    assert_eq!(records.load(&id, "bob", IDLE).await.unwrap(), None);
    assert!(
        as_subject("bob", rmcp_store.load(&id))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        rmcp_store.load(&id).await.unwrap().is_none(),
        "no caller, no session"
    );
    let loaded = as_subject("alice", rmcp_store.load(&id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::to_value(&loaded).unwrap(),
        serde_json::to_value(state()).unwrap()
    );

    assert_eq!(
        hub.ownership(&id, "bob").await.unwrap(),
        Ownership::NotFound
    );
    let sid: Arc<str> = Arc::from(id.as_str());
    assert_eq!(
        hub.ownership_cached(&sid, "alice").await.unwrap(),
        Ownership::Owned
    );
    // Once alice's pair is cached, bob still gets nothing from the cache.
    assert_eq!(
        hub.ownership_cached(&sid, "bob").await.unwrap(),
        Ownership::NotFound
    );
    assert_eq!(hub.ownership(&id, "alice").await.unwrap(), Ownership::Owned);
    cancel.cancel();
}

async fn deleting_a_session_ends_its_streams_on_every_replica(b: impl Backend) {
    let cancel = CancellationToken::new();
    let replicas: Vec<SessionHub> = (0..3).map(|_| hub(&b, &b.replica(), &cancel)).collect();
    let id = session_id();
    let rmcp_store = RecordedSessions::new(replicas[0].clone());
    as_subject("alice", rmcp_store.store(&id, &state()))
        .await
        .unwrap();
    // Each replica holds a GET stream of the session (e.g. after the client moved).
    let mut streams: Vec<_> = replicas
        .iter()
        .map(|h| h.side_channel(Arc::from(id.as_str()), Arc::from("alice")))
        .collect();
    until_notified(&replicas[1], "alice", &mut streams).await;

    // DELETE on replica 0.
    rmcp_store.delete(&id).await.unwrap();
    for (i, rx) in streams.iter_mut().enumerate() {
        let ended = tokio::time::timeout(super::PATIENCE, async {
            while rx.recv().await.is_some() {}
        })
        .await;
        assert!(ended.is_ok(), "the stream on replica {i} did not end");
    }
    for h in &replicas {
        assert_eq!(
            h.ownership(&id, "alice").await.unwrap(),
            Ownership::NotFound
        );
    }
    cancel.cancel();
}

async fn a_replica_that_missed_cluster_messages_forgets_cached_owners(mut b: impl Backend) {
    let cancel = CancellationToken::new();
    let stores = b.replica();
    let hub = hub(&b, &stores, &cancel);
    let id = session_id();
    stores
        .sessions
        .create(&id, "alice", "{}", IDLE)
        .await
        .unwrap();
    let sid: Arc<str> = Arc::from(id.as_str());
    let mut stream = [hub.side_channel(sid.clone(), Arc::from("alice"))];
    until_notified(&hub, "alice", &mut stream).await;
    assert_eq!(
        hub.ownership_cached(&sid, "alice").await.unwrap(),
        Ownership::Owned
    );
    assert_eq!(hub.cached_owners(), 1);

    // A close of the session may be among what is missed: the cached pair must go.
    let filler = json!({"notify": {"user": "nobody", "message": {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}}});
    b.disrupt(&hub.channel(), &filler.to_string()).await;
    eventually("the owner cache is emptied", || hub.cached_owners() == 0).await;
    cancel.cancel();
}

conformance!(
    plain: [
        a_session_is_recorded_read_and_deleted,
        an_unused_session_expires_and_a_used_one_does_not,
        another_users_session_is_never_returned,
        deleting_a_session_ends_its_streams_on_every_replica,
    ],
    disrupted: [a_replica_that_missed_cluster_messages_forgets_cached_owners]
);
