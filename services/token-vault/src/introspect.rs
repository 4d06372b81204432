//! Who the user is: the vault verifies the user's own MCP access token, so a caller cannot name
//! another user. The verifier is the deployment's (`verifier.mode`), the same three modes as
//! mcp-service's and the same mcpauth-runtime code:
//!
//! - `introspection_grpc` (default): auth-service's gRPC `TokenIntrospection`, cached in a
//!   bounded, time-limited cache keyed by the token's SHA-256 (never the token), never past the
//!   token's expiry, and evicted when auth-service publishes a revocation (see `revocations`);
//! - `introspection_http`: RFC 7662 at an external authorization server, cached likewise for at
//!   most `verifier.http.cache_ttl_ms` (no revocation feed covers another server's tokens);
//! - `jwt`: RFC 9068 JWT access tokens checked against the issuer's JWKS.
//!
//! The user id credentials are keyed by is the token's `sub`; with
//! `verifier.qualify_subject_with_issuer`, `<iss>#<sub>` (an issuer URL has no `#`), so that the
//! subjects of two authorization servers can never name the same user.

use std::time::Duration;

use mcpauth_runtime::external::{
    HttpIntrospection, JwtVerifier, Refusal as ExternalRefusal, Verified,
};
use mcpauth_runtime::introspection::{
    Introspected, IntrospectionClient, IntrospectionRefusal, IntrospectionSettings,
};
pub use mcpauth_runtime::revocation::now_secs;
use mcpauth_runtime::revocation::{Refusal, Revocable, RevocationIds, VerificationCache};

use crate::config::{Config, VerifierMode};

/// The user an MCP access token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub subject: String,
    pub client_id: String,
    pub expires_at: i64,
    pub token_id: Option<String>,
    pub grant_id: Option<String>,
    /// The issuer, in the external modes.
    pub issuer: Option<String>,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntrospectError {
    #[error("the access token is not active")]
    Inactive,
    #[error("the access token was issued for another resource")]
    WrongAudience,
    #[error("introspection unavailable: {0}")]
    Unavailable(String),
}

/// Introspected tokens (and, briefly, refused ones): mcpauth-runtime's revocation-aware
/// [`VerificationCache`], never served past the token's expiry.
pub type IntrospectionCache = VerificationCache<User, IntrospectError>;

impl Revocable for User {
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

impl Refusal for IntrospectError {
    fn expired() -> Self {
        IntrospectError::Inactive
    }
    fn is_transient(&self) -> bool {
        matches!(self, IntrospectError::Unavailable(_))
    }
}

impl From<Introspected> for User {
    fn from(t: Introspected) -> Self {
        User {
            subject: t.subject,
            client_id: t.client_id,
            expires_at: t.expires_at,
            token_id: t.token_id,
            grant_id: t.grant_id,
            issuer: None,
        }
    }
}

impl From<Verified> for User {
    fn from(t: Verified) -> Self {
        User {
            subject: t.subject,
            client_id: t.client_id,
            expires_at: t.expires_at,
            token_id: t.token_id,
            grant_id: None,
            issuer: t.issuer,
        }
    }
}

impl From<ExternalRefusal> for IntrospectError {
    fn from(r: ExternalRefusal) -> Self {
        match r {
            ExternalRefusal::WrongAudience => IntrospectError::WrongAudience,
            ExternalRefusal::Unavailable(why) => IntrospectError::Unavailable(why),
            // Expired, malformed, another issuer's: not active, as far as callers can tell.
            ExternalRefusal::Inactive
            | ExternalRefusal::Expired
            | ExternalRefusal::Malformed
            | ExternalRefusal::WrongIssuer => IntrospectError::Inactive,
        }
    }
}

impl From<IntrospectionRefusal> for IntrospectError {
    fn from(r: IntrospectionRefusal) -> Self {
        match r {
            // Expired by our clock is not active, as far as callers of the vault can tell.
            IntrospectionRefusal::Inactive | IntrospectionRefusal::Expired => {
                IntrospectError::Inactive
            }
            IntrospectionRefusal::WrongAudience => IntrospectError::WrongAudience,
            IntrospectionRefusal::Unavailable(code) => {
                IntrospectError::Unavailable(format!("{code:?}"))
            }
        }
    }
}

/// The configured verifier.
#[derive(Clone)]
enum Mode {
    Grpc(IntrospectionClient<User, IntrospectError>),
    Http(HttpIntrospection<User, IntrospectError>),
    Jwt(JwtVerifier),
}

/// The deployment's verifier (`verifier.mode`), cheap to clone.
#[derive(Clone)]
pub struct Introspector {
    mode: Mode,
    qualify_subject: bool,
}

impl Introspector {
    pub fn new(cfg: &Config) -> anyhow::Result<Self> {
        let resources = cfg.accepted_resources().to_vec();
        let mode = match cfg.verifier.mode {
            VerifierMode::IntrospectionGrpc => {
                let g = &cfg.introspection;
                Mode::Grpc(IntrospectionClient::new(IntrospectionSettings {
                    section: "introspection",
                    addr: &g.addr,
                    tls: g.tls.as_ref(),
                    credential: &g.credential,
                    accepted_resources: resources,
                    cache_ttl: Duration::from_millis(g.cache_ttl_ms),
                    cache_max_entries: g.cache_max_entries,
                    per_thread: false,
                    cache_metric: "mcpauth_vault_introspection_cache_total",
                })?)
            }
            VerifierMode::IntrospectionHttp => {
                let http = cfg.verifier.http.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("verifier.http: required for mode introspection_http")
                })?;
                Mode::Http(HttpIntrospection::new(
                    "verifier.http",
                    http,
                    resources,
                    cfg.introspection.cache_max_entries,
                    "mcpauth_vault_introspection_cache_total",
                )?)
            }
            VerifierMode::Jwt => {
                let jwt = cfg
                    .verifier
                    .jwt
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("verifier.jwt: required for mode jwt"))?;
                Mode::Jwt(JwtVerifier::with_metric(
                    "verifier.jwt",
                    jwt,
                    resources,
                    Some("mcpauth_vault_jwks_fetch_total"),
                )?)
            }
        };
        Ok(Self {
            mode,
            qualify_subject: cfg.verifier.qualify_subject_with_issuer,
        })
    }

    /// The cache auth-service's revocation feed evicts from: only in `introspection_grpc` mode
    /// (the feed says nothing of an external server's tokens).
    pub fn cache(&self) -> Option<&IntrospectionCache> {
        match &self.mode {
            Mode::Grpc(c) => Some(c.cache()),
            Mode::Http(_) | Mode::Jwt(_) => None,
        }
    }

    /// The user `token` speaks for, from the cache or the authorization server.
    pub async fn user(&self, token: &str) -> Result<User, IntrospectError> {
        let mut user = match &self.mode {
            Mode::Grpc(c) => c.verify(token).await?,
            Mode::Http(c) => c.verify(token).await?,
            Mode::Jwt(v) => User::from(v.verify(token).await?),
        };
        if self.qualify_subject {
            user.subject = qualified_subject(user.issuer.as_deref(), &user.subject)?;
        }
        Ok(user)
    }
}

/// `<iss>#<sub>`: an issuer URL has no fragment, so no two (issuer, subject) pairs give the same
/// id. A token without an issuer cannot be qualified and is refused.
fn qualified_subject(issuer: Option<&str>, subject: &str) -> Result<String, IntrospectError> {
    match issuer {
        Some(iss) if !iss.is_empty() && !iss.contains('#') => Ok(format!("{iss}#{subject}")),
        _ => Err(IntrospectError::Inactive),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_onto_the_shared_cache() {
        assert_eq!(IntrospectError::expired(), IntrospectError::Inactive);
        assert!(IntrospectError::Unavailable("down".into()).is_transient());
        assert!(!IntrospectError::WrongAudience.is_transient());
        // Expired by our clock is inactive to the vault's callers; the gRPC code is kept.
        assert_eq!(
            IntrospectError::from(IntrospectionRefusal::Expired),
            IntrospectError::Inactive
        );
        assert_eq!(
            IntrospectError::from(IntrospectionRefusal::Unavailable(tonic::Code::Unavailable)),
            IntrospectError::Unavailable("Unavailable".into())
        );
        // An external server's refusals: only its unavailability is transient.
        assert_eq!(
            IntrospectError::from(ExternalRefusal::WrongIssuer),
            IntrospectError::Inactive
        );
        assert_eq!(
            IntrospectError::from(ExternalRefusal::WrongAudience),
            IntrospectError::WrongAudience
        );
        assert!(IntrospectError::from(ExternalRefusal::Unavailable("x".into())).is_transient());
    }

    #[test]
    fn qualified_subjects_of_two_issuers_never_meet() {
        let a = qualified_subject(Some("https://a.example"), "alice").unwrap();
        let b = qualified_subject(Some("https://b.example"), "alice").unwrap();
        assert_ne!(a, b);
        assert_eq!(a, "https://a.example#alice");
        // A subject containing the separator cannot forge another issuer's id: the issuer part
        // is everything before the first '#', and issuers have none.
        let forged = qualified_subject(Some("https://a.example"), "x#alice").unwrap();
        assert_ne!(forged, b);
        assert_eq!(
            qualified_subject(None, "alice"),
            Err(IntrospectError::Inactive)
        );
        assert_eq!(
            qualified_subject(Some("https://a.example#frag"), "alice"),
            Err(IntrospectError::Inactive)
        );
    }
}
