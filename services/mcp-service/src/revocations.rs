//! Revocation fan-out: auth-service publishes every revocation on the event bus (Redis
//! pub/sub, or the in-process bus of the embedded mode); each mcp-service replica evicts the tokens it covers from its introspection cache at once (mcpauth-runtime's
//! `revocation::feed`), so a revoked token is refused everywhere within a second, and open event
//! streams of a revoked token end.

use std::sync::Arc;

use mcpauth_runtime::bus::EventBus;
use tokio_util::sync::CancellationToken;

use crate::verify::cache::IntrospectionCache;

/// A revocation as other components of this replica see it (see `Principal::revoked_by`).
pub use mcpauth_runtime::revocation::Revocation as Revoked;

/// Follows auth-service's event channel until `cancel`: each revocation evicts the tokens it
/// covers from `cache` and goes to `notify` (open event streams end). While the subscription is
/// down nothing is cached, and the cache is emptied when it goes down and comes back.
pub async fn follow(
    bus: Arc<dyn EventBus>,
    channel: String,
    cache: IntrospectionCache,
    notify: tokio::sync::broadcast::Sender<Revoked>,
    cancel: CancellationToken,
) {
    mcpauth_runtime::revocation::feed::follow_bus(
        &*bus,
        &channel,
        cache,
        cancel.cancelled(),
        |r| {
            let _ = notify.send(r);
        },
    )
    .await;
}
