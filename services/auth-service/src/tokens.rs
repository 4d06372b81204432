//! Issuing, validating, introspecting and revoking tokens. Shared by the HTTP and gRPC faces.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use uuid::Uuid;

use crate::domain::jwt::{JwtKeys, looks_like_jwt};
use crate::domain::token::{ACCESS_PREFIX, AccessClaims, Actor, KeyRing, OpaqueKind, hash};
use crate::error::StoreError;
use crate::store::ephemeral::{Ephemeral, ReplicaEvent};
use crate::store::grants::GrantStore;
use crate::store::revocations::{DenyList, Revocation, RevocationKind, RevocationStore};

/// What a token is, as introspection reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

/// An active token, as RFC 7662 describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveToken {
    pub kind: TokenKind,
    pub subject: String,
    pub client_id: String,
    pub scope: String,
    pub audience: String,
    pub expires_at: i64,
    pub issued_at: i64,
    pub token_id: String,
    pub grant_id: Option<String>,
    /// The actor chain of an exchanged access token (RFC 8693 `act`).
    pub act: Option<Box<Actor>>,
}

/// Access-token issuance and validation (no database), and revocation.
#[derive(Clone)]
pub struct TokenService {
    pub keys: KeyRing,
    pub deny: DenyList,
    access_ttl: i64,
    grants: Arc<dyn GrantStore>,
    revocations: Arc<dyn RevocationStore>,
    ephemeral: Ephemeral,
    issuer: Arc<str>,
    /// RFC 9068 signing keys and the resources whose access tokens are JWTs (`with_jwt`).
    jwt: Option<JwtKeys>,
    jwt_audiences: Arc<HashSet<String>>,
}

impl TokenService {
    pub fn new(
        keys: KeyRing,
        deny: DenyList,
        access_ttl: i64,
        grants: Arc<dyn GrantStore>,
        revocations: Arc<dyn RevocationStore>,
        ephemeral: Ephemeral,
        issuer: &str,
    ) -> Self {
        Self {
            keys,
            deny,
            access_ttl,
            grants,
            revocations,
            ephemeral,
            issuer: issuer.into(),
            jwt: None,
            jwt_audiences: Arc::default(),
        }
    }

    /// Issues RFC 9068 JWTs signed by `keys` for the resources in `audiences`; other resources
    /// keep the sealed format. JWTs are verified (and introspected) whatever their audience.
    pub fn with_jwt(mut self, keys: JwtKeys, audiences: impl IntoIterator<Item = String>) -> Self {
        self.jwt = Some(keys);
        self.jwt_audiences = Arc::new(audiences.into_iter().collect());
        self
    }

    /// The JWT signing keys, when configured (served at `jwks_uri`).
    pub fn jwt_keys(&self) -> Option<&JwtKeys> {
        self.jwt.as_ref()
    }

    /// Whether `token` has the shape of one of our access tokens (sealed or JWT), as opposed
    /// to a refresh token.
    pub fn is_access_token(&self, token: &str) -> bool {
        token.starts_with(ACCESS_PREFIX) || (self.jwt.is_some() && looks_like_jwt(token))
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn access_ttl(&self) -> i64 {
        self.access_ttl
    }

    /// Seals (or, for a JWT resource, signs) a new access token.
    pub fn issue_access(
        &self,
        sub: &str,
        client_id: &str,
        grant_id: Option<Uuid>,
        aud: &str,
        scope: &str,
    ) -> (String, AccessClaims) {
        let now = Utc::now().timestamp();
        let claims = AccessClaims {
            jti: self.keys.random_id(),
            sub: sub.to_owned(),
            client_id: client_id.to_owned(),
            grant_id: grant_id.map(|g| g.to_string()),
            aud: aud.to_owned(),
            scope: scope.to_owned(),
            iat: now,
            exp: now + self.access_ttl,
            act: None,
        };
        (self.mint(&claims), claims)
    }

    /// Mints the claims of an exchanged token (RFC 8693), built by the caller: signed for a JWT
    /// resource, sealed otherwise, like [`TokenService::issue_access`].
    pub fn issue_claims(&self, claims: &AccessClaims) -> String {
        self.mint(claims)
    }

    fn mint(&self, claims: &AccessClaims) -> String {
        if let Some(jwt) = self
            .jwt
            .as_ref()
            .filter(|_| self.jwt_audiences.contains(claims.aud.as_str()))
        {
            let token = jwt.sign(&self.issuer, claims);
            metrics::counter!(
                "mcpauth_tokens_sealed_total",
                "key_id" => jwt.current_id().to_owned(),
                "format" => "jwt",
            )
            .increment(1);
            return token;
        }
        let token = self.keys.seal_access(claims);
        // Tokens sealed per key id: how far each key has been used, and when a rotated-out
        // key stops sealing (docs/operations.md, "Token keys").
        metrics::counter!(
            "mcpauth_tokens_sealed_total",
            "key_id" => self.keys.current_id().to_owned(),
            "format" => self.keys.format().label(),
        )
        .increment(1);
        token
    }

    /// Validates an access token: seal (or JWT signature and issuer), expiry, deny list. No I/O.
    pub fn validate_access(&self, token: &str) -> Option<AccessClaims> {
        let now = Utc::now().timestamp();
        let claims = match &self.jwt {
            Some(jwt) if looks_like_jwt(token) => jwt.verify(&self.issuer, token, now).ok()?,
            _ => self.keys.open_access(token, now).ok()?,
        };
        if self
            .deny
            .is_revoked(&claims.jti, claims.grant_id.as_deref(), &claims.client_id)
            || self.deny.is_user_revoked(&claims.sub, claims.iat)
        {
            return None;
        }
        Some(claims)
    }

    /// RFC 7662 semantics: `None` means inactive. `expected_resource`, when given, must be the
    /// token's audience.
    pub async fn introspect(
        &self,
        token: &str,
        expected_resource: Option<&str>,
    ) -> Result<Option<ActiveToken>, StoreError> {
        let active = if self.is_access_token(token) {
            self.validate_access(token).map(|c| ActiveToken {
                kind: TokenKind::Access,
                subject: c.sub,
                client_id: c.client_id,
                scope: c.scope,
                audience: c.aud,
                expires_at: c.exp,
                issued_at: c.iat,
                token_id: c.jti,
                grant_id: c.grant_id,
                act: c.act,
            })
        } else if self
            .keys
            .verify_opaque(OpaqueKind::RefreshToken, token)
            .is_ok()
        {
            let token_hash = hash(token);
            self.grants
                .active_refresh(&token_hash)
                .await?
                .map(|(row, created)| ActiveToken {
                    kind: TokenKind::Refresh,
                    subject: row.grant.user_id.to_string(),
                    client_id: row.grant.client_id,
                    scope: row.scope,
                    audience: row.resource,
                    expires_at: row.expires_at.timestamp(),
                    issued_at: created.timestamp(),
                    token_id: crate::domain::token::hex(&token_hash[..16]),
                    grant_id: Some(row.grant.grant_id.to_string()),
                    act: None,
                })
        } else {
            None
        };
        Ok(active.filter(|t| expected_resource.is_none_or(|r| r == t.audience)))
    }

    /// Revokes one access token (by `jti`) or a whole grant: persisted, applied locally, and
    /// fanned out to every replica.
    pub async fn revoke(
        &self,
        kind: RevocationKind,
        id: &str,
        tokens_expire_by: i64,
    ) -> Result<(), StoreError> {
        let r = Revocation {
            kind,
            id: id.to_owned(),
            expires_at: tokens_expire_by,
            issued_before: None,
        };
        self.publish_revocation(r).await
    }

    /// Persists a revocation, applies it here and fans it out to every replica.
    pub async fn publish_revocation(&self, r: Revocation) -> Result<(), StoreError> {
        self.revocations.insert(&r).await?;
        self.deny.insert(&r);
        if let Err(e) = self
            .ephemeral
            .events
            .publish(&ReplicaEvent::Revoked(r))
            .await
        {
            // Other auth-service replicas pick it up at their next re-sync from Postgres
            // (≤ revocation_resync_ms); verification caches elsewhere get a `resync` then.
            tracing::warn!(error = %e, "revocation fan-out failed; replicas will re-sync");
        }
        Ok(())
    }

    /// Revokes a grant: its refresh tokens in Postgres and its access tokens everywhere.
    pub async fn revoke_grant(&self, grant_id: Uuid, reason: &str) -> Result<(), StoreError> {
        self.grants.revoke(grant_id, reason).await?;
        let until = Utc::now().timestamp() + self.access_ttl;
        self.revoke(RevocationKind::Grant, &grant_id.to_string(), until)
            .await
    }
}
