//! Verification by gRPC introspection at auth-service (the default mode), cached in-process:
//! mcpauth-runtime's [`IntrospectionClient`], one channel per actix worker.

use std::time::Duration;

use futures_util::future::BoxFuture;
use mcpauth_runtime::introspection::{
    Introspected, IntrospectionClient, IntrospectionRefusal, IntrospectionSettings,
};

use super::cache::IntrospectionCache;
use crate::auth::{Principal, TokenVerifier, VerifyError};
use crate::config::GrpcIntrospectionConfig;

pub struct GrpcIntrospection {
    client: IntrospectionClient<Principal, VerifyError>,
}

impl From<Introspected> for Principal {
    fn from(t: Introspected) -> Self {
        Principal {
            subject: t.subject,
            client_id: t.client_id,
            scopes: t.scopes.into_iter().collect(),
            expires_at: t.expires_at,
            token_id: t.token_id,
            grant_id: t.grant_id,
            access_token: None,
        }
    }
}

impl From<IntrospectionRefusal> for VerifyError {
    fn from(r: IntrospectionRefusal) -> Self {
        match r {
            IntrospectionRefusal::Inactive => VerifyError::Inactive,
            IntrospectionRefusal::WrongAudience => VerifyError::WrongAudience,
            IntrospectionRefusal::Expired => VerifyError::Expired,
            IntrospectionRefusal::Unavailable(code) => {
                VerifyError::Unavailable(format!("introspection failed: {code}"))
            }
        }
    }
}

impl GrpcIntrospection {
    pub fn new(cfg: &GrpcIntrospectionConfig, resource: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: IntrospectionClient::new(IntrospectionSettings {
                section: "verifier.grpc",
                addr: &cfg.addr,
                tls: cfg.tls.as_ref(),
                credential: &cfg.credential,
                accepted_resources: vec![resource.to_owned()],
                cache_ttl: Duration::from_millis(cfg.cache_ttl_ms),
                cache_max_entries: cfg.cache_max_entries,
                per_thread: true,
                cache_metric: "mcpauth_mcp_token_cache_total",
            })?,
        })
    }

    pub fn cache(&self) -> &IntrospectionCache {
        self.client.cache()
    }
}

impl TokenVerifier for GrpcIntrospection {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, VerifyError>> {
        Box::pin(self.client.verify(token))
    }
}
