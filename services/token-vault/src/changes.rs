//! What follows a write of a credential, whoever made it (a `put`, a delete, a refresh): the row
//! is evicted from this replica's cache and every other's, the access goes to the trail, and
//! mcp-service hears about connections that changed state. One value shared by the vault's
//! operations and the refresh path, so that neither reaches into the other.

use crate::audit::{AuditEvent, AuditLog};
use crate::cache::{CredentialCache, Invalidations};
use crate::events::{ConnectionEvent, ConnectionEvents};

/// The after-write duties. Cheap to clone.
#[derive(Clone)]
pub struct Changes {
    /// Stored rows (ciphertext) by `(user, provider)`; see `cache`.
    pub cache: CredentialCache,
    pub invalidations: Invalidations,
    pub events: ConnectionEvents,
    pub audit: AuditLog,
}

impl Changes {
    /// After a write of `(user_id, provider)`: evicts it here and on every other replica.
    pub async fn written(&self, user_id: &str, provider: &str) {
        let key = crate::cache::key(user_id, provider);
        self.cache.evict(&key);
        self.invalidations.publish(&key).await;
    }

    /// Tells followers (mcp-service) that a connection changed state.
    pub async fn connection(&self, user_id: &str, provider: &str, event: ConnectionEvent) {
        self.events.publish(user_id, provider, event).await;
    }

    /// Records an access in the trail.
    pub async fn audit(&self, event: AuditEvent) {
        self.audit.record(event).await;
    }
}
