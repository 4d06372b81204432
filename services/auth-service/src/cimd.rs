//! PLACEHOLDER so the crate compiles while the real CIMD fetcher is written (helper replaces this file).
use crate::config::CimdConfig;

pub fn is_cimd_client_id(client_id: &str) -> bool {
    client_id.starts_with("https://")
}

#[derive(Clone)]
pub struct CimdFetcher;

#[derive(Debug, Clone)]
pub struct ClientMetadataDocument {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub scope: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub raw: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum CimdError {
    #[error("client metadata documents are disabled")]
    Disabled,
}

impl CimdFetcher {
    pub fn new(_cfg: &CimdConfig) -> Self {
        Self
    }
    pub fn accepts(&self, client_id: &str) -> bool {
        is_cimd_client_id(client_id)
    }
    pub async fn fetch(&self, _client_id: &str) -> Result<ClientMetadataDocument, CimdError> {
        Err(CimdError::Disabled)
    }
}
