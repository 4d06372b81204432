//! The token verifiers, one per `verifier.mode`.

pub mod cache;
pub mod grpc;
pub mod http_introspection;
pub mod jwt;
pub mod revoked;
pub mod static_keys;

use std::sync::Arc;

use crate::auth::TokenVerifier;
use crate::config::{Config, VerifierMode};

/// Builds the configured verifier, with the introspection cache or the revoked-id set that
/// auth-service's revocation feed keeps current (`app` follows the feed for either).
pub async fn build(
    cfg: &Config,
) -> anyhow::Result<(
    Arc<dyn TokenVerifier>,
    Option<cache::IntrospectionCache>,
    Option<revoked::RevokedIds>,
)> {
    if cfg.verifier.mode == VerifierMode::Jwt {
        let jwt = cfg
            .verifier
            .jwt
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("verifier.jwt: required for mode jwt"))?;
        let v = jwt::JwtVerifier::new(jwt, &cfg.resource)?;
        if !jwt.follow_revocations {
            return Ok((Arc::new(v), None, None));
        }
        let revoked = revoked::RevokedIds::default();
        return Ok((
            Arc::new(v.with_revocations(revoked.clone())),
            None,
            Some(revoked),
        ));
    }
    let (v, c): (Arc<dyn TokenVerifier>, _) = match cfg.verifier.mode {
        VerifierMode::IntrospectionGrpc => {
            let v = grpc::GrpcIntrospection::new(&cfg.verifier.grpc, &cfg.resource)?;
            let cache = v.cache().clone();
            (Arc::new(v), Some(cache))
        }
        VerifierMode::StaticKeys => (
            Arc::new(static_keys::StaticKeys::new(&cfg.verifier.static_keys)?),
            None,
        ),
        VerifierMode::IntrospectionHttp => {
            let http = cfg.verifier.http.as_ref().ok_or_else(|| {
                anyhow::anyhow!("verifier.http: required for mode introspection_http")
            })?;
            // The cache is not returned: auth-service's revocation feed does not cover tokens
            // of an external authorization server (its cache_ttl_ms bounds their staleness).
            (
                Arc::new(http_introspection::HttpIntrospection::new(
                    http,
                    &cfg.resource,
                )?),
                None,
            )
        }
        VerifierMode::Jwt => unreachable!("handled above"),
    };
    Ok((v, c, None))
}
