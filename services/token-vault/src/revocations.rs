//! Revocation fan-out: auth-service publishes every revocation on `<auth prefix>:events`; each
//! vault replica evicts the tokens it covers from its introspection cache at once. The protocol
//! (and the cache) are mcpauth-runtime's `revocation`, shared with mcp-service.

use tokio_util::sync::CancellationToken;

use crate::introspect::IntrospectionCache;

/// Follows the revocation channel until `cancel`. While the subscription is down nothing is
/// cached, and the cache is emptied when it goes down and comes back.
pub async fn follow(
    redis: redis::Client,
    channel: String,
    cache: IntrospectionCache,
    cancel: CancellationToken,
) {
    mcpauth_runtime::revocation::feed::follow(redis, &channel, cache, cancel.cancelled(), |_| {})
        .await;
}
