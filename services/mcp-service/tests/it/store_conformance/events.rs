//! The events mcp-service follows on the bus: token-vault's connection events and
//! auth-service's revocations. Each must reach every replica, and a replica that may have missed
//! some must be told so (it then drops what it cached).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_service::auth::Principal;
use mcp_service::connectors::connections::{ConnectionNews, follow_news};
use mcp_service::verify::cache::IntrospectionCache;
use mcpauth_runtime::revocation::cache::{Lookup, token_key};
use mcpauth_runtime::revocation::{Revocation, Scope};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Backend, conformance, eventually};

type Log = Arc<Mutex<Vec<ConnectionNews>>>;

fn connection_event(user: &str) -> String {
    json!({"user_id": user, "provider": "github", "status": "connected"}).to_string()
}

/// A replica following the connection events, recording what it learns.
fn connection_follower(b: &impl Backend, channel: &str, cancel: &CancellationToken) -> Log {
    let log: Log = Arc::default();
    let (bus, channel, cancel, rec) = (
        b.replica().bus,
        channel.to_owned(),
        cancel.clone(),
        log.clone(),
    );
    tokio::spawn(async move {
        follow_news(&*bus, &channel, cancel.cancelled(), |news| {
            rec.lock().unwrap().push(news);
        })
        .await;
    });
    log
}

fn learnt(log: &Log, news: &ConnectionNews) -> bool {
    log.lock().unwrap().contains(news)
}

/// Publishes a connection event of `user` until every follower learnt it.
async fn until_every_follower_learns(b: &impl Backend, channel: &str, user: &str, logs: &[Log]) {
    let bus = b.replica().bus;
    let news = ConnectionNews::Changed(user.to_owned());
    let deadline = tokio::time::Instant::now() + super::PATIENCE;
    while !logs.iter().all(|l| learnt(l, &news)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a follower never learnt {news:?}"
        );
        bus.publish(channel, &connection_event(user)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connection_events_reach_every_follower(b: impl Backend) {
    let cancel = CancellationToken::new();
    let channel = format!("{}:connections", b.prefix());
    let logs: Vec<Log> = (0..3)
        .map(|_| connection_follower(&b, &channel, &cancel))
        .collect();
    until_every_follower_learns(&b, &channel, "probe", &logs).await;
    // Subscribing said that earlier events were not seen.
    for log in &logs {
        assert_eq!(log.lock().unwrap()[0], ConnectionNews::Missed);
    }
    // One event, as token-vault publishes it, from a replica of its own.
    b.replica()
        .bus
        .publish(&channel, &connection_event("alice"))
        .await
        .unwrap();
    let alice = ConnectionNews::Changed("alice".into());
    for (i, log) in logs.iter().enumerate() {
        eventually(&format!("follower {i} learns alice's change"), || {
            learnt(log, &alice)
        })
        .await;
        assert_eq!(
            log.lock().unwrap().iter().filter(|n| **n == alice).count(),
            1
        );
    }
    // A malformed event is ignored (the follower keeps following).
    let bus = b.replica().bus;
    bus.publish(&channel, "{\"nonsense\":1}").await.unwrap();
    bus.publish(&channel, &connection_event("bob"))
        .await
        .unwrap();
    let bob = ConnectionNews::Changed("bob".into());
    for log in &logs {
        eventually("bob's change is learnt", || learnt(log, &bob)).await;
    }
    cancel.cancel();
}

async fn a_connection_follower_that_missed_events_is_told(mut b: impl Backend) {
    let cancel = CancellationToken::new();
    let channel = format!("{}:connections", b.prefix());
    let log = connection_follower(&b, &channel, &cancel);
    until_every_follower_learns(&b, &channel, "probe", std::slice::from_ref(&log)).await;
    log.lock().unwrap().clear();
    b.disrupt(&channel, &connection_event("filler")).await;
    eventually("the follower is told it missed events", || {
        learnt(&log, &ConnectionNews::Missed)
    })
    .await;
    cancel.cancel();
}

fn revocation_event(kind: &str, id: &str) -> String {
    json!({"revoked": {"kind": kind, "id": id}}).to_string()
}

/// A replica's introspection cache following the revocations, and what it passed on.
fn revocation_follower(
    b: &impl Backend,
    channel: &str,
    cancel: &CancellationToken,
) -> (
    IntrospectionCache,
    tokio::sync::broadcast::Receiver<Revocation>,
) {
    let cache = IntrospectionCache::new(Duration::from_secs(600), 1_000);
    let (notify, rx) = tokio::sync::broadcast::channel(4_096);
    tokio::spawn(mcp_service::revocations::follow(
        b.replica().bus,
        channel.to_owned(),
        cache.clone(),
        notify,
        cancel.clone(),
    ));
    (cache, rx)
}

/// Publishes a revocation of token `probe` until every follower passed it on.
async fn until_every_cache_follows(
    b: &impl Backend,
    channel: &str,
    followers: &mut [(
        IntrospectionCache,
        tokio::sync::broadcast::Receiver<Revocation>,
    )],
) {
    let bus = b.replica().bus;
    let mut got = vec![false; followers.len()];
    let deadline = tokio::time::Instant::now() + super::PATIENCE;
    while got.contains(&false) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "revocations never reached every follower: {got:?}"
        );
        bus.publish(channel, &revocation_event("token", "probe"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for ((_, rx), got) in followers.iter_mut().zip(got.iter_mut()) {
            while let Ok(r) = rx.try_recv() {
                assert_eq!(r.id, "probe");
                *got = true;
            }
        }
    }
}

fn principal(subject: &str, token_id: &str) -> Principal {
    Principal {
        subject: subject.into(),
        client_id: "conformance".into(),
        scopes: Default::default(),
        expires_at: mcpauth_runtime::revocation::cache::now_secs() + 3_600,
        token_id: Some(token_id.into()),
        grant_id: None,
        access_token: None,
    }
}

/// Caches `token` as verified for `subject`; whether the cache took it (only while live).
fn cache_token(cache: &IntrospectionCache, token: &str, subject: &str) -> bool {
    match cache.lookup(&token_key(token)) {
        Lookup::Miss(fill) => fill.store(&Ok(principal(subject, token))),
        Lookup::Hit(_) => true,
    }
}

async fn revocations_reach_every_follower(b: impl Backend) {
    let cancel = CancellationToken::new();
    let channel = format!("{}:events", b.prefix());
    let mut followers: Vec<_> = (0..3)
        .map(|_| revocation_follower(&b, &channel, &cancel))
        .collect();
    until_every_cache_follows(&b, &channel, &mut followers).await;
    for (cache, _) in &followers {
        assert!(
            cache_token(cache, "alice-token", "alice"),
            "a live cache takes a token"
        );
        assert!(cache_token(cache, "bob-token", "bob"));
    }
    b.replica()
        .bus
        .publish(&channel, &revocation_event("user", "alice"))
        .await
        .unwrap();
    for (i, (cache, rx)) in followers.iter_mut().enumerate() {
        let r = tokio::time::timeout(super::PATIENCE, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("follower {i} never got the revocation"))
            .unwrap();
        assert_eq!(
            r,
            Revocation {
                scope: Scope::Subject,
                id: "alice".into()
            }
        );
        assert_eq!(cache.len(), 1, "alice's token is evicted, bob's kept");
        assert!(matches!(
            cache.lookup(&token_key("bob-token")),
            Lookup::Hit(Ok(_))
        ));
        assert!(matches!(
            cache.lookup(&token_key("alice-token")),
            Lookup::Miss(_)
        ));
    }
    cancel.cancel();
}

async fn a_revocation_follower_that_missed_events_empties_its_cache(mut b: impl Backend) {
    let cancel = CancellationToken::new();
    let channel = format!("{}:events", b.prefix());
    let mut followers = [revocation_follower(&b, &channel, &cancel)];
    until_every_cache_follows(&b, &channel, &mut followers).await;
    let cache = followers[0].0.clone();
    assert!(cache_token(&cache, "alice-token", "alice"));
    assert_eq!(cache.len(), 1);
    // A revocation of alice's token may be among what is missed: it must not be served.
    b.disrupt(&channel, &revocation_event("token", "filler"))
        .await;
    eventually("the cache is emptied", || cache.is_empty()).await;
    cancel.cancel();
}

conformance!(
    plain: [connection_events_reach_every_follower, revocations_reach_every_follower],
    disrupted: [
        a_connection_follower_that_missed_events_is_told,
        a_revocation_follower_that_missed_events_empties_its_cache,
    ]
);
