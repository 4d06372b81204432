//! Revocation fan-out: auth-service publishes every revocation on `<auth prefix>:events` (on the
//! event bus: Redis pub/sub, or in-process in the embedded mode); each
//! vault replica evicts the tokens it covers from its introspection cache at once. The protocol
//! (and the cache) are mcpauth-runtime's `revocation`, shared with mcp-service.

use std::sync::Arc;

use mcpauth_runtime::bus::EventBus;
use tokio_util::sync::CancellationToken;

use crate::introspect::IntrospectionCache;

/// Follows the revocation channel until `cancel`. While the subscription is down nothing is
/// cached, and the cache is emptied when it goes down and comes back.
pub async fn follow(
    bus: Arc<dyn EventBus>,
    channel: String,
    cache: IntrospectionCache,
    cancel: CancellationToken,
) {
    mcpauth_runtime::revocation::feed::follow_bus(
        &*bus,
        &channel,
        cache,
        cancel.cancelled(),
        |_| {},
    )
    .await;
}
