//! Authorization codes in this process's memory: the codes, the used marks and the replay flags
//! under one lock, so a redemption and a grant binding are each atomic.

use std::sync::Mutex;

use uuid::Uuid;

use super::{AuthorizationCodes, CodeRecord, CodeRedemption, USED_CODE_TTL_SECS};
use crate::error::StoreError;
use crate::store::ephemeral::ttl_table::{TtlTable, deadline, lock};

#[derive(Default)]
pub struct MemoryAuthorizationCodes {
    tables: Mutex<Tables>,
}

#[derive(Default)]
struct Tables {
    codes: TtlTable<Vec<u8>, CodeRecord>,
    /// Redeemed codes: the grant each produced, once known.
    used: TtlTable<Vec<u8>, Option<Uuid>>,
    /// Redeemed codes presented again before their grant was known.
    replayed: TtlTable<Vec<u8>, ()>,
}

#[async_trait::async_trait]
impl AuthorizationCodes for MemoryAuthorizationCodes {
    async fn put(&self, code_sha256: &[u8], rec: &CodeRecord, ttl: u64) -> Result<(), StoreError> {
        lock(&self.tables)
            .codes
            .insert(code_sha256.to_vec(), rec.clone(), deadline(ttl));
        Ok(())
    }

    async fn redeem(&self, code_sha256: &[u8]) -> Result<CodeRedemption, StoreError> {
        let mut t = lock(&self.tables);
        if let Some(rec) = t.codes.remove(code_sha256) {
            t.used
                .insert(code_sha256.to_vec(), None, deadline(USED_CODE_TTL_SECS));
            return Ok(CodeRedemption::Fresh(rec));
        }
        match t.used.get(code_sha256).copied() {
            None => Ok(CodeRedemption::Unknown),
            Some(None) => {
                // The grant binding will see the flag and revoke what it issued.
                t.replayed
                    .insert(code_sha256.to_vec(), (), deadline(USED_CODE_TTL_SECS));
                Ok(CodeRedemption::Replayed(None))
            }
            Some(grant) => Ok(CodeRedemption::Replayed(grant)),
        }
    }

    async fn bind_grant(&self, code_sha256: &[u8], grant_id: Uuid) -> Result<bool, StoreError> {
        let mut t = lock(&self.tables);
        t.used.insert(
            code_sha256.to_vec(),
            Some(grant_id),
            deadline(USED_CODE_TTL_SECS),
        );
        Ok(t.replayed.get(code_sha256).is_some())
    }
}
