//! token-vault load: `mcpauth.v1.TokenVault/GetAccessToken` with one user's MCP token for a
//! provider whose upstream token is valid (no refresh): decrypt + cached introspection + one
//! Postgres read per call.

use std::sync::Arc;

use anyhow::Result;
use mcpauth_proto::v1::token_vault_client::TokenVaultClient;
use mcpauth_proto::v1::{GetAccessTokenRequest, PutCredentialRequest, UpstreamTokens};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::Channel;

use crate::run::Probe;

/// What every call sends. Its `Debug` output hides the credential and the token.
pub struct VaultGetSpec {
    authorization: AsciiMetadataValue,
    token: String,
    provider: String,
}

impl std::fmt::Debug for VaultGetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultGetSpec")
            .field("authorization", &"<redacted>")
            .field("token", &"<redacted>")
            .field("provider", &self.provider)
            .finish()
    }
}

impl VaultGetSpec {
    pub fn new(credential: &str, token: String, provider: String) -> Result<Self> {
        let mut authorization: AsciiMetadataValue =
            MetadataValue::try_from(format!("Bearer {credential}")).map_err(|_| {
                anyhow::anyhow!("the credential is not a valid metadata value (visible ASCII only)")
            })?;
        authorization.set_sensitive(true);
        Ok(Self {
            authorization,
            token,
            provider,
        })
    }

    /// The request message, protobuf-encoded (for the lean client).
    pub fn message(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&GetAccessTokenRequest {
            access_token: self.token.clone(),
            provider: self.provider.clone(),
        })
    }
}

/// Stores a valid upstream credential (`access_token`, or a fresh one; valid for one day) for
/// `user_id`, so that the run measures reads without refreshes.
pub async fn seed(
    channel: Channel,
    spec: &VaultGetSpec,
    user_id: &str,
    access_token: Option<&str>,
) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let access_token =
        access_token.map_or_else(|| format!("loadgen-upstream-token-{now}"), str::to_owned);
    let mut request = tonic::Request::new(PutCredentialRequest {
        user_id: user_id.to_owned(),
        provider: spec.provider.clone(),
        tokens: Some(UpstreamTokens {
            access_token,
            refresh_token: String::new(),
            expires_at: now + 86_400,
            scopes: vec![],
            token_type: "Bearer".into(),
        }),
        upstream_issuer: String::new(),
        upstream_subject: String::new(),
    });
    request
        .metadata_mut()
        .insert("authorization", spec.authorization.clone());
    TokenVaultClient::new(channel)
        .put_credential(request)
        .await
        .map_err(|s| {
            anyhow::anyhow!(
                "seeding the credential failed: gRPC status {:?}: {}",
                s.code(),
                s.message()
            )
        })?;
    Ok(())
}

/// One worker calling GetAccessToken and expecting a non-empty upstream access token.
pub struct VaultGetProbe {
    client: TokenVaultClient<Channel>,
    spec: Arc<VaultGetSpec>,
}

impl VaultGetProbe {
    pub fn new(channel: Channel, spec: Arc<VaultGetSpec>) -> Self {
        Self {
            client: TokenVaultClient::new(channel),
            spec,
        }
    }
}

impl Probe for VaultGetProbe {
    async fn call(&mut self) -> Result<(), String> {
        let mut request = tonic::Request::new(GetAccessTokenRequest {
            access_token: self.spec.token.clone(),
            provider: self.spec.provider.clone(),
        });
        request
            .metadata_mut()
            .insert("authorization", self.spec.authorization.clone());
        let response = self
            .client
            .get_access_token(request)
            .await
            .map_err(|s| format!("gRPC status {:?}: {}", s.code(), s.message()))?;
        if response.get_ref().access_token.is_empty() {
            return Err("GetAccessToken answered an empty access token".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets_and_message_round_trips() {
        let spec = VaultGetSpec::new("s3cret", "mcp-token-value".into(), "github".into()).unwrap();
        let shown = format!("{spec:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("mcp-token-value"),
            "{shown}"
        );
        let decoded: GetAccessTokenRequest =
            prost::Message::decode(spec.message().as_slice()).unwrap();
        assert_eq!(decoded.access_token, "mcp-token-value");
        assert_eq!(decoded.provider, "github");
        assert!(VaultGetSpec::new("bad\ncredential", "t".into(), "p".into()).is_err());
    }
}
