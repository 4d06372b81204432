//! The token-vault client: after an upstream login or a connect, auth-service hands the upstream
//! tokens to token-vault (`mcpauth.v1.TokenVault.PutCredential`, permission `put`) and keeps
//! nothing of them itself.

use std::time::Duration;

use mcpauth_proto::v1::token_vault_client::TokenVaultClient;
use mcpauth_proto::v1::{
    DeleteCredentialRequest, ListConnectionsRequest, PutCredentialRequest,
    UpstreamTokens as ProtoTokens,
};
use mcpauth_runtime::CallerCredential;
use mcpauth_runtime::telemetry::{TracedChannel, traced};

use crate::config::VaultConfig;
use crate::upstream::ProviderTokenResponse;

/// Why a credential could not be stored. Carries the gRPC code, never a token.
#[derive(Debug, thiserror::Error)]
pub enum VaultClientError {
    #[error("token-vault is not configured")]
    NotConfigured,
    #[error("token-vault refused the credential: {code:?} {message}")]
    Refused { code: tonic::Code, message: String },
}

/// A lazily connected client of token-vault.
#[derive(Clone)]
pub struct VaultClient {
    /// Calls carry the trace context (`traceparent`).
    channel: TracedChannel,
    credential: CallerCredential,
}

impl VaultClient {
    pub fn new(cfg: &VaultConfig) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let channel = mcpauth_runtime::grpc_channel(
            "vault",
            &cfg.addr,
            cfg.client_tls()?.as_ref(),
            timeout.min(Duration::from_secs(3)),
            timeout,
        )?;
        Ok(Self {
            channel: traced(channel),
            credential: CallerCredential::new("vault.credential", &cfg.credential)?,
        })
    }

    /// Stores (or replaces) `user_id`'s credential for `provider`; returns the record version.
    pub async fn put_credential(
        &self,
        user_id: &str,
        provider: &str,
        tokens: &ProviderTokenResponse,
        upstream_issuer: &str,
        upstream_subject: &str,
    ) -> Result<i64, VaultClientError> {
        let req = self.credential.request(PutCredentialRequest {
            user_id: user_id.to_owned(),
            provider: provider.to_owned(),
            tokens: Some(ProtoTokens {
                access_token: tokens.access_token.clone(),
                refresh_token: tokens.refresh_token.clone().unwrap_or_default(),
                expires_at: crate::upstream::expires_at(tokens.expires_in),
                scopes: tokens
                    .scope
                    .as_deref()
                    .unwrap_or("")
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
                token_type: tokens.token_type.clone().unwrap_or_else(|| "Bearer".into()),
            }),
            upstream_issuer: upstream_issuer.to_owned(),
            upstream_subject: upstream_subject.to_owned(),
        });
        let mut client = TokenVaultClient::new(self.channel.clone());
        match client.put_credential(req).await {
            Ok(r) => Ok(r.into_inner().version),
            Err(s) => Err(VaultClientError::Refused {
                code: s.code(),
                message: s.message().chars().take(200).collect(),
            }),
        }
    }
}

impl VaultClient {
    /// Incident response: deletes every credential of `user_id` (and revokes it upstream where
    /// the provider supports it). Needs the `admin` permission at token-vault. Returns how many
    /// were deleted.
    pub async fn delete_all_of_user(&self, user_id: &str) -> Result<u64, VaultClientError> {
        let refused = |s: tonic::Status| VaultClientError::Refused {
            code: s.code(),
            message: s.message().chars().take(200).collect(),
        };
        let mut client = TokenVaultClient::new(self.channel.clone());
        let req = self.credential.request(ListConnectionsRequest {
            access_token: String::new(),
            user_id: user_id.to_owned(),
        });
        let connections = client
            .list_connections(req)
            .await
            .map_err(refused)?
            .into_inner()
            .connections;
        let mut deleted = 0;
        for c in connections {
            let req = self.credential.request(DeleteCredentialRequest {
                access_token: String::new(),
                provider: c.provider,
                user_id: user_id.to_owned(),
            });
            if client
                .delete_credential(req)
                .await
                .map_err(refused)?
                .into_inner()
                .deleted
            {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}
