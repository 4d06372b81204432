//! Replica events: every follower gets every event, in order; a failed publish owes a `Resync`,
//! sent once the bus takes it again, and only once.

use std::time::Duration;

use auth_service::store::ephemeral::{ReplicaEvent, ReplicaEvents};
use auth_service::store::revocations::{Revocation, RevocationKind};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use mcpauth_runtime::bus::ChannelEvent;

use super::{Backend, SwitchableBus, conformance};

conformance!(
    every_follower_gets_every_event,
    a_failed_publish_owes_one_resync
);

/// A follower of the replica events, once subscribed.
async fn follower(events: &ReplicaEvents) -> BoxStream<'static, ChannelEvent> {
    let mut s = events.bus().subscribe(events.channel(), "test follower");
    assert!(matches!(next(&mut s).await, ChannelEvent::Subscribed));
    s
}

async fn next(s: &mut BoxStream<'static, ChannelEvent>) -> ChannelEvent {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("no event within 10 s")
        .expect("the stream never ends")
}

/// The next message on `s`, decoded.
async fn next_event(s: &mut BoxStream<'static, ChannelEvent>) -> serde_json::Value {
    match next(s).await {
        ChannelEvent::Message(m) => serde_json::from_str(&m).unwrap(),
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn every_follower_gets_every_event(b: Backend) {
    let e = b.ephemeral();
    let mut followers = Vec::new();
    for _ in 0..3 {
        followers.push(follower(&e.events).await);
    }
    let revoked = Revocation {
        kind: RevocationKind::User,
        id: "user-1".into(),
        expires_at: 1_700_000_900,
        issued_before: Some(1_700_000_000),
    };
    e.events
        .publish(&ReplicaEvent::Revoked(revoked))
        .await
        .unwrap();
    e.events
        .publish(&ReplicaEvent::ClientChanged("client-1".into()))
        .await
        .unwrap();
    for f in &mut followers {
        let first = next_event(f).await;
        assert_eq!(first["revoked"]["id"], "user-1");
        assert_eq!(first["revoked"]["issued_before"], 1_700_000_000);
        assert_eq!(
            next_event(f).await,
            serde_json::json!({"client_changed": "client-1"})
        );
    }
    assert!(!e.events.resync_owed());
}

async fn a_failed_publish_owes_one_resync(b: Backend) {
    let bus = SwitchableBus::new(b.bus.clone());
    let e = b.with_bus(bus.clone());
    let mut f = follower(&e.events).await;
    // Nothing owed: nothing published.
    e.events.publish_owed_resync().await.unwrap();
    assert!(!e.events.resync_owed());

    bus.set_failing(true);
    let lost = e
        .events
        .publish(&ReplicaEvent::ClientChanged("lost".into()))
        .await;
    assert!(lost.is_err());
    assert!(e.events.resync_owed());
    // Still failing: still owed.
    assert!(e.events.publish_owed_resync().await.is_err());
    assert!(e.events.resync_owed());

    bus.set_failing(false);
    e.events.publish_owed_resync().await.unwrap();
    assert!(!e.events.resync_owed());
    // Paid: the next tick publishes nothing.
    e.events.publish_owed_resync().await.unwrap();
    e.events
        .publish(&ReplicaEvent::ClientChanged("after".into()))
        .await
        .unwrap();
    // The follower never saw the lost event; it sees one resync, then what came after.
    assert_eq!(next_event(&mut f).await, serde_json::json!("resync"));
    assert_eq!(
        next_event(&mut f).await,
        serde_json::json!({"client_changed": "after"})
    );
}
