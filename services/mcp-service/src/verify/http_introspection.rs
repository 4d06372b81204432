//! Verification by RFC 7662 introspection at an external authorization server over HTTP
//! (`verifier.mode = "introspection_http"`): mcpauth-runtime's [`HttpIntrospection`], shared with
//! token-vault, cached in-process.

use futures_util::future::BoxFuture;
use mcpauth_runtime::external::HttpIntrospection as Shared;

use super::cache::IntrospectionCache;
use crate::auth::{Principal, TokenVerifier, VerifyError};
use crate::config::HttpIntrospectionConfig;

/// Entries kept in the introspection cache.
const CACHE_MAX_ENTRIES: usize = 100_000;

pub struct HttpIntrospection {
    inner: Shared<Principal, VerifyError>,
}

impl HttpIntrospection {
    pub fn new(cfg: &HttpIntrospectionConfig, resource: &str) -> anyhow::Result<Self> {
        Ok(Self {
            inner: Shared::new(
                "verifier.http",
                cfg,
                vec![resource.to_owned()],
                CACHE_MAX_ENTRIES,
                "mcpauth_mcp_token_cache_total",
            )?,
        })
    }

    pub fn cache(&self) -> &IntrospectionCache {
        self.inner.cache()
    }
}

impl TokenVerifier for HttpIntrospection {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, VerifyError>> {
        Box::pin(self.inner.verify(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cfg: HttpIntrospectionConfig = serde_json::from_value(json!({
            "endpoint": "http://127.0.0.1:1/introspect", "client_id": "rs:1", "client_secret": "s e",
            "issuer": "https://as.example"}))
        .unwrap();
        let v = HttpIntrospection::new(&cfg, "https://mcp.example/mcp").unwrap();
        assert!(matches!(
            v.verify("t").await,
            Err(VerifyError::Unavailable(_))
        ));
    }
}
