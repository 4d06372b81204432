//! auth-service's `UpstreamConnect` client: a short-lived connect URL for the user named by
//! their own MCP access token.

use std::time::Duration;

use mcpauth_proto::v1::StartConnectRequest;
use mcpauth_proto::v1::upstream_connect_client::UpstreamConnectClient;
use mcpauth_runtime::telemetry::{TracedChannel, traced};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Endpoint;

use crate::auth::BearerToken;

#[derive(Clone)]
pub struct ConnectClient {
    client: UpstreamConnectClient<TracedChannel>,
    credential: MetadataValue<Ascii>,
}

/// A connect URL and its expiry (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectUrl {
    pub url: String,
    pub expires_at: i64,
}

impl ConnectClient {
    pub fn new(addr: &str, credential: &str) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(addr.to_owned())
            .map_err(|e| anyhow::anyhow!("connect.addr: {e}"))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .connect_lazy();
        let credential = format!("Bearer {credential}")
            .parse()
            .map_err(|_| anyhow::anyhow!("connect.credential: not a valid header value"))?;
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
        let mut r = tonic::Request::new(StartConnectRequest {
            access_token: user.expose().to_owned(),
            provider: provider.to_owned(),
        });
        r.metadata_mut()
            .insert("authorization", self.credential.clone());
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
