//! The vault access trail: who (caller) did what (action) to which user's credential for which
//! provider, and how it ended. Never a token or secret. Written to `vault_audit` (through an
//! [`AuditSink`]: Postgres, or SQLite in the embedded mode) in batches by a
//! background task so that the request path never waits on an insert (identical accesses within
//! a batch are one row with their `count`), and also emitted as a
//! structured log event (target `audit`). A full channel applies back-pressure for at most
//! [`RECORD_WAIT`] (then the row is dropped, counted and logged; the log event above is still
//! written); a row the database refuses on its own is quarantined without holding up the rest
//! (see `mcpauth_runtime::batch`); shutdown drains.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use mcpauth_runtime::batch::{Batching, Recorder, Sink, Trail, sanitize, sanitize_json};

use crate::store::audit::AuditSink;

/// One access.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: DateTime<Utc>,
    pub caller: String,
    pub action: &'static str,
    pub user_id: String,
    pub provider: String,
    pub outcome: &'static str,
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// An access; control characters in the names are replaced (they are checked at the edge,
    /// but the trail must not depend on every caller having done so).
    pub fn new(caller: &str, action: &'static str, user_id: &str, provider: &str) -> Self {
        Self {
            at: Utc::now(),
            caller: sanitize(caller).into_owned(),
            action,
            user_id: sanitize(user_id).into_owned(),
            provider: sanitize(provider).into_owned(),
            outcome: "ok",
            detail: serde_json::json!({}),
        }
    }
    pub fn outcome(mut self, outcome: &'static str) -> Self {
        self.outcome = outcome;
        self
    }
    pub fn detail(mut self, mut detail: serde_json::Value) -> Self {
        sanitize_json(&mut detail);
        self.detail = detail;
        self
    }
}

#[derive(Clone)]
pub struct AuditLog {
    recorder: Recorder<AuditEvent>,
}

/// Longest a request waits for room in a full channel before its row is dropped (and counted in
/// `mcpauth_batch_dropped_total{trail="vault audit"}`).
pub const RECORD_WAIT: Duration = Duration::from_secs(1);

/// The access trail: 65,536 rows of slack, batches of up to 1,000 gathered for 10 ms after the
/// first one (see [`Batching`]): without the linger, every `GetAccessToken` at moderate load cost
/// a Postgres commit.
const TRAIL: Trail = Trail {
    name: "vault audit",
    channel: 65_536,
    batching: Batching {
        max: 1_000,
        linger: Duration::from_millis(10),
    },
    record_wait: RECORD_WAIT,
};

impl AuditLog {
    /// Starts the writer; it ends once every handle is dropped and the channel is drained.
    pub fn start(sink: Arc<dyn AuditSink>) -> (Self, tokio::task::JoinHandle<()>) {
        let (recorder, writer) = TRAIL.start(AuditTable { sink });
        (Self { recorder }, writer)
    }

    pub async fn record(&self, e: AuditEvent) {
        tracing::info!(target: "audit", caller = %e.caller, action = e.action, user_id = %e.user_id,
            provider = %e.provider, outcome = e.outcome, "vault access");
        metrics::counter!("mcpauth_vault_access_total", "action" => e.action, "outcome" => e.outcome)
            .increment(1);
        if !self.recorder.record(e).await {
            tracing::error!("vault audit row not recorded; the access is in the log above");
        }
    }
}

/// The `vault_audit` table, whichever store holds it.
struct AuditTable {
    sink: Arc<dyn AuditSink>,
}

impl Sink<AuditEvent> for AuditTable {
    type Error = sqlx::Error;
    fn write<'a>(&'a mut self, batch: &'a [AuditEvent]) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        self.sink.record(batch)
    }
    fn rejects(&self, error: &sqlx::Error) -> bool {
        self.sink.rejects(error)
    }
    fn quarantine(&mut self, e: &AuditEvent, error: &sqlx::Error) {
        tracing::error!(target: "audit", error = %error, caller = %e.caller, action = e.action,
            user_id = %e.user_id, provider = %e.provider, outcome = e.outcome, at = %e.at,
            "vault audit row refused by the database; quarantined in this log");
    }
}

/// One row of the trail: `count` identical accesses, the earliest at `first`, the latest at
/// `last` (events may reach the writer slightly out of order).
pub(crate) struct Row<'a> {
    pub event: &'a AuditEvent,
    pub count: i32,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// Folds identical accesses of a batch (same caller, action, user, provider, outcome and detail)
/// into one row each, in the order of their first occurrence.
pub(crate) fn coalesce(batch: &[AuditEvent]) -> Vec<Row<'_>> {
    let mut rows: Vec<Row<'_>> = Vec::new();
    let mut index: HashMap<(&str, &str, &str, &str, &str), Vec<usize>> = HashMap::new();
    for e in batch {
        let key = (
            e.caller.as_str(),
            e.action,
            e.user_id.as_str(),
            e.provider.as_str(),
            e.outcome,
        );
        let same = index.get(&key).and_then(|ids| {
            ids.iter()
                .copied()
                .find(|&i| rows[i].event.detail == e.detail)
        });
        match same {
            Some(i) => {
                rows[i].count += 1;
                rows[i].first = rows[i].first.min(e.at);
                rows[i].last = rows[i].last.max(e.at);
            }
            None => {
                index.entry(key).or_default().push(rows.len());
                rows.push(Row {
                    event: e,
                    count: 1,
                    first: e.at,
                    last: e.at,
                });
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_accesses_of_a_batch_are_one_row_with_their_count() {
        let get = |user: &str| AuditEvent::new("mcp-service", "get", user, "github");
        let mut later = get("alice");
        later.at += chrono::Duration::milliseconds(5);
        let mut earlier = get("alice");
        earlier.at -= chrono::Duration::milliseconds(5);
        let batch = vec![
            get("alice"),
            get("bob"),
            later.clone(),
            earlier.clone(),
            get("alice").outcome("not_found"),
            AuditEvent::new("mcp-service", "put", "alice", "github")
                .detail(serde_json::json!({"version": 2})),
            AuditEvent::new("mcp-service", "put", "alice", "github")
                .detail(serde_json::json!({"version": 3})),
        ];
        let rows = coalesce(&batch);
        let seen: Vec<(&str, &str, &str, i32)> = rows
            .iter()
            .map(|r| {
                (
                    r.event.action,
                    r.event.user_id.as_str(),
                    r.event.outcome,
                    r.count,
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("get", "alice", "ok", 3),
                ("get", "bob", "ok", 1),
                ("get", "alice", "not_found", 1),
                ("put", "alice", "ok", 1),
                ("put", "alice", "ok", 1),
            ]
        );
        assert_eq!((rows[0].first, rows[0].last), (earlier.at, later.at));
        assert_eq!(
            rows.iter().map(|r| r.count).sum::<i32>() as usize,
            batch.len()
        );
    }
}
