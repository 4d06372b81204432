//! Connection events on the event bus (Redis pub/sub, or the in-process bus of the embedded
//! mode): `<key_prefix>:connections {"user_id", "provider", "status"}` after every stored,
//! deleted or refused credential. mcp-service subscribes to update its tool lists. Publishing is
//! best effort: a lost event never blocks a request.

use std::sync::Arc;

use mcpauth_runtime::bus::EventBus;
use serde::Serialize;

/// What happened to a connection.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionEvent {
    Connected,
    Disconnected,
    ReauthorizationRequired,
}

#[derive(Serialize)]
struct Message<'a> {
    user_id: &'a str,
    provider: &'a str,
    status: ConnectionEvent,
}

#[derive(Clone)]
pub struct ConnectionEvents {
    bus: Arc<dyn EventBus>,
    channel: String,
}

impl ConnectionEvents {
    pub fn new(bus: Arc<dyn EventBus>, key_prefix: &str) -> Self {
        Self {
            bus,
            channel: format!("{key_prefix}:connections"),
        }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub async fn publish(&self, user_id: &str, provider: &str, status: ConnectionEvent) {
        let body = serde_json::to_string(&Message {
            user_id,
            provider,
            status,
        })
        .expect("event serializes");
        if let Err(e) = self.bus.publish(&self.channel, &body).await {
            tracing::warn!(error = %e, provider, ?status, "connection event not published");
        }
    }
}
