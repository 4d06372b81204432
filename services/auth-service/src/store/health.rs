//! Whether the durable store answers (`/readyz`).

pub mod postgres;
pub mod sqlite;

use crate::error::StoreError;

/// The durable store as a whole: what readiness asks of it.
#[async_trait::async_trait]
pub trait Durable: Send + Sync + 'static {
    /// The backend's name, as `/readyz` reports it (`postgres`, `sqlite`).
    fn backend(&self) -> &'static str;

    /// One round trip to the store.
    async fn ping(&self) -> Result<(), StoreError>;
}
