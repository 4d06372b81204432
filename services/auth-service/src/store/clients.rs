//! Registered clients (RFC 7591 dynamic, configured static, and CIMD-fetched): the stored
//! shape, and the storage interface behind which Postgres (production) and SQLite (embedded
//! mode) keep them. Callers hold an `Arc<dyn ClientStore>` and never see a pool.

pub mod postgres;
pub mod sqlite;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::StoreError;

/// Where a client came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSource {
    Dynamic,
    Static,
    Cimd,
}

impl ClientSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientSource::Dynamic => "dynamic",
            ClientSource::Static => "static",
            ClientSource::Cimd => "cimd",
        }
    }
    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "dynamic" => Ok(Self::Dynamic),
            "static" => Ok(Self::Static),
            "cimd" => Ok(Self::Cimd),
            other => Err(StoreError::Corrupt(format!("client source {other}"))),
        }
    }
}

/// A registered OAuth client.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub source: ClientSource,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    /// `none`, `client_secret_basic` or `client_secret_post`.
    pub token_endpoint_auth_method: String,
    pub scope: Option<String>,
    pub secret_sha256: Option<Vec<u8>>,
    pub registration_token_sha256: Option<Vec<u8>>,
    /// All metadata as registered (unknown fields kept).
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == "none"
    }
    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }
}

/// What [`ClientStore::store_cimd`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CimdWrite {
    /// A new row.
    Inserted,
    /// The stored document differed and was replaced.
    Updated,
    /// The row holds this document already: nothing was written.
    Unchanged,
    /// `cimd.max_clients` rows exist: the new one was not stored.
    Full,
}

/// The `clients` table: lookups, registrations (capped), configured and document clients,
/// RFC 7592 updates, use bookkeeping and the sweeps of unused clients.
#[async_trait::async_trait]
pub trait ClientStore: Send + Sync + 'static {
    async fn get(&self, client_id: &str) -> Result<Option<Client>, StoreError>;

    /// Inserts a new client; `AlreadyExists` on an id collision.
    async fn insert(&self, c: &Client) -> Result<(), StoreError>;

    /// Inserts a new dynamic client unless `max` dynamic clients exist already (then `false`).
    /// The count and the insert are serialised against concurrent registrations (on any
    /// replica), so that they cannot overshoot the cap.
    async fn insert_dynamic_capped(&self, c: &Client, max: i64) -> Result<bool, StoreError>;

    /// Inserts or replaces a client that configuration or a metadata document defines.
    async fn upsert(&self, c: &Client) -> Result<(), StoreError>;

    /// Stores the client a metadata document defines, writing only when the document is new or
    /// differs from the stored one. A new row is refused once `max` document clients exist
    /// (count and insert serialised, as for dynamic registrations). A row of another source
    /// with the same id is left as it is.
    async fn store_cimd(&self, c: &Client, max: i64) -> Result<CimdWrite, StoreError>;

    /// Deletes document clients that have no live grant and were neither used at `/token` nor
    /// changed within `ttl_secs`; returns their ids. (Consents go with them: the next use asks
    /// the user again.)
    async fn delete_unused_cimd(&self, ttl_secs: i64) -> Result<Vec<String>, StoreError>;

    /// Replaces a dynamic client's metadata (RFC 7592 update). The secret and registration
    /// token are kept. `NotFound` when there is no such client.
    async fn update_metadata(&self, c: &Client) -> Result<(), StoreError>;

    /// Replaces the registration access token (RFC 7592 §3: rotated on every use), only if the
    /// presented one is still current, so two concurrent uses cannot both rotate.
    async fn rotate_registration_token(
        &self,
        client_id: &str,
        current_sha256: &[u8],
        next_sha256: &[u8],
    ) -> Result<bool, StoreError>;

    /// Deletes a client (its consents and grants go with it); whether it existed.
    async fn delete(&self, client_id: &str) -> Result<bool, StoreError>;

    async fn count_dynamic(&self) -> Result<i64, StoreError>;

    /// Records that these clients were used (batched by the caller).
    async fn touch(&self, client_ids: &[String]) -> Result<(), StoreError>;

    /// Deletes dynamic clients never used within `ttl_secs`; returns their ids.
    async fn delete_unused(&self, ttl_secs: i64) -> Result<Vec<String>, StoreError>;
}
