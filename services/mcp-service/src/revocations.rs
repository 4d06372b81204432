//! Revocation fan-out: auth-service publishes every revocation on Redis; each mcp-service
//! replica evicts the tokens it covers from its introspection cache at once, so a revoked token
//! is refused everywhere within a second. While the subscription is down the cache is emptied
//! on reconnect, so nothing revoked meanwhile survives.

use mcpauth_runtime::pubsub::{ChannelEvent, follow_channel};

use tokio_util::sync::CancellationToken;

use crate::verify::cache::IntrospectionCache;

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Event {
    Revoked { kind: String, id: String },
    ClientChanged(#[allow(dead_code)] String),
}

/// A revocation as other components of this replica see it: `kind` is `token` (a jti), `grant`
/// or `client`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub kind: String,
    pub id: String,
}

impl Revoked {
    /// Whether this revocation covers a token of `principal`.
    pub fn covers(&self, p: &crate::auth::Principal) -> bool {
        match self.kind.as_str() {
            "token" => p.token_id.as_deref() == Some(self.id.as_str()),
            "grant" => p.grant_id.as_deref() == Some(self.id.as_str()),
            "client" => p.client_id == self.id,
            _ => false,
        }
    }
}

/// Follows auth-service's event channel until `cancel`: each revocation evicts the tokens it
/// covers from `cache` and goes to `notify` (open event streams end). While the subscription is
/// down the cache is emptied (and again when it is back).
pub async fn follow(
    redis: redis::Client,
    channel: String,
    cache: IntrospectionCache,
    notify: tokio::sync::broadcast::Sender<Revoked>,
    cancel: CancellationToken,
) {
    follow_channel(
        redis,
        &channel,
        "revocations",
        cancel.cancelled(),
        |event| {
            match event {
                // Revocations published before now were not seen (the subscription was lost, or
                // has only now been made): forget everything cached so far.
                ChannelEvent::Subscribed => cache.clear(),
                ChannelEvent::Message(payload) => {
                    if let Ok(Event::Revoked { kind, id }) = serde_json::from_str::<Event>(&payload)
                    {
                        cache.evict(&kind, &id);
                        // Open event streams of the revoked token end too.
                        let _ = notify.send(Revoked { kind, id });
                    }
                }
                ChannelEvent::Lost => cache.clear(),
            }
            std::future::ready(())
        },
    )
    .await;
}
