//! The event bus as token-vault uses it: connection events, credential cache invalidations and
//! auth-service's revocations reach every follower (every replica), on Redis and in-process.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mcpauth_runtime::bus::{ChannelEvent, EventBus};
use mcpauth_runtime::revocation::{Lookup, VerificationCache, token_key};
use serde_json::json;
use token_vault::cache::{CredentialCache, Invalidations};
use token_vault::crypto::Sealed;
use token_vault::events::{ConnectionEvent, ConnectionEvents};
use token_vault::introspect::{IntrospectionCache, User};
use token_vault::store::{ConnectionStatus, CredentialRow};
use tokio_util::sync::CancellationToken;

use super::Backend;

const WITHIN: Duration = Duration::from_secs(10);

/// The buses of three replicas (the embedded mode has one, shared by everything in-process).
async fn buses(b: &Backend) -> Vec<Arc<dyn EventBus>> {
    let mut buses = vec![b.stores.bus.clone()];
    for _ in 0..2 {
        buses.push(b.replica().await.bus);
    }
    buses
}

pub async fn connection_events_reach_every_follower(b: &Backend) {
    let channel = format!("{}:connections", b.prefix);
    let mut followers = Vec::new();
    for bus in buses(b).await {
        for _ in 0..2 {
            let mut events = bus.subscribe(&channel, "connections (test)");
            let first = tokio::time::timeout(WITHIN, events.next()).await.unwrap();
            assert!(matches!(first, Some(ChannelEvent::Subscribed)));
            followers.push(events);
        }
    }
    let events = ConnectionEvents::new(b.stores.bus.clone(), &b.prefix);
    assert_eq!(events.channel(), channel);
    events
        .publish("alice", "github", ConnectionEvent::Connected)
        .await;
    events
        .publish("alice", "github", ConnectionEvent::ReauthorizationRequired)
        .await;
    for f in &mut followers {
        for status in ["connected", "reauthorization_required"] {
            let Some(ChannelEvent::Message(m)) =
                tokio::time::timeout(WITHIN, f.next()).await.unwrap()
            else {
                panic!("a message")
            };
            let m: serde_json::Value = serde_json::from_str(&m).unwrap();
            assert_eq!(
                m,
                json!({"user_id": "alice", "provider": "github", "status": status})
            );
        }
    }
}

fn row() -> Arc<CredentialRow> {
    Arc::new(CredentialRow {
        user_id: "u".into(),
        provider: "p".into(),
        version: 1,
        sealed: Sealed {
            key_id: "k".into(),
            blob: vec![1, 2, 3],
        },
        status: ConnectionStatus::Connected,
        scopes: vec![],
        expires_at: None,
        upstream_issuer: String::new(),
        upstream_subject: String::new(),
        connected_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
        deleted_through: 0,
    })
}

pub async fn credential_invalidations_reach_every_replica_cache(b: &Backend) {
    let cancel = CancellationToken::new();
    let (alice, bob) = (
        token_vault::cache::key("alice", "github"),
        token_vault::cache::key("bob", "github"),
    );
    let mut caches = Vec::new();
    for bus in buses(b).await {
        // Entries live long: only an invalidation takes them out during the test.
        let cache = CredentialCache::new(Duration::from_secs(600), 100);
        tokio::spawn(token_vault::cache::follow(
            bus,
            token_vault::cache::channel(&b.prefix),
            cache.clone(),
            cancel.clone(),
        ));
        // The cache keeps nothing until its follower is subscribed.
        let deadline = tokio::time::Instant::now() + WITHIN;
        while cache.get(&alice).is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "follower subscribes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            cache.put(alice, row(), cache.epoch());
        }
        cache.put(bob, row(), cache.epoch());
        caches.push(cache);
    }
    Invalidations::new(b.stores.bus.clone(), &b.prefix)
        .publish(&alice)
        .await;
    for cache in &caches {
        let deadline = tokio::time::Instant::now() + WITHIN;
        while cache.get(&alice).is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the invalidation arrives"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            cache.get(&bob).is_some(),
            "only the written record is evicted"
        );
    }
    cancel.cancel();
}

fn user(token_id: &str, grant_id: &str) -> User {
    User {
        subject: "alice".into(),
        client_id: "client".into(),
        expires_at: chrono::Utc::now().timestamp() + 600,
        token_id: Some(token_id.into()),
        issuer: None,
        grant_id: Some(grant_id.into()),
    }
}

/// Caches `token` in `cache`; whether it was kept (only while the feed is live).
fn fill(cache: &IntrospectionCache, token: &str, u: User) -> bool {
    match cache.lookup(&token_key(token)) {
        Lookup::Miss(f) => f.store(&Ok(u)),
        Lookup::Hit(_) => true,
    }
}

fn cached(cache: &IntrospectionCache, token: &str) -> bool {
    matches!(cache.lookup(&token_key(token)), Lookup::Hit(_))
}

async fn publish(bus: &dyn EventBus, channel: &str, kind: &str, id: &str) {
    let body = json!({"revoked": {"kind": kind, "id": id, "expires_at": 1}}).to_string();
    bus.publish(channel, &body).await.unwrap();
}

/// Waits until `cache`'s revocation follower is subscribed: a probe revocation published on
/// the channel evicts a probe token, and the cache is live afterwards (a cache emptied because
/// its feed went down stays down until it is subscribed again).
async fn wait_following(cache: &IntrospectionCache, bus: &dyn EventBus, channel: &str) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    for i in 0.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "follower subscribes"
        );
        let probe = format!("probe-{i}");
        if fill(cache, &probe, user(&probe, "probe-grant")) {
            publish(bus, channel, "token", &probe).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            if !cached(cache, &probe) && fill(cache, "live?", user("live?", "probe-grant")) {
                return;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub async fn revocations_reach_every_follower(b: &Backend) {
    let cancel = CancellationToken::new();
    // auth-service's channel: `<auth prefix>:events`.
    let channel = format!("{}-auth:events", b.prefix);
    let mut caches = Vec::new();
    for bus in buses(b).await {
        let cache: IntrospectionCache = VerificationCache::new(Duration::from_secs(600), 100);
        tokio::spawn(token_vault::revocations::follow(
            bus,
            channel.clone(),
            cache.clone(),
            cancel.clone(),
        ));
        wait_following(&cache, &*b.stores.bus, &channel).await;
        assert!(fill(&cache, "token-1", user("jti-1", "grant-1")));
        assert!(fill(&cache, "token-2", user("jti-2", "grant-2")));
        caches.push(cache);
    }
    publish(&*b.stores.bus, &channel, "grant", "grant-1").await;
    for cache in &caches {
        let deadline = tokio::time::Instant::now() + WITHIN;
        while cached(cache, "token-1") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the revocation arrives"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(cached(cache, "token-2"), "only what the revocation covers");
    }
    cancel.cancel();
}
