//! One suite, run against both buses: what a follower sees must not depend on the backend.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn redis_bus() -> RedisBus {
    let url = redis_url();
    let pool = deadpool_redis::Config::from_url(url.clone())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();
    RedisBus::new(redis::Client::open(url).unwrap(), pool)
}

fn channel(name: &str) -> String {
    format!(
        "mcpauth-bus-test:{}:{name}:{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    )
}

/// Follows `channel` in a task, recording what it sees.
fn spawn_follower(
    bus: Arc<dyn EventBus>,
    channel: &str,
) -> (
    Arc<Mutex<Vec<String>>>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn({
        let (log, channel) = (log.clone(), channel.to_owned());
        async move {
            let stop = async move {
                let _ = stop_rx.await;
            };
            follow(&*bus, &channel, "test channel", stop, |e| {
                log.lock().unwrap().push(match e {
                    ChannelEvent::Subscribed => "subscribed".into(),
                    ChannelEvent::Message(m) => format!("message {m}"),
                    ChannelEvent::Lost => "lost".into(),
                });
                std::future::ready(())
            })
            .await;
        }
    });
    (log, stop_tx, handle)
}

async fn wait_for(log: &Arc<Mutex<Vec<String>>>, what: impl Fn(&[String]) -> bool) {
    for _ in 0..250 {
        if what(&log.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not seen within 5 s: {:?}", log.lock().unwrap());
}

/// Subscribed first; then every message published after it, in order, to every follower; a
/// publish with no follower succeeds; stop ends the follow.
async fn delivers_in_order_to_every_follower(bus: Arc<dyn EventBus>) {
    let ch = channel("order");
    bus.publish(&ch, "before anyone follows").await.unwrap();
    let (a, stop_a, task_a) = spawn_follower(bus.clone(), &ch);
    let (b, stop_b, task_b) = spawn_follower(bus.clone(), &ch);
    wait_for(&a, |l| l.first().is_some_and(|s| s == "subscribed")).await;
    wait_for(&b, |l| l.first().is_some_and(|s| s == "subscribed")).await;
    for i in 0..20 {
        bus.publish(&ch, &format!("m{i}")).await.unwrap();
    }
    bus.publish(&channel("other"), "elsewhere").await.unwrap();
    let expected: Vec<String> = std::iter::once("subscribed".to_owned())
        .chain((0..20).map(|i| format!("message m{i}")))
        .collect();
    for log in [&a, &b] {
        wait_for(log, |l| l.len() >= 21).await;
        assert_eq!(*log.lock().unwrap(), expected);
    }
    for (stop, task) in [(stop_a, task_a), (stop_b, task_b)] {
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("stop ends the follow")
            .unwrap();
    }
}

#[tokio::test]
async fn redis_bus_delivers_in_order_to_every_follower() {
    delivers_in_order_to_every_follower(Arc::new(redis_bus())).await;
}

#[tokio::test]
async fn memory_bus_delivers_in_order_to_every_follower() {
    delivers_in_order_to_every_follower(Arc::new(MemoryBus::new())).await;
}

#[tokio::test]
async fn memory_bus_clones_are_one_bus() {
    let bus = MemoryBus::new();
    let ch = channel("clones");
    let (log, stop, _task) = spawn_follower(Arc::new(bus.clone()), &ch);
    wait_for(&log, |l| !l.is_empty()).await;
    bus.publish(&ch, "x").await.unwrap();
    wait_for(&log, |l| l.len() == 2).await;
    assert_eq!(*log.lock().unwrap(), ["subscribed", "message x"]);
    stop.send(()).unwrap();
}

/// A follower that falls behind by more than the capacity is told it missed messages (`Lost`,
/// then `Subscribed`), exactly what a Redis follower sees after a dropped connection.
#[tokio::test]
async fn a_memory_follower_that_falls_behind_is_told_it_missed_messages() {
    let bus = MemoryBus::new();
    let ch = channel("lag");
    let mut events = bus.subscribe(&ch, "test channel");
    assert!(matches!(
        events.next().await,
        Some(ChannelEvent::Subscribed)
    ));
    for i in 0..(MEMORY_BUS_CAPACITY + 10) {
        bus.publish(&ch, &format!("m{i}")).await.unwrap();
    }
    assert!(matches!(events.next().await, Some(ChannelEvent::Lost)));
    assert!(matches!(
        events.next().await,
        Some(ChannelEvent::Subscribed)
    ));
    // What follows is the newest `capacity` messages, in order.
    match events.next().await {
        Some(ChannelEvent::Message(m)) => assert_eq!(m, "m10"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_redis_publish_without_redis_fails_and_says_why() {
    let pool = deadpool_redis::Config::from_url("redis://127.0.0.1:1")
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();
    let bus = RedisBus::new(redis::Client::open("redis://127.0.0.1:1").unwrap(), pool);
    let err = bus.publish("c", "x").await.unwrap_err();
    assert!(err.to_string().starts_with("event bus: "), "{err}");
}
