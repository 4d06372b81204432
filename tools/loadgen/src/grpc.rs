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
    use mcpauth_proto::v1::IntrospectResponse;
    use mcpauth_proto::v1::token_introspection_server::{
        TokenIntrospection, TokenIntrospectionServer,
    };
    use tokio::net::TcpListener;
    use tonic::transport::server::TcpIncoming;

    use super::*;
    use crate::run::{Limits, run};

    /// Active iff the caller presents `Bearer cred` and the token is `good`.
    struct FakeIntrospection;

    #[tonic::async_trait]
    impl TokenIntrospection for FakeIntrospection {
        async fn introspect(
            &self,
            request: tonic::Request<IntrospectRequest>,
        ) -> Result<tonic::Response<IntrospectResponse>, tonic::Status> {
            let authorization = request.metadata().get("authorization");
            if authorization.map(|v| v.as_bytes()) != Some(b"Bearer cred".as_slice()) {
                return Err(tonic::Status::unauthenticated("bad service credential"));
            }
            Ok(tonic::Response::new(IntrospectResponse {
                active: request.get_ref().token == "good",
                ..Default::default()
            }))
        }

        async fn exchange(
            &self,
            _request: tonic::Request<mcpauth_proto::v1::ExchangeRequest>,
        ) -> Result<tonic::Response<mcpauth_proto::v1::ExchangeResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not measured here"))
        }
    }

    /// Serves health (SERVING) and the fake introspection on 127.0.0.1.
    async fn server() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .add_service(TokenIntrospectionServer::new(FakeIntrospection))
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        crate::target::resolve(&url).await.unwrap()
    }

    const LIMITS: Limits = Limits {
        duration: std::time::Duration::from_secs(20),
        requests: 200,
        timeout: std::time::Duration::from_secs(5),
    };

    async fn introspect(
        target: &Target,
        credential: &str,
        token: &str,
        expect_active: bool,
    ) -> (u64, u64, Option<String>) {
        let channels = connect(target, 2, Duration::from_secs(5)).await.unwrap();
        let spec =
            Arc::new(IntrospectSpec::new(credential, token.into(), None, expect_active).unwrap());
        let probes = (0..8)
            .map(|i| IntrospectProbe::new(channels[i % 2].clone(), Arc::clone(&spec)))
            .collect();
        let (stats, elapsed) = run(probes, LIMITS).await.unwrap();
        (
            stats.successes(),
            stats.errors(),
            stats.summarize("t", elapsed, 8).first_error,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn introspection_answers_are_checked() {
        let target = server().await;
        assert_eq!(
            introspect(&target, "cred", "good", true).await,
            (200, 0, None)
        );
        assert_eq!(
            introspect(&target, "cred", "forged", false).await,
            (200, 0, None)
        );
        let (ok, errors, first) = introspect(&target, "cred", "forged", true).await;
        assert_eq!((ok, errors), (0, 200));
        assert_eq!(
            first.as_deref(),
            Some("introspection answered active=false, expected active=true")
        );
        let (ok, errors, first) = introspect(&target, "wrong", "good", true).await;
        assert_eq!((ok, errors), (0, 200));
        let first = first.unwrap();
        assert!(first.starts_with("gRPC status Unauthenticated"), "{first}");
        assert!(!first.contains("wrong"), "{first}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_checks_succeed_when_serving() {
        let target = server().await;
        let channels = connect(&target, 1, Duration::from_secs(5)).await.unwrap();
        let service: Arc<str> = "".into();
        let probes = (0..4)
            .map(|_| HealthProbe::new(channels[0].clone(), Arc::clone(&service)))
            .collect();
        let (stats, _) = run(probes, LIMITS).await.unwrap();
        assert_eq!((stats.successes(), stats.errors()), (200, 0));

        let unknown: Arc<str> = "no.such.Service".into();
        let (stats, elapsed) = run(vec![HealthProbe::new(channels[0].clone(), unknown)], LIMITS)
            .await
            .unwrap();
        assert_eq!(stats.errors(), 200);
        let first = stats.summarize("t", elapsed, 1).first_error.unwrap();
        assert!(first.starts_with("gRPC status NotFound"), "{first}");
    }

    #[tokio::test]
    async fn connecting_to_nothing_fails_fast() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let target = crate::target::resolve(&url).await.unwrap();
        assert!(connect(&target, 1, Duration::from_secs(2)).await.is_err());
    }

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
