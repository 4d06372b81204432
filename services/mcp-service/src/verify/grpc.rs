//! Verification by gRPC introspection at auth-service (the default mode), cached in-process.

use std::time::Duration;

use futures_util::future::BoxFuture;
use mcpauth_proto::v1::IntrospectRequest;
use mcpauth_proto::v1::token_introspection_client::TokenIntrospectionClient;
use mcpauth_runtime::PerThread;
use mcpauth_runtime::telemetry::{TracedChannel, traced};
use tonic::metadata::{Ascii, MetadataValue};

use super::cache::{IntrospectionCache, now_secs, verify_cached};
use crate::auth::{Principal, TokenVerifier, VerifyError};
use crate::config::GrpcIntrospectionConfig;

pub struct GrpcIntrospection {
    /// One channel per thread (see `mcpauth_runtime::per_thread`).
    client: PerThread<TokenIntrospectionClient<TracedChannel>>,
    credential: MetadataValue<Ascii>,
    resource: String,
    cache: IntrospectionCache,
}

impl GrpcIntrospection {
    pub fn new(cfg: &GrpcIntrospectionConfig, resource: &str) -> anyhow::Result<Self> {
        let endpoint =
            mcpauth_runtime::grpc_endpoint("verifier.grpc", &cfg.addr, cfg.tls.as_ref())?
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(5))
                .tcp_nodelay(true);
        let credential = format!("Bearer {}", cfg.credential.expose())
            .parse()
            .map_err(|_| anyhow::anyhow!("verifier.grpc.credential: not a valid header value"))?;
        Ok(Self {
            client: PerThread::new(move || {
                TokenIntrospectionClient::new(traced(endpoint.clone().connect_lazy()))
            }),
            credential,
            resource: resource.to_owned(),
            cache: IntrospectionCache::new(
                Duration::from_millis(cfg.cache_ttl_ms),
                cfg.cache_max_entries,
            ),
        })
    }

    pub fn cache(&self) -> &IntrospectionCache {
        &self.cache
    }

    async fn introspect(&self, token: &str) -> Result<Principal, VerifyError> {
        let mut req = tonic::Request::new(IntrospectRequest {
            token: token.to_owned(),
            // auth-service checks the audience; we check it again below.
            expected_resource: self.resource.clone(),
        });
        req.metadata_mut()
            .insert("authorization", self.credential.clone());
        let resp = self
            .client
            .get()
            .introspect(req)
            .await
            .map_err(|s| VerifyError::Unavailable(format!("introspection failed: {}", s.code())))?
            .into_inner();
        if !resp.active {
            return Err(VerifyError::Inactive);
        }
        if !resp.audience.iter().any(|a| a == &self.resource) {
            return Err(VerifyError::WrongAudience);
        }
        if resp.expires_at <= now_secs() {
            return Err(VerifyError::Expired);
        }
        if resp.token_kind != mcpauth_proto::v1::TokenKind::Access as i32 {
            return Err(VerifyError::Inactive);
        }
        Ok(Principal {
            subject: resp.subject,
            client_id: resp.client_id,
            scopes: resp.scopes.into_iter().collect(),
            expires_at: resp.expires_at,
            token_id: (!resp.token_id.is_empty()).then_some(resp.token_id),
            grant_id: (!resp.grant_id.is_empty()).then_some(resp.grant_id),
            access_token: None,
        })
    }
}

impl TokenVerifier for GrpcIntrospection {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, VerifyError>> {
        Box::pin(verify_cached(&self.cache, token, self.introspect(token)))
    }
}
