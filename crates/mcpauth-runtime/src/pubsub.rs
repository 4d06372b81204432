//! Following a Redis pub/sub channel for as long as a service runs: subscribe, hand every message
//! to the service, and when the subscription drops, say so and subscribe again with backoff
//! (100 ms doubling to 5 s). Every service keeps a cache that some channel invalidates; what it
//! must do when messages may have been missed (forget everything) is the same in all of them.

use std::future::Future;

/// What happened on a followed channel.
#[derive(Debug)]
pub enum ChannelEvent {
    /// Subscribed (at start, or again after a loss): messages published before now were not
    /// seen.
    Subscribed,
    /// A message's payload (messages that are not UTF-8 are skipped).
    Message(String),
    /// The subscription is down (or could not be made); messages are being missed until the
    /// next `Subscribed`.
    Lost,
}

/// Follows `channel` on the Redis of `client` (from [`crate::redis_client`], so plain or TLS
/// as configured) until `stop` resolves, calling `on` with each [`ChannelEvent`] in order.
/// `what` names the channel in log lines. (The same as [`crate::bus::follow`] on a
/// [`crate::bus::RedisBus`].)
pub async fn follow_channel<F, Fut>(
    client: redis::Client,
    channel: &str,
    what: &'static str,
    stop: impl Future<Output = ()>,
    on: F,
) where
    F: FnMut(ChannelEvent) -> Fut,
    Fut: Future<Output = ()>,
{
    let events = crate::bus::redis_events(client, channel.to_owned(), what);
    crate::bus::follow_stream(events, stop, on).await;
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use std::time::Duration;

    use super::*;

    fn redis_url() -> String {
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    fn record(log: &Arc<Mutex<Vec<String>>>) -> impl FnMut(ChannelEvent) -> std::future::Ready<()> {
        let log = log.clone();
        move |e| {
            log.lock().unwrap().push(match e {
                ChannelEvent::Subscribed => "subscribed".into(),
                ChannelEvent::Message(m) => format!("message {m}"),
                ChannelEvent::Lost => "lost".into(),
            });
            std::future::ready(())
        }
    }

    #[tokio::test]
    async fn messages_arrive_after_subscribed_and_stop_ends_the_follow() {
        let channel = format!("mcpauth-runtime-test:{}", std::process::id());
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let url = redis_url();
        let follower = tokio::spawn({
            let (log, channel) = (log.clone(), channel.clone());
            async move {
                let stop = async move {
                    let _ = stop_rx.await;
                };
                let client = redis::Client::open(url).unwrap();
                follow_channel(client, &channel, "test channel", stop, record(&log)).await;
            }
        });
        let client = redis::Client::open(redis_url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        // Publish until the follower has subscribed and received one message.
        for i in 0..100 {
            let _: i64 = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(format!("m{i}"))
                .query_async(&mut c)
                .await
                .unwrap();
            if log.lock().unwrap().iter().any(|l| l.starts_with("message")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(2), follower)
            .await
            .expect("stop ends the follow")
            .unwrap();
        let log = log.lock().unwrap();
        assert_eq!(log[0], "subscribed", "{log:?}");
        assert!(log[1].starts_with("message m"), "{log:?}");
        assert!(!log.contains(&"lost".to_owned()), "{log:?}");
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_reported_lost_and_retried_with_backoff() {
        // Nothing listens on port 1.
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = tokio::time::sleep(Duration::from_millis(1_000));
        follow_channel(
            redis::Client::open("redis://127.0.0.1:1").unwrap(),
            "c",
            "test channel",
            stop,
            record(&log),
        )
        .await;
        let log = log.lock().unwrap();
        // Attempts at 0, 100, 300, 700 ms (backoff doubling from 100 ms) within one second.
        assert!((3..=5).contains(&log.len()), "{log:?}");
        assert!(log.iter().all(|l| l == "lost"), "{log:?}");
    }
}
