//! Upstream states in this process's memory.

use std::sync::Mutex;

use super::{UpstreamAuthState, UpstreamStates};
use crate::error::StoreError;
use crate::store::ephemeral::ttl_table::{TtlTable, deadline, lock};

#[derive(Default)]
pub struct MemoryUpstreamStates {
    table: Mutex<TtlTable<Vec<u8>, UpstreamAuthState>>,
}

#[async_trait::async_trait]
impl UpstreamStates for MemoryUpstreamStates {
    async fn put(
        &self,
        state_sha256: &[u8],
        s: &UpstreamAuthState,
        ttl: u64,
    ) -> Result<(), StoreError> {
        lock(&self.table).insert(state_sha256.to_vec(), s.clone(), deadline(ttl));
        Ok(())
    }

    async fn take(&self, state_sha256: &[u8]) -> Result<Option<UpstreamAuthState>, StoreError> {
        Ok(lock(&self.table).remove(state_sha256))
    }
}
