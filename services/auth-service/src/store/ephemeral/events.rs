//! Replica events: revocations and client changes that every auth-service replica, and the
//! verification caches of mcp-service and token-vault, must hear about. They go on the event bus
//! ([`mcpauth_runtime::bus`]: Redis pub/sub, or the in-process bus of the embedded mode) on the
//! channel `<prefix>:events`.
//!
//! A publish can fail (Redis unreachable); the event is then lost for whoever caches what it
//! invalidates, so a `Resync` is owed and published by the re-sync loop as soon as the bus takes
//! it again. That rule lives here, once, whatever carries the events.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mcpauth_runtime::bus::{BusError, EventBus};
use serde::{Deserialize, Serialize};

use crate::store::revocations::Revocation;

/// Events that replicas fan out to each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaEvent {
    Revoked(Revocation),
    ClientChanged(String),
    /// An earlier event could not be published: whoever caches what events invalidate (the
    /// verification caches of mcp-service and token-vault) forgets everything.
    Resync,
}

/// Publishing replica events, with the owed `Resync`. Cheap to clone (clones share what is owed).
#[derive(Clone)]
pub struct ReplicaEvents {
    bus: Arc<dyn EventBus>,
    channel: Arc<str>,
    /// An event was lost (its publish failed) and no `Resync` has been published since.
    resync_owed: Arc<AtomicBool>,
}

impl ReplicaEvents {
    /// Events on `bus`, channel `<prefix>:events`.
    pub fn new(bus: Arc<dyn EventBus>, prefix: &str) -> Self {
        Self {
            bus,
            channel: format!("{prefix}:events").into(),
            resync_owed: Arc::default(),
        }
    }

    /// The bus the events go on (to follow them).
    pub fn bus(&self) -> &dyn EventBus {
        &*self.bus
    }

    /// The channel of replica events.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Publishes `event` to every replica. When that fails a `Resync` is owed, published by
    /// [`Self::publish_owed_resync`] (the revocation re-sync loop calls it every tick).
    pub async fn publish(&self, event: &ReplicaEvent) -> Result<(), BusError> {
        let sent = self.publish_now(event).await;
        if sent.is_err() {
            self.resync_owed.store(true, Ordering::Release);
        }
        sent
    }

    async fn publish_now(&self, event: &ReplicaEvent) -> Result<(), BusError> {
        // Serializing these plain enums cannot fail.
        let body = serde_json::to_string(event).expect("replica events serialize");
        self.bus.publish(&self.channel, &body).await
    }

    /// Publishes the `Resync` owed since a failed publish, if any; it stays owed until sent.
    pub async fn publish_owed_resync(&self) -> Result<(), BusError> {
        if !self.resync_owed.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let sent = self.publish_now(&ReplicaEvent::Resync).await;
        if sent.is_err() {
            self.resync_owed.store(true, Ordering::Release);
        } else {
            tracing::info!("replica events were lost; resync published");
        }
        sent
    }

    /// Whether a `Resync` is owed.
    pub fn resync_owed(&self) -> bool {
        self.resync_owed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use mcpauth_runtime::bus::RedisBus;

    use super::*;

    fn events(url: &str) -> ReplicaEvents {
        let client = redis::Client::open(url).unwrap();
        let pool = mcpauth_runtime::redis_pool("redis", &client, 2).unwrap();
        let prefix = format!("eph-test-{}", uuid::Uuid::new_v4().simple());
        ReplicaEvents::new(Arc::new(RedisBus::new(client, pool)), &prefix)
    }

    fn redis_url() -> String {
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    #[tokio::test]
    async fn a_failed_publish_owes_a_resync() {
        // Nothing listens on port 1.
        let e = events("redis://127.0.0.1:1");
        assert!(!e.resync_owed());
        let r = e.publish(&ReplicaEvent::ClientChanged("c".into())).await;
        assert!(r.is_err());
        assert!(e.resync_owed());
        // Still unreachable: still owed.
        assert!(e.publish_owed_resync().await.is_err());
        assert!(e.resync_owed());
    }

    #[tokio::test]
    async fn an_owed_resync_is_published_once() {
        let e = events(&redis_url());
        let client = redis::Client::open(redis_url()).unwrap();
        let mut sub = client.get_async_pubsub().await.unwrap();
        sub.subscribe(e.channel()).await.unwrap();
        // Nothing owed: nothing published.
        e.publish_owed_resync().await.unwrap();
        e.resync_owed.store(true, Ordering::Release);
        e.publish_owed_resync().await.unwrap();
        assert!(!e.resync_owed());
        e.publish(&ReplicaEvent::ClientChanged("marker".into()))
            .await
            .unwrap();
        let mut messages = sub.on_message();
        let mut got = Vec::new();
        for _ in 0..2 {
            let m = tokio::time::timeout(std::time::Duration::from_secs(5), messages.next())
                .await
                .unwrap()
                .unwrap();
            got.push(m.get_payload::<String>().unwrap());
        }
        assert_eq!(got, [r#""resync""#, r#"{"client_changed":"marker"}"#]);
    }
}
