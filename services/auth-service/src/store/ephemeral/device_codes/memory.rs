//! Device authorizations in this process's memory: records and the user-code index under one
//! lock, so each poll and each decision is atomic.

use std::sync::Mutex;

use uuid::Uuid;

use super::{
    DeviceAuthorization, DeviceCodes, DeviceDecision, DevicePoll, POLL_TOLERANCE_MS,
    SLOW_DOWN_STEP_SECS, retention_secs,
};
use crate::error::StoreError;
use crate::store::ephemeral::ttl_table::{TtlTable, deadline, lock};

#[derive(Default)]
pub struct MemoryDeviceCodes {
    tables: Mutex<Tables>,
}

#[derive(Default)]
struct Tables {
    records: TtlTable<Vec<u8>, Record>,
    /// User code hash → device code hash.
    user_codes: TtlTable<Vec<u8>, Vec<u8>>,
}

struct Record {
    auth: DeviceAuthorization,
    status: Status,
    interval: u64,
    /// Unix milliseconds of the last poll (0: none yet).
    last_poll_ms: i64,
}

enum Status {
    Pending,
    Approved {
        user_id: Uuid,
        authenticated_at: i64,
    },
    Denied,
    Redeemed,
}

#[async_trait::async_trait]
impl DeviceCodes for MemoryDeviceCodes {
    async fn put(
        &self,
        device_sha256: &[u8],
        user_sha256: &[u8],
        auth: &DeviceAuthorization,
        interval: u64,
    ) -> Result<bool, StoreError> {
        let now = chrono::Utc::now().timestamp();
        let mut t = lock(&self.tables);
        if t.user_codes.get(user_sha256).is_some() {
            return Ok(false);
        }
        let user_ttl = (auth.expires_at - now).max(1) as u64;
        t.user_codes.insert(
            user_sha256.to_vec(),
            device_sha256.to_vec(),
            deadline(user_ttl),
        );
        t.records.insert(
            device_sha256.to_vec(),
            Record {
                auth: auth.clone(),
                status: Status::Pending,
                interval,
                last_poll_ms: 0,
            },
            deadline(retention_secs(auth, now)),
        );
        Ok(true)
    }

    async fn pending_by_user_code(
        &self,
        user_sha256: &[u8],
        now: i64,
    ) -> Result<Option<(Vec<u8>, DeviceAuthorization)>, StoreError> {
        let t = lock(&self.tables);
        let Some(device) = t.user_codes.get(user_sha256) else {
            return Ok(None);
        };
        Ok(t.records
            .get(device.as_slice())
            .filter(|r| matches!(r.status, Status::Pending) && now < r.auth.expires_at)
            .map(|r| (device.clone(), r.auth.clone())))
    }

    async fn decide(
        &self,
        device_sha256: &[u8],
        decision: DeviceDecision,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut t = lock(&self.tables);
        let Some((r, _)) = t.records.get_mut(device_sha256) else {
            return Ok(false);
        };
        if !matches!(r.status, Status::Pending) || now >= r.auth.expires_at {
            return Ok(false);
        }
        r.status = match decision {
            DeviceDecision::Approved {
                user_id,
                authenticated_at,
            } => Status::Approved {
                user_id,
                authenticated_at,
            },
            DeviceDecision::Denied => Status::Denied,
        };
        Ok(true)
    }

    async fn poll(
        &self,
        device_sha256: &[u8],
        client_id: &str,
        now_ms: i64,
    ) -> Result<DevicePoll, StoreError> {
        let mut t = lock(&self.tables);
        let Some((r, _)) = t.records.get_mut(device_sha256) else {
            return Ok(DevicePoll::Unknown);
        };
        if r.auth.client_id != client_id {
            return Ok(DevicePoll::WrongClient);
        }
        if matches!(r.status, Status::Redeemed) {
            return Ok(DevicePoll::Redeemed);
        }
        if now_ms >= r.auth.expires_at * 1000 {
            return Ok(DevicePoll::Expired);
        }
        match r.status {
            Status::Denied => Ok(DevicePoll::Denied),
            Status::Approved {
                user_id,
                authenticated_at,
            } => {
                r.status = Status::Redeemed;
                Ok(DevicePoll::Approved {
                    auth: r.auth.clone(),
                    user_id,
                    authenticated_at,
                })
            }
            Status::Pending => {
                let early = r.last_poll_ms > 0
                    && now_ms - r.last_poll_ms < r.interval as i64 * 1000 - POLL_TOLERANCE_MS;
                r.last_poll_ms = now_ms;
                if early {
                    r.interval += SLOW_DOWN_STEP_SECS;
                    Ok(DevicePoll::SlowDown {
                        interval: r.interval,
                    })
                } else {
                    Ok(DevicePoll::Pending {
                        interval: r.interval,
                    })
                }
            }
            Status::Redeemed => Ok(DevicePoll::Redeemed),
        }
    }
}
