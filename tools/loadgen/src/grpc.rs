//! gRPC load: workers share a few HTTP/2 connections (tonic channels), each worker keeping one
//! call in flight, so that neither one connection nor the generator is the bottleneck.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use mcpauth_proto::v1::IntrospectRequest;
use mcpauth_proto::v1::token_introspection_client::TokenIntrospectionClient;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::run::Probe;
use crate::target::Target;

/// Opens `count` separate HTTP/2 connections to the (already checked) loopback address.
pub async fn connect(target: &Target, count: usize, timeout: Duration) -> Result<Vec<Channel>> {
    // The checked address, not the host name: nothing is re-resolved behind the guard.
    let endpoint = Endpoint::from_shared(format!("http://{}", target.addr))?
        .tcp_nodelay(true)
        .connect_timeout(timeout);
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        channels.push(
            endpoint
                .connect()
                .await
                .with_context(|| format!("cannot connect to {}", target.uri))?,
        );
    }
    Ok(channels)
}

/// Describes a failed call without echoing request metadata.
fn describe(status: &tonic::Status) -> String {
    format!("gRPC status {:?}: {}", status.code(), status.message())
}

/// What every `Introspect` call of a run sends and expects. Its `Debug` output hides the
/// credential and the token.
pub struct IntrospectSpec {
    authorization: AsciiMetadataValue,
    token: String,
    expected_resource: String,
    expect_active: bool,
}

impl std::fmt::Debug for IntrospectSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectSpec")
            .field("authorization", &"<redacted>")
            .field("token", &"<redacted>")
            .field("expected_resource", &self.expected_resource)
            .field("expect_active", &self.expect_active)
            .finish()
    }
}

impl IntrospectSpec {
    /// `credential` is the caller's service credential, sent as `authorization: Bearer …`.
    pub fn new(
        credential: &str,
        token: String,
        expected_resource: Option<String>,
        expect_active: bool,
    ) -> Result<Self> {
        let mut authorization: AsciiMetadataValue =
            MetadataValue::try_from(format!("Bearer {credential}")).map_err(|_| {
                anyhow::anyhow!("the credential is not a valid metadata value (visible ASCII only)")
            })?;
        authorization.set_sensitive(true);
        Ok(Self {
            authorization,
            token,
            expected_resource: expected_resource.unwrap_or_default(),
            expect_active,
        })
    }
}

/// One worker calling `mcpauth.v1.TokenIntrospection/Introspect`.
pub struct IntrospectProbe {
    client: TokenIntrospectionClient<Channel>,
    spec: Arc<IntrospectSpec>,
}

impl IntrospectProbe {
    /// A worker on `channel` (channels are cheap handles onto a shared connection).
    pub fn new(channel: Channel, spec: Arc<IntrospectSpec>) -> Self {
        Self {
            client: TokenIntrospectionClient::new(channel),
            spec,
        }
    }
}

impl Probe for IntrospectProbe {
    async fn call(&mut self) -> Result<(), String> {
        let mut request = tonic::Request::new(IntrospectRequest {
            token: self.spec.token.clone(),
            expected_resource: self.spec.expected_resource.clone(),
        });
        request
            .metadata_mut()
            .insert("authorization", self.spec.authorization.clone());
        let response = self
            .client
            .introspect(request)
            .await
            .map_err(|s| describe(&s))?;
        let active = response.get_ref().active;
        if active == self.spec.expect_active {
            Ok(())
        } else {
            Err(format!(
                "introspection answered active={active}, expected active={}",
                self.spec.expect_active
            ))
        }
    }
}

/// One worker calling `grpc.health.v1.Health/Check`, expecting `SERVING`.
pub struct HealthProbe {
    client: HealthClient<Channel>,
    service: Arc<str>,
}

impl HealthProbe {
    /// A worker on `channel` checking `service` (`""`: the server as a whole).
    pub fn new(channel: Channel, service: Arc<str>) -> Self {
        Self {
            client: HealthClient::new(channel),
            service,
        }
    }
}

impl Probe for HealthProbe {
    async fn call(&mut self) -> Result<(), String> {
        let response = self
            .client
            .check(HealthCheckRequest {
                service: self.service.to_string(),
            })
            .await
            .map_err(|s| describe(&s))?;
        match ServingStatus::try_from(response.get_ref().status) {
            Ok(ServingStatus::Serving) => Ok(()),
            Ok(other) => Err(format!("health status {}", other.as_str_name())),
            Err(_) => Err(format!(
                "unknown health status {}",
                response.get_ref().status
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_is_bearer_and_sensitive() {
        let spec = IntrospectSpec::new("s3cret", "opaque-token-value".into(), None, true).unwrap();
        assert_eq!(spec.authorization.to_str().unwrap(), "Bearer s3cret");
        assert!(spec.authorization.is_sensitive());
        let shown = format!("{spec:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("opaque-token-value"),
            "{shown}"
        );
        assert_eq!(spec.expected_resource, "");
        assert!(IntrospectSpec::new("bad\ncredential", "t".into(), None, true).is_err());
    }
}
