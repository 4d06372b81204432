//! Revocation fan-out: auth-service publishes every revocation on `<auth prefix>:events`; each
//! vault replica evicts the tokens it covers from its introspection cache at once. While the
//! subscription is down the cache is emptied on reconnect, so nothing revoked meanwhile
//! survives. The same protocol as mcp-service's `revocations`.

use mcpauth_runtime::pubsub::{ChannelEvent, follow_channel};

use tokio_util::sync::CancellationToken;

use crate::introspect::IntrospectionCache;

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Event {
    Revoked { kind: String, id: String },
    ClientChanged(#[allow(dead_code)] String),
}

/// Follows the revocation channel until `cancel`. While the subscription is down the cache is
/// emptied (and again when it is back), so nothing revoked meanwhile survives.
pub async fn follow(
    redis: redis::Client,
    channel: String,
    cache: IntrospectionCache,
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
                    }
                }
                ChannelEvent::Lost => cache.clear(),
            }
            std::future::ready(())
        },
    )
    .await;
}
