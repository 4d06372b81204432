//! token-vault client: the users' upstream tokens, asked for with each user's own MCP access
//! token (token-vault introspects it itself, so this service cannot name another user).

use std::time::Duration;

use mcpauth_proto::v1::token_vault_client::TokenVaultClient;
use mcpauth_proto::v1::{
    ConnectionStatus, DeleteCredentialRequest, GetAccessTokenRequest, ListConnectionsRequest,
    VaultErrorReason,
};
use mcpauth_runtime::telemetry::{TracedChannel, traced};
use mcpauth_runtime::{CallerCredential, PerThread, Secret};

use crate::auth::BearerToken;
use crate::connectors::config::VaultConfig;

/// Why the vault did not hand out a token. Messages never contain a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultTokenError {
    #[error("the provider is not connected")]
    NotConnected,
    #[error("the provider must be connected again (the upstream refused the refresh token)")]
    ReauthorizationRequired,
    #[error("token-vault refused the user's access token")]
    Unauthenticated,
    #[error("token-vault refused this service: {0}")]
    Refused(String),
    #[error("token-vault or the upstream is unavailable: {0}")]
    Unavailable(String),
}

impl From<tonic::Status> for VaultTokenError {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        match s.code() {
            Code::NotFound => VaultTokenError::NotConnected,
            // The typed detail, never the message text.
            Code::FailedPrecondition
                if mcpauth_proto::status_detail::vault_error_reason(&s)
                    == VaultErrorReason::ReauthorizationRequired =>
            {
                VaultTokenError::ReauthorizationRequired
            }
            Code::Unauthenticated => VaultTokenError::Unauthenticated,
            Code::PermissionDenied | Code::InvalidArgument | Code::FailedPrecondition => {
                VaultTokenError::Refused(format!("{:?}", s.code()))
            }
            code => VaultTokenError::Unavailable(format!("{code:?}")),
        }
    }
}

/// A user's connection as the vault reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub provider: String,
    pub connected: bool,
}

#[derive(Clone)]
pub struct VaultClient {
    /// One channel per thread: each actix worker talks to token-vault over its own connection,
    /// driven on its own runtime (see `mcpauth_runtime::per_thread`).
    client: PerThread<TokenVaultClient<TracedChannel>>,
    credential: CallerCredential,
}

impl VaultClient {
    pub fn new(cfg: &VaultConfig) -> anyhow::Result<Self> {
        // Checked here, so that making a thread's channel later cannot fail.
        let endpoint = mcpauth_runtime::grpc_client_endpoint(
            "vault",
            &cfg.addr,
            cfg.tls.as_ref(),
            Duration::from_secs(3),
            Duration::from_secs(15),
        )?;
        let credential = CallerCredential::new("vault.credential", &cfg.credential)?;
        Ok(Self {
            client: PerThread::new(move || {
                TokenVaultClient::new(traced(endpoint.clone().connect_lazy()))
            }),
            credential,
        })
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        self.credential.request(msg)
    }

    /// A valid upstream access token of the user for `provider`, and when it expires (unix
    /// seconds; 0 when the upstream did not say).
    pub async fn access_token(
        &self,
        user: &BearerToken,
        provider: &str,
    ) -> Result<(Secret, i64), VaultTokenError> {
        let resp = self
            .client
            .get()
            .get_access_token(self.request(GetAccessTokenRequest {
                access_token: user.expose().to_owned(),
                provider: provider.to_owned(),
            }))
            .await?
            .into_inner();
        if resp.access_token.is_empty() {
            return Err(VaultTokenError::Unavailable("empty upstream token".into()));
        }
        Ok((Secret::new(resp.access_token), resp.expires_at))
    }

    /// The user's connections.
    pub async fn connections(
        &self,
        user: &BearerToken,
    ) -> Result<Vec<Connection>, VaultTokenError> {
        let resp = self
            .client
            .get()
            .list_connections(self.request(ListConnectionsRequest {
                access_token: user.expose().to_owned(),
                user_id: String::new(),
            }))
            .await?
            .into_inner();
        Ok(resp
            .connections
            .into_iter()
            .map(|c| Connection {
                connected: c.status == ConnectionStatus::Connected as i32,
                provider: c.provider,
            })
            .collect())
    }

    /// Disconnects `provider` for the user; whether there was something to delete and whether
    /// the upstream confirmed the revocation.
    pub async fn disconnect(
        &self,
        user: &BearerToken,
        provider: &str,
    ) -> Result<(bool, bool), VaultTokenError> {
        let resp = self
            .client
            .get()
            .delete_credential(self.request(DeleteCredentialRequest {
                access_token: user.expose().to_owned(),
                provider: provider.to_owned(),
                user_id: String::new(),
            }))
            .await?
            .into_inner();
        Ok((resp.deleted, resp.revoked_upstream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_what_the_user_must_do() {
        assert_eq!(
            VaultTokenError::from(tonic::Status::not_found("no credential")),
            VaultTokenError::NotConnected
        );
        // token-vault says so in a typed detail, whatever the message...
        assert_eq!(
            VaultTokenError::from(mcpauth_proto::status_detail::vault_error(
                tonic::Code::FailedPrecondition,
                "connect again",
                VaultErrorReason::ReauthorizationRequired,
            )),
            VaultTokenError::ReauthorizationRequired
        );
        // ...and the older message prefix alone no longer says it.
        assert!(matches!(
            VaultTokenError::from(tonic::Status::failed_precondition(
                "reauthorization_required: invalid_grant"
            )),
            VaultTokenError::Refused(_)
        ));
        assert!(matches!(
            VaultTokenError::from(tonic::Status::failed_precondition("other")),
            VaultTokenError::Refused(_)
        ));
        assert_eq!(
            VaultTokenError::from(tonic::Status::unauthenticated("x")),
            VaultTokenError::Unauthenticated
        );
        assert!(matches!(
            VaultTokenError::from(tonic::Status::unavailable("x")),
            VaultTokenError::Unavailable(_)
        ));
    }
}
