//! The event bus the services publish invalidations on (revocations, client changes, connection
//! changes) and follow: Redis pub/sub when replicas share a Redis, an in-process broadcast in the
//! embedded single-process mode. Both give a follower the same sequence of [`ChannelEvent`]s, so
//! what a cache does when messages may have been missed (`Subscribed` after `Lost`: forget
//! everything) is written once, against [`EventBus`], and holds for both.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;

pub use crate::pubsub::ChannelEvent;

/// A publish that did not reach the bus (the event is lost: callers owe a resync).
#[derive(Debug, thiserror::Error)]
#[error("event bus: {0}")]
pub struct BusError(String);

/// Publish/subscribe by channel name. Object-safe: services hold an `Arc<dyn EventBus>`.
#[async_trait::async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Sends `payload` to every current follower of `channel` (none is not an error).
    async fn publish(&self, channel: &str, payload: &str) -> Result<(), BusError>;

    /// Follows `channel` for as long as the stream is held: `Subscribed` first (and again after
    /// every loss), each message, `Lost` when messages are being missed. The stream never ends
    /// by itself; drop it to unsubscribe. `what` names the channel in log lines.
    fn subscribe(&self, channel: &str, what: &'static str) -> BoxStream<'static, ChannelEvent>;
}

/// Follows `channel` on `bus` until `stop` resolves, calling `on` with each event in order.
pub async fn follow<F, Fut>(
    bus: &dyn EventBus,
    channel: &str,
    what: &'static str,
    stop: impl Future<Output = ()>,
    on: F,
) where
    F: FnMut(ChannelEvent) -> Fut,
    Fut: Future<Output = ()>,
{
    follow_stream(bus.subscribe(channel, what), stop, on).await;
}

pub(crate) async fn follow_stream<F, Fut>(
    mut events: BoxStream<'static, ChannelEvent>,
    stop: impl Future<Output = ()>,
    mut on: F,
) where
    F: FnMut(ChannelEvent) -> Fut,
    Fut: Future<Output = ()>,
{
    tokio::pin!(stop);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(event) => on(event).await,
                None => return,
            },
            () = &mut stop => return,
        }
    }
}

/// Redis pub/sub: subscriptions from a [`redis::Client`] (plain or TLS, from
/// [`crate::redis_client`]), publishes through the service's pool.
#[derive(Clone)]
pub struct RedisBus {
    client: redis::Client,
    pool: deadpool_redis::Pool,
}

impl RedisBus {
    pub fn new(client: redis::Client, pool: deadpool_redis::Pool) -> Self {
        Self { client, pool }
    }
}

#[async_trait::async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, channel: &str, payload: &str) -> Result<(), BusError> {
        let mut c = self.pool.get().await.map_err(|e| BusError(e.to_string()))?;
        let _: i64 = redis::AsyncCommands::publish(&mut *c, channel, payload)
            .await
            .map_err(|e| BusError(e.to_string()))?;
        Ok(())
    }

    fn subscribe(&self, channel: &str, what: &'static str) -> BoxStream<'static, ChannelEvent> {
        redis_events(self.client.clone(), channel.to_owned(), what)
    }
}

/// The events of one Redis subscription, re-made after every loss with backoff (100 ms doubling
/// to 5 s). A task feeds the stream and ends when the stream is dropped.
pub(crate) fn redis_events(
    client: redis::Client,
    channel: String,
    what: &'static str,
) -> BoxStream<'static, ChannelEvent> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ChannelEvent>(64);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let subscribed = match client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                    Ok(()) => Some(pubsub),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot subscribe to {what}, retrying");
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to {what}, retrying");
                    None
                }
            };
            if let Some(mut pubsub) = subscribed {
                backoff = Duration::from_millis(100);
                if tx.send(ChannelEvent::Subscribed).await.is_err() {
                    return;
                }
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        msg = messages.next() => {
                            let Some(msg) = msg else { break };
                            if let Ok(payload) = msg.get_payload::<String>()
                                && tx.send(ChannelEvent::Message(payload)).await.is_err()
                            {
                                return;
                            }
                        }
                        () = tx.closed() => return,
                    }
                }
                tracing::warn!("{what} subscription closed, reconnecting");
            }
            if tx.send(ChannelEvent::Lost).await.is_err() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = tx.closed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// Followers that fall this many messages behind miss messages (and are told: `Lost`, then
/// `Subscribed`).
const MEMORY_BUS_CAPACITY: usize = 1024;

/// The in-process bus of the embedded mode: one broadcast per channel, shared by every service
/// in the process (clone it; clones are the same bus).
#[derive(Clone, Default)]
pub struct MemoryBus {
    channels: Arc<Mutex<HashMap<String, tokio::sync::broadcast::Sender<Arc<str>>>>>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn sender(&self, channel: &str) -> tokio::sync::broadcast::Sender<Arc<str>> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels
            .entry(channel.to_owned())
            .or_insert_with(|| tokio::sync::broadcast::channel(MEMORY_BUS_CAPACITY).0)
            .clone()
    }
}

#[async_trait::async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, channel: &str, payload: &str) -> Result<(), BusError> {
        // No follower is not an error (as with Redis, where PUBLISH then reaches 0 clients).
        let _ = self.sender(channel).send(Arc::from(payload));
        Ok(())
    }

    fn subscribe(&self, channel: &str, what: &'static str) -> BoxStream<'static, ChannelEvent> {
        use tokio::sync::broadcast::error::RecvError;
        let rx = self.sender(channel).subscribe();
        // State: the receiver, and what to say before the next message.
        let pending: Vec<ChannelEvent> = vec![ChannelEvent::Subscribed];
        futures_util::stream::unfold((rx, pending), move |(mut rx, mut pending)| async move {
            if let Some(event) = pending.pop() {
                return Some((event, (rx, pending)));
            }
            match rx.recv().await {
                Ok(payload) => Some((ChannelEvent::Message(payload.to_string()), (rx, pending))),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "{what} follower fell behind");
                    // Popped from the end: `Lost` first, then `Subscribed`.
                    pending.push(ChannelEvent::Subscribed);
                    Some((ChannelEvent::Lost, (rx, pending)))
                }
                // The bus holds every sender, so the channel never closes while it exists.
                Err(RecvError::Closed) => None,
            }
        })
        .boxed()
    }
}

#[cfg(test)]
#[path = "bus/tests.rs"]
mod tests;
