//! Browser sessions in this process's memory: the sessions and the per-user index under one
//! lock.

use std::collections::HashSet;
use std::sync::Mutex;

use uuid::Uuid;

use super::BrowserSessions;
use crate::error::StoreError;
use crate::store::ephemeral::ttl_table::{TtlTable, deadline, lock};

#[derive(Default)]
pub struct MemoryBrowserSessions {
    tables: Mutex<Tables>,
}

#[derive(Default)]
struct Tables {
    sessions: TtlTable<Vec<u8>, Uuid>,
    by_user: TtlTable<Uuid, HashSet<Vec<u8>>>,
}

#[async_trait::async_trait]
impl BrowserSessions for MemoryBrowserSessions {
    async fn put(&self, session_sha256: &[u8], user_id: Uuid, ttl: u64) -> Result<(), StoreError> {
        let mut t = lock(&self.tables);
        let expires = deadline(ttl);
        t.sessions.insert(session_sha256.to_vec(), user_id, expires);
        // As Redis `SADD` + `EXPIRE`: the index lives as long as the newest session.
        match t.by_user.get_mut(&user_id) {
            Some((ids, index_expires)) => {
                ids.insert(session_sha256.to_vec());
                *index_expires = expires;
            }
            None => {
                let ids = HashSet::from([session_sha256.to_vec()]);
                t.by_user.insert(user_id, ids, expires);
            }
        }
        Ok(())
    }

    async fn get(&self, session_sha256: &[u8]) -> Result<Option<Uuid>, StoreError> {
        Ok(lock(&self.tables).sessions.get(session_sha256).copied())
    }

    async fn delete(&self, session_sha256: &[u8]) -> Result<bool, StoreError> {
        Ok(lock(&self.tables).sessions.remove(session_sha256).is_some())
    }

    async fn delete_user(&self, user_id: Uuid) -> Result<u64, StoreError> {
        let mut t = lock(&self.tables);
        let ids = t.by_user.remove(&user_id).unwrap_or_default();
        let live = ids
            .iter()
            .filter(|id| t.sessions.remove(id.as_slice()).is_some())
            .count();
        Ok(live as u64)
    }
}
