//! The vault's errors and the one table that maps them to gRPC status codes. Messages are
//! lowercase and never carry a token, a secret or ciphertext; detail for operators goes to the
//! log.

use tonic::Status;

use crate::crypto::CryptoError;

#[derive(Debug, thiserror::Error)]
pub enum VaultServiceError {
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("no credential for this provider")]
    NotFound,
    /// The upstream refused the refresh token; the user must connect the provider again.
    #[error("reauthorization_required: {0}")]
    ReauthorizationRequired(String),
    /// The upstream (or auth-service) failed transiently; the credential is kept.
    #[error("{0}")]
    Unavailable(String),
    /// The stored ciphertext cannot be opened (tampered, moved, or its key is gone).
    #[error("stored credential cannot be used: {0}")]
    Crypto(#[from] CryptoError),
    #[error("storage failure: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("redis failure: {0}")]
    Redis(String),
}

impl From<VaultServiceError> for Status {
    fn from(e: VaultServiceError) -> Status {
        match e {
            VaultServiceError::Unauthenticated(m) => Status::unauthenticated(m),
            VaultServiceError::PermissionDenied(m) => Status::permission_denied(m),
            VaultServiceError::InvalidArgument(m) => Status::invalid_argument(m),
            VaultServiceError::NotFound => Status::not_found("no credential for this provider"),
            // The typed detail is what callers read; the message stays for people (and for
            // callers older than the detail, which matched its prefix).
            e @ VaultServiceError::ReauthorizationRequired(_) => {
                mcpauth_proto::status_detail::vault_error(
                    tonic::Code::FailedPrecondition,
                    e.to_string(),
                    mcpauth_proto::v1::VaultErrorReason::ReauthorizationRequired,
                )
            }
            VaultServiceError::Unavailable(m) => Status::unavailable(m),
            e @ VaultServiceError::Crypto(_) => {
                tracing::error!(error = %e, "stored credential does not decrypt");
                Status::data_loss(e.to_string())
            }
            VaultServiceError::Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                Status::unavailable("storage is temporarily unavailable")
            }
            VaultServiceError::Redis(e) => {
                tracing::error!(error = %e, "redis failure");
                Status::unavailable("lock service is temporarily unavailable")
            }
        }
    }
}
