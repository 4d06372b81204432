//! auth-service's `UpstreamConnect` client: a short-lived connect URL for the user named by
//! their own MCP access token.

use std::time::Duration;

use mcpauth_proto::v1::StartConnectRequest;
use mcpauth_proto::v1::upstream_connect_client::UpstreamConnectClient;
use mcpauth_runtime::telemetry::{TracedChannel, traced};
use mcpauth_runtime::{CallerCredential, GrpcClientTls, Secret};

use crate::auth::BearerToken;

#[derive(Clone)]
pub struct ConnectClient {
    client: UpstreamConnectClient<TracedChannel>,
    credential: CallerCredential,
}

/// A connect URL and its expiry (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectUrl {
    pub url: String,
    pub expires_at: i64,
}

impl ConnectClient {
    /// A client of `addr`; `section` (`connect` or `verifier.grpc`) is the configuration
    /// section the address and TLS came from, for errors.
    pub fn new(
        section: &str,
        addr: &str,
        tls: Option<&GrpcClientTls>,
        credential: &str,
    ) -> anyhow::Result<Self> {
        let channel = mcpauth_runtime::grpc_channel(
            section,
            addr,
            tls,
            Duration::from_secs(3),
            Duration::from_secs(10),
        )?;
        let credential = CallerCredential::new("connect.credential", &Secret::new(credential))?;
        Ok(Self {
            client: UpstreamConnectClient::new(traced(channel)),
            credential,
        })
    }

    pub async fn start(
        &self,
        user: &BearerToken,
        provider: &str,
    ) -> Result<ConnectUrl, tonic::Status> {
        let r = self.credential.request(StartConnectRequest {
            access_token: user.expose().to_owned(),
            provider: provider.to_owned(),
        });
        let resp = self.client.clone().start_connect(r).await?.into_inner();
        if url::Url::parse(&resp.connect_url).is_err() {
            return Err(tonic::Status::internal(
                "auth-service returned no connect URL",
            ));
        }
        Ok(ConnectUrl {
            url: resp.connect_url,
            expires_at: resp.expires_at,
        })
    }
}
