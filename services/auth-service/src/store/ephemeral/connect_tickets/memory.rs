//! Connect tickets in this process's memory.

use std::sync::Mutex;

use super::{ConnectTicket, ConnectTickets};
use crate::error::StoreError;
use crate::store::ephemeral::ttl_table::{TtlTable, deadline, lock};

#[derive(Default)]
pub struct MemoryConnectTickets {
    table: Mutex<TtlTable<Vec<u8>, ConnectTicket>>,
}

#[async_trait::async_trait]
impl ConnectTickets for MemoryConnectTickets {
    async fn put(
        &self,
        ticket_sha256: &[u8],
        t: &ConnectTicket,
        ttl: u64,
    ) -> Result<(), StoreError> {
        lock(&self.table).insert(ticket_sha256.to_vec(), t.clone(), deadline(ttl));
        Ok(())
    }

    async fn get(&self, ticket_sha256: &[u8]) -> Result<Option<ConnectTicket>, StoreError> {
        Ok(lock(&self.table).get(ticket_sha256).cloned())
    }

    async fn bind_browser(
        &self,
        ticket_sha256: &[u8],
        browser_sha256: &str,
    ) -> Result<bool, StoreError> {
        let mut table = lock(&self.table);
        let Some((t, _expires)) = table.get_mut(ticket_sha256) else {
            return Ok(false);
        };
        match &t.browser_sha256 {
            Some(bound) => Ok(bound == browser_sha256),
            None => {
                t.browser_sha256 = Some(browser_sha256.to_owned());
                Ok(true)
            }
        }
    }

    async fn take(&self, ticket_sha256: &[u8]) -> Result<Option<ConnectTicket>, StoreError> {
        Ok(lock(&self.table).remove(ticket_sha256))
    }
}
