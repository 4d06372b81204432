//! Verification of RFC 9068 JWT access tokens against the issuer's JWKS (`verifier.mode =
//! "jwt"`): mcpauth-runtime's [`JwtVerifier`], shared with token-vault.

use futures_util::future::BoxFuture;
use mcpauth_runtime::external::{JwtVerifier as Shared, Refusal, Verified};

use crate::auth::{Principal, TokenVerifier, VerifyError};
use crate::config::JwtConfig;

pub struct JwtVerifier {
    inner: Shared,
}

impl From<Verified> for Principal {
    fn from(t: Verified) -> Self {
        Principal {
            subject: t.subject,
            client_id: t.client_id,
            scopes: t.scopes,
            expires_at: t.expires_at,
            token_id: t.token_id,
            grant_id: None,
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
        })
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, VerifyError>> {
        Box::pin(async move { Ok(self.inner.verify(token).await?.into()) })
    }
}
