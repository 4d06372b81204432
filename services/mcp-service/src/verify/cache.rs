//! The verification cache of the introspecting verifiers: mcpauth-runtime's
//! [`VerificationCache`], revocation-aware (see `crate::revocations`), over [`Principal`]s.

use mcpauth_runtime::revocation::{Refusal, Revocable, Revocation, RevocationIds};
pub use mcpauth_runtime::revocation::{VerificationCache, now_secs, token_key};

use crate::auth::{Principal, VerifyError};

/// Verified (and briefly, refused) tokens.
pub type IntrospectionCache = VerificationCache<Principal, VerifyError>;

impl Revocable for Principal {
    fn revocation_ids(&self) -> RevocationIds<'_> {
        RevocationIds {
            token_id: self.token_id.as_deref(),
            grant_id: self.grant_id.as_deref(),
            client_id: &self.client_id,
            subject: &self.subject,
        }
    }
    fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

impl Refusal for VerifyError {
    fn expired() -> Self {
        VerifyError::Expired
    }
    fn is_transient(&self) -> bool {
        matches!(self, VerifyError::Unavailable(_))
    }
}

impl Principal {
    /// Whether `revocation` covers this principal's token.
    pub fn revoked_by(&self, revocation: &Revocation) -> bool {
        revocation.covers(&self.revocation_ids())
    }
}

/// Answers `token` from `cache`, or verifies it with `verify` and caches the answer unless a
/// revocation arrived meanwhile that covers it (mcpauth-runtime's, counted as this service's
/// token cache).
pub async fn verify_cached(
    cache: &IntrospectionCache,
    token: &str,
    verify: impl Future<Output = Result<Principal, VerifyError>>,
) -> Result<Principal, VerifyError> {
    mcpauth_runtime::introspection::verify_cached(
        cache,
        "mcpauth_mcp_token_cache_total",
        token,
        verify,
    )
    .await
}
