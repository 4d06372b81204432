//! The vault's credential records: ciphertext and non-secret metadata only, never plaintext. Every
//! write is conditional on the version it read, so concurrent writers never overwrite each other
//! blindly; a delete leaves a tombstone with the highest version the record reached, so versions
//! never repeat (the version is part of the ciphertext's authenticated data).
//!
//! Two implementations behave alike (the conformance suite in `tests/it/store_conformance`
//! proves it): [`postgres::PostgresCredentials`] for production and
//! [`sqlite::SqliteCredentials`] for the embedded single-process mode.

use chrono::{DateTime, Utc};

use crate::crypto::Sealed;

pub mod postgres;
pub mod sqlite;

pub use postgres::PostgresCredentials;
pub use sqlite::SqliteCredentials;

/// Whether a connection is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionStatus {
    Connected,
    /// The upstream refused the refresh token: the user must connect again.
    ReauthorizationRequired,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Connected => "connected",
            ConnectionStatus::ReauthorizationRequired => "reauthorization_required",
        }
    }
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "reauthorization_required" => ConnectionStatus::ReauthorizationRequired,
            _ => ConnectionStatus::Connected,
        }
    }
}

/// One stored credential.
#[derive(Debug, Clone)]
pub struct CredentialRow {
    pub user_id: String,
    pub provider: String,
    pub version: i64,
    pub sealed: Sealed,
    pub status: ConnectionStatus,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub upstream_issuer: String,
    pub upstream_subject: String,
    pub connected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The highest version at which this record was ever deleted (0: never). A row at or below
    /// it is a restored stale copy and is refused (see `vault_credential_tombstones`).
    pub deleted_through: i64,
}

impl CredentialRow {
    /// Whether this row is older than the last delete of its record.
    pub fn is_stale(&self) -> bool {
        self.version <= self.deleted_through
    }
}

/// What a write stores besides the ciphertext.
#[derive(Debug, Clone)]
pub struct CredentialWrite<'a> {
    pub sealed: &'a Sealed,
    pub version: i64,
    pub scopes: &'a [String],
    /// Seconds since the epoch; 0 = unknown.
    pub expires_at: i64,
}

/// The upstream token's expiry as stored (`None`: unknown).
pub(crate) fn expiry(secs: i64) -> Option<DateTime<Utc>> {
    (secs != 0)
        .then(|| DateTime::from_timestamp(secs, 0))
        .flatten()
}

/// The credentials aggregate: one record per `(user_id, provider)`, and its tombstone.
///
/// Every method is keyed by the user: no method returns another user's record. Writes take the
/// version they expect and report `false` when the record moved meanwhile.
#[async_trait::async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    async fn get(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<Option<CredentialRow>, sqlx::Error>;

    /// The version and status of a record (what refresh waiters poll).
    async fn version(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<Option<(i64, ConnectionStatus)>, sqlx::Error>;

    /// The user's records, by provider.
    async fn list(&self, user_id: &str) -> Result<Vec<CredentialRow>, sqlx::Error>;

    /// The record's version and status (`None` when there is none) and the highest version it
    /// was ever deleted at (0: never): a write's new version must exceed both.
    async fn version_and_floor(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<(Option<(i64, ConnectionStatus)>, i64), sqlx::Error>;

    /// Creates the record at `w.version`; false when it already exists.
    async fn insert(
        &self,
        user_id: &str,
        provider: &str,
        w: &CredentialWrite<'_>,
        upstream_issuer: &str,
        upstream_subject: &str,
    ) -> Result<bool, sqlx::Error>;

    /// Replaces the credential (a new connection) if the record is still at `expected`.
    async fn replace(
        &self,
        user_id: &str,
        provider: &str,
        expected: i64,
        w: &CredentialWrite<'_>,
        upstream_issuer: &str,
        upstream_subject: &str,
    ) -> Result<bool, sqlx::Error>;

    /// Stores refreshed tokens if the record is still at `expected`.
    async fn store_refreshed(
        &self,
        user_id: &str,
        provider: &str,
        expected: i64,
        w: &CredentialWrite<'_>,
    ) -> Result<bool, sqlx::Error>;

    /// Marks the record as needing a new connection, if it is still at `expected`. The
    /// ciphertext (and so the version) stays, readable for an upstream revocation later.
    async fn mark_reauthorization_required(
        &self,
        user_id: &str,
        provider: &str,
        expected: i64,
    ) -> Result<bool, sqlx::Error>;

    /// Deletes the record and records its version in its tombstone, atomically (a later record
    /// of the pair starts above it); returns what was deleted.
    async fn delete(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<Option<CredentialRow>, sqlx::Error>;

    /// Up to `limit` records not sealed under `current_key`, in key order after `after`.
    async fn not_under_key(
        &self,
        current_key: &str,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<CredentialRow>, sqlx::Error>;

    /// Re-seals one record under another key, keeping its version (the authenticated data is
    /// unchanged), if neither its version nor its key changed meanwhile.
    async fn reseal(&self, row: &CredentialRow, sealed: &Sealed) -> Result<bool, sqlx::Error>;

    /// How many records are sealed under each key.
    async fn count_by_key(&self) -> Result<Vec<(String, i64)>, sqlx::Error>;

    /// Whether the store answers (readiness).
    async fn ping(&self) -> Result<(), sqlx::Error>;
}
