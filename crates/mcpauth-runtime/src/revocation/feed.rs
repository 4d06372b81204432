//! Following auth-service's event channel: each revocation evicts the tokens it covers from a
//! [`VerificationCache`] at once, so a revoked token is refused on every replica within a
//! second. Whenever revocations may have been missed the cache is emptied: while the
//! subscription is down (nothing is cached then), when it is back, when auth-service says one
//! of its publishes failed (`"resync"`), and on a revocation of a kind this build cannot place.

use std::future::Future;

use super::{Refusal, Revocable, Revocation, Scope, VerificationCache};
use crate::bus::EventBus;
use crate::pubsub::{ChannelEvent, follow_channel};

/// An event on auth-service's channel, as far as verification caches are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// Every token covered by this revocation is revoked.
    Revoked(Revocation),
    /// Revocations may have been missed (a publish failed, or the kind is unknown here):
    /// forget everything.
    Resync,
    /// Not about revocations (client changes).
    Other,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Wire {
    Revoked { kind: String, id: String },
    ClientChanged(#[allow(dead_code)] String),
    Resync,
}

/// Reads one message of the channel; `None` for one that does not parse (ignored).
pub fn parse_event(payload: &str) -> Option<FeedEvent> {
    Some(match serde_json::from_str::<Wire>(payload).ok()? {
        Wire::Revoked { kind, id } => match Scope::from_kind(&kind) {
            Some(scope) => FeedEvent::Revoked(Revocation { scope, id }),
            None => FeedEvent::Resync,
        },
        Wire::ClientChanged(_) => FeedEvent::Other,
        Wire::Resync => FeedEvent::Resync,
    })
}

/// Applies one channel event to `cache`; returns the revocation to pass on, if any.
pub fn apply<V: Revocable, E: Refusal>(
    cache: &VerificationCache<V, E>,
    event: ChannelEvent,
) -> Option<Revocation> {
    match event {
        // Revocations published before now were not seen: start empty, and cache again.
        ChannelEvent::Subscribed => cache.set_live(true),
        // Revocations are being missed until the next `Subscribed`.
        ChannelEvent::Lost => cache.set_live(false),
        ChannelEvent::Message(payload) => match parse_event(&payload) {
            Some(FeedEvent::Revoked(r)) => {
                cache.evict(&r);
                return Some(r);
            }
            Some(FeedEvent::Resync) => {
                tracing::info!("revocations may have been missed, verification cache emptied");
                cache.clear();
            }
            Some(FeedEvent::Other) => {}
            None => tracing::warn!("ignoring malformed revocation event"),
        },
    }
    None
}

/// Follows `channel` until `stop`, keeping `cache` in step; each revocation also goes to
/// `on_revoked` (e.g. to end open event streams of the revoked token). The cache serves
/// nothing until the first subscription is made.
pub async fn follow<V, E>(
    redis: redis::Client,
    channel: &str,
    cache: VerificationCache<V, E>,
    stop: impl Future<Output = ()>,
    mut on_revoked: impl FnMut(Revocation),
) where
    V: Revocable,
    E: Refusal,
{
    cache.set_live(false);
    follow_channel(redis, channel, "revocations", stop, |event| {
        if let Some(r) = apply(&cache, event) {
            on_revoked(r);
        }
        std::future::ready(())
    })
    .await;
    cache.set_live(false);
}

/// [`follow`] on an [`EventBus`] (Redis pub/sub or the in-process bus of the embedded mode):
/// the same events, the same cache discipline.
pub async fn follow_bus<V, E>(
    bus: &dyn EventBus,
    channel: &str,
    cache: VerificationCache<V, E>,
    stop: impl Future<Output = ()>,
    mut on_revoked: impl FnMut(Revocation),
) where
    V: Revocable,
    E: Refusal,
{
    cache.set_live(false);
    crate::bus::follow(bus, channel, "revocations", stop, |event| {
        if let Some(r) = apply(&cache, event) {
            on_revoked(r);
        }
        std::future::ready(())
    })
    .await;
    cache.set_live(false);
}

#[cfg(test)]
#[path = "feed_tests.rs"]
mod tests;
