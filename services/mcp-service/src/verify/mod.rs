//! The token verifiers, one per `verifier.mode`.

pub mod cache;
pub mod grpc;
pub mod static_keys;

use std::sync::Arc;

use crate::auth::TokenVerifier;
use crate::config::{Config, VerifierMode};

/// Builds the configured verifier.
pub async fn build(
    cfg: &Config,
) -> anyhow::Result<(Arc<dyn TokenVerifier>, Option<cache::IntrospectionCache>)> {
    Ok(match cfg.verifier.mode {
        VerifierMode::IntrospectionGrpc => {
            let v = grpc::GrpcIntrospection::new(&cfg.verifier.grpc, &cfg.resource)?;
            let cache = v.cache().clone();
            (Arc::new(v), Some(cache))
        }
        VerifierMode::StaticKeys => (
            Arc::new(static_keys::StaticKeys::new(&cfg.verifier.static_keys)?),
            None,
        ),
        VerifierMode::IntrospectionHttp | VerifierMode::Jwt => {
            anyhow::bail!(
                "verifier.mode: {:?} is not available in this build yet",
                cfg.verifier.mode
            )
        }
    })
}
