//! Verification of RFC 9068 JWT access tokens against the issuer's JWKS (`verifier.mode =
//! "jwt"`): mcpauth-runtime's [`JwtVerifier`], shared with token-vault.

use futures_util::future::BoxFuture;
use mcpauth_runtime::external::{JwtVerifier as Shared, Refusal, Verified};
use mcpauth_runtime::revocation::Revocable as _;

use crate::auth::{Principal, TokenVerifier, VerifyError};
use crate::config::JwtConfig;
use crate::verify::revoked::RevokedIds;

pub struct JwtVerifier {
    inner: Shared,
    /// Revocations heard on auth-service's feed (`verifier.jwt.follow_revocations`).
    revoked: Option<RevokedIds>,
}

impl From<Verified> for Principal {
    fn from(t: Verified) -> Self {
        Principal {
            subject: t.subject,
            client_id: t.client_id,
            scopes: t.scopes,
            expires_at: t.expires_at,
            token_id: t.token_id,
            grant_id: t.grant_id,
            access_token: None,
        }
    }
}

impl From<Refusal> for VerifyError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Inactive => VerifyError::Inactive,
            Refusal::WrongAudience => VerifyError::WrongAudience,
            Refusal::WrongIssuer => VerifyError::WrongIssuer,
            Refusal::Expired => VerifyError::Expired,
            Refusal::Malformed => VerifyError::Malformed,
            Refusal::Unavailable(why) => VerifyError::Unavailable(why),
        }
    }
}

impl JwtVerifier {
    pub fn new(cfg: &JwtConfig, resource: &str) -> anyhow::Result<Self> {
        Ok(Self {
            inner: Shared::with_metric(
                "verifier.jwt",
                cfg,
                vec![resource.to_owned()],
                Some("mcpauth_mcp_jwks_fetch_total"),
            )?,
            revoked: None,
        })
    }

    /// Refuses tokens that `revoked` covers (fed from auth-service's revocation channel).
    pub fn with_revocations(mut self, revoked: RevokedIds) -> Self {
        self.revoked = Some(revoked);
        self
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, VerifyError>> {
        Box::pin(async move {
            let verified = self.inner.verify(token).await?;
            let issued_at = verified.issued_at.unwrap_or(i64::MIN);
            let principal = Principal::from(verified);
            if let Some(r) = &self.revoked
                && r.covers(&principal.revocation_ids(), issued_at)
            {
                return Err(VerifyError::Inactive);
            }
            Ok(principal)
        })
    }
}
