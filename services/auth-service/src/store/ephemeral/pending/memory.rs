//! Pending authorizations in this process's memory.

use std::sync::Mutex;

use super::{PendingAuthorization, PendingAuthorizations};
use crate::error::StoreError;
use crate::store::ephemeral::ttl_table::{TtlTable, deadline, lock};

#[derive(Default)]
pub struct MemoryPendingAuthorizations {
    table: Mutex<TtlTable<String, PendingAuthorization>>,
}

#[async_trait::async_trait]
impl PendingAuthorizations for MemoryPendingAuthorizations {
    async fn put(&self, id: &str, p: &PendingAuthorization, ttl: u64) -> Result<(), StoreError> {
        lock(&self.table).insert(id.to_owned(), p.clone(), deadline(ttl));
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<PendingAuthorization>, StoreError> {
        Ok(lock(&self.table).get(id).cloned())
    }

    async fn take(&self, id: &str) -> Result<Option<PendingAuthorization>, StoreError> {
        Ok(lock(&self.table).remove(id))
    }
}
