use std::time::Duration;

use super::*;
use crate::revocation::{Lookup, RevocationIds, now_secs, token_key};

#[derive(Debug, Clone, PartialEq)]
struct Tok {
    jti: String,
    grant: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Refused;

impl Revocable for Tok {
    fn revocation_ids(&self) -> RevocationIds<'_> {
        RevocationIds {
            token_id: Some(&self.jti),
            grant_id: Some(&self.grant),
            client_id: "c",
            subject: "u",
        }
    }
    fn expires_at(&self) -> i64 {
        now_secs() + 60
    }
}

impl Refusal for Refused {
    fn expired() -> Self {
        Refused
    }
    fn is_transient(&self) -> bool {
        false
    }
}

type Cache = VerificationCache<Tok, Refused>;

fn tok(jti: &str, grant: &str) -> Tok {
    Tok {
        jti: jti.into(),
        grant: grant.into(),
    }
}

fn cached(c: &Cache, token: &str) -> bool {
    matches!(c.lookup(&token_key(token)), Lookup::Hit(_))
}

fn fill(c: &Cache, token: &str, t: Tok) -> bool {
    match c.lookup(&token_key(token)) {
        Lookup::Miss(f) => f.store(&Ok(t)),
        Lookup::Hit(_) => false,
    }
}

fn message(s: &str) -> ChannelEvent {
    ChannelEvent::Message(s.into())
}

#[test]
fn events_of_auth_service_parse() {
    assert_eq!(
        parse_event(r#"{"revoked":{"kind":"grant","id":"g1","expires_at":5}}"#),
        Some(FeedEvent::Revoked(Revocation {
            scope: Scope::Grant,
            id: "g1".into()
        }))
    );
    assert_eq!(parse_event(r#""resync""#), Some(FeedEvent::Resync));
    assert_eq!(
        parse_event(r#"{"client_changed":"c"}"#),
        Some(FeedEvent::Other)
    );
    // A kind this build does not know could cover anything: forget everything.
    assert_eq!(
        parse_event(r#"{"revoked":{"kind":"tenant","id":"t","expires_at":5}}"#),
        Some(FeedEvent::Resync)
    );
    assert_eq!(parse_event("{"), None);
}

#[test]
fn lost_subscription_empties_and_stops_the_cache_until_resubscribed() {
    let c: Cache = VerificationCache::new(Duration::from_secs(60), 10);
    assert!(fill(&c, "a", tok("j1", "g1")));
    assert_eq!(apply(&c, ChannelEvent::Lost), None);
    assert!(c.is_empty());
    assert!(!fill(&c, "a", tok("j1", "g1")), "nothing cached while down");
    assert_eq!(apply(&c, ChannelEvent::Subscribed), None);
    assert!(fill(&c, "a", tok("j1", "g1")));
    // A failed publish at auth-service is announced with "resync": everything goes.
    assert!(fill(&c, "b", tok("j2", "g2")));
    apply(&c, message(r#""resync""#));
    assert!(c.is_empty());
    // A revocation evicts only what it covers and is passed on.
    assert!(fill(&c, "a", tok("j1", "g1")));
    assert!(fill(&c, "b", tok("j2", "g2")));
    let r = apply(
        &c,
        message(r#"{"revoked":{"kind":"token","id":"j2","expires_at":1}}"#),
    );
    assert_eq!(r.map(|r| r.id), Some("j2".to_owned()));
    assert!(cached(&c, "a") && !cached(&c, "b"));
}

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn publish(c: &mut redis::aio::MultiplexedConnection, channel: &str, body: &str) {
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(body)
        .query_async(c)
        .await
        .unwrap();
}

/// The race of issue 12 item 6: a revocation arrives (through Redis) while the introspection
/// of a token it covers is in flight. The introspection's (stale) answer must not be cached.
#[tokio::test]
async fn a_revocation_during_a_slow_introspection_is_not_overwritten_by_its_result() {
    let channel = format!("mcpauth-runtime-test:revocations:{}", std::process::id());
    let cache: Cache = VerificationCache::new(Duration::from_secs(60), 100);
    let (revoked_tx, mut revoked_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let follower = tokio::spawn({
        let (cache, channel) = (cache.clone(), channel.clone());
        let client = redis::Client::open(redis_url()).unwrap();
        async move {
            let stop = async move {
                let _ = stop_rx.await;
            };
            follow(client, &channel, cache, stop, move |r| {
                let _ = revoked_tx.send(r);
            })
            .await;
        }
    });
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // Wait until the follower is subscribed: a probe revocation comes back.
    let probe = r#"{"revoked":{"kind":"token","id":"probe","expires_at":1}}"#;
    let mut subscribed = false;
    for _ in 0..250 {
        publish(&mut conn, &channel, probe).await;
        if let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(20), revoked_rx.recv()).await
        {
            subscribed = true;
            break;
        }
    }
    assert!(subscribed, "the follower subscribes");

    // The verifier: an introspection held until `release` fires, answering "active".
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let verify = {
        let cache = cache.clone();
        tokio::spawn(async move {
            let Lookup::Miss(fill) = cache.lookup(&token_key("the-token")) else {
                panic!("not cached yet")
            };
            started_tx.send(()).unwrap();
            held.await.unwrap();
            // What auth-service answered before the revocation: still active.
            let answer = Ok(tok("j1", "g1"));
            fill.store(&answer)
        })
    };
    // The revocation of its grant is published and applied while the verifier is held.
    started.await.unwrap();
    publish(
        &mut conn,
        &channel,
        r#"{"revoked":{"kind":"grant","id":"g1","expires_at":1}}"#,
    )
    .await;
    let r = tokio::time::timeout(Duration::from_secs(5), revoked_rx.recv())
        .await
        .expect("the revocation arrives")
        .unwrap();
    assert_eq!(r.id, "g1");
    release.send(()).unwrap();
    assert!(!verify.await.unwrap(), "the stale answer is discarded");
    assert!(
        !cached(&cache, "the-token"),
        "the next verification asks auth-service again"
    );
    // Unrelated tokens still cache normally.
    assert!(fill(&cache, "other", tok("j2", "g2")));
    assert!(cached(&cache, "other"));

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), follower)
        .await
        .expect("stop ends the follow")
        .unwrap();
    // After the follow ends nothing is served.
    assert!(!cached(&cache, "other"));
}

/// The same follower on the in-process bus of the embedded mode: a revocation published on it
/// evicts what it covers, and the cache serves nothing once the follow ends.
#[tokio::test]
async fn follow_bus_evicts_on_the_in_process_bus() {
    let bus = crate::bus::MemoryBus::new();
    let cache: Cache = VerificationCache::new(Duration::from_secs(60), 100);
    let (revoked_tx, mut revoked_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let follower = tokio::spawn({
        let (cache, bus) = (cache.clone(), bus.clone());
        async move {
            let stop = async move {
                let _ = stop_rx.await;
            };
            follow_bus(&bus, "events", cache, stop, move |r| {
                let _ = revoked_tx.send(r);
            })
            .await;
        }
    });
    // Subscribed once a probe comes back.
    let probe = r#"{"revoked":{"kind":"token","id":"probe","expires_at":1}}"#;
    let mut subscribed = false;
    for _ in 0..250 {
        crate::bus::EventBus::publish(&bus, "events", probe)
            .await
            .unwrap();
        if let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(20), revoked_rx.recv()).await
        {
            subscribed = true;
            break;
        }
    }
    assert!(subscribed, "the follower subscribes");
    assert!(fill(&cache, "the-token", tok("j1", "g1")));
    assert!(cached(&cache, "the-token"));
    crate::bus::EventBus::publish(
        &bus,
        "events",
        r#"{"revoked":{"kind":"grant","id":"g1","expires_at":1}}"#,
    )
    .await
    .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), revoked_rx.recv())
        .await
        .expect("the revocation arrives")
        .unwrap();
    assert_eq!(r.id, "g1");
    assert!(!cached(&cache, "the-token"));
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), follower)
        .await
        .expect("stop ends the follow")
        .unwrap();
}
