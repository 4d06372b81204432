//! The server side of the `state` of a redirect to an upstream provider, by the state's SHA-256:
//! stored only after consent, immediately before the redirect; taken exactly once at the
//! callback.

pub mod memory;
pub mod redis;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::pending::PendingAuthorization;
use crate::error::StoreError;

/// What an upstream authorization (a redirect to a provider) is for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamPurpose {
    /// Logging a user in for an `/authorize` request the user already consented to.
    Login { pending: Box<PendingAuthorization> },
    /// Logging a user in to open a connect link (`ticket` is the link's secret part).
    ConnectLogin { ticket: String },
    /// Connecting `provider` for an already identified user.
    Connect {
        user_id: Uuid,
        /// When the connect link was issued (Unix seconds): a user revoked or disabled at or
        /// after it gets nothing stored by this flow. `None` (stored by an earlier version)
        /// counts as older than any revocation.
        #[serde(default)]
        ticket_created_at: Option<i64>,
    },
}

/// The server side of an upstream `state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpstreamAuthState {
    pub provider: String,
    pub purpose: UpstreamPurpose,
    /// PKCE verifier of this upstream request.
    pub code_verifier: String,
    /// OIDC `nonce` sent upstream; the ID token must carry it back.
    pub nonce: String,
    /// SHA-256 (hex) of the `__Host-` cookie set on the browser with the redirect.
    pub browser_sha256: String,
}

/// Upstream states, each living `ttl` seconds.
#[async_trait::async_trait]
pub trait UpstreamStates: Send + Sync + 'static {
    async fn put(
        &self,
        state_sha256: &[u8],
        s: &UpstreamAuthState,
        ttl: u64,
    ) -> Result<(), StoreError>;

    /// Takes an upstream state: a state is honoured once, replays (and concurrent callbacks
    /// but one) find nothing.
    async fn take(&self, state_sha256: &[u8]) -> Result<Option<UpstreamAuthState>, StoreError>;
}
