//! The embedded mode's SQL store: one SQLite file (through sqlx) holding the same tables as
//! Postgres does in production (`migrations/auth-service-sqlite`, types translated as its first
//! migration explains).
//!
//! SQLite serialises writers, where Postgres relied on row locks, advisory locks and statements
//! that re-check a row under READ COMMITTED. The SQLite implementations therefore do every
//! read-decide-write inside one `BEGIN IMMEDIATE` transaction ([`begin_immediate`]): it takes
//! the write lock up front, so the read sees the state the write applies to and no second writer
//! can interleave (a deferred transaction would instead fail with `SQLITE_BUSY` when it upgrades
//! from reader to writer after another commit). Waiting for the lock is bounded by the busy
//! timeout. WAL lets readers go on while one writer writes. Timestamps are Unix microseconds,
//! taken from this process's clock (there is one process).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::error::StoreError;

/// The embedded migrations of the SQLite store (`migrations/auth-service-sqlite`).
pub static MIGRATOR: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/auth-service-sqlite");

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections: readers run side by side under WAL; writers queue on the lock anyway.
const MAX_CONNECTIONS: u32 = 8;

/// Opens (creating it if need be) the database file at `path` and applies its migrations.
pub async fn open(path: &Path) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str("sqlite:")
        .map_err(StoreError::from)?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| StoreError::Database(e.into()))?;
    Ok(pool)
}

/// A transaction that holds SQLite's write lock from its first statement on.
pub(crate) async fn begin_immediate(
    pool: &SqlitePool,
) -> Result<Transaction<'static, Sqlite>, StoreError> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// Now, as stored: Unix microseconds.
pub(crate) fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// A stored instant (Unix microseconds).
pub(crate) fn from_micros(v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(v)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {v} out of range")))
}

/// Whole seconds, as a stored instant.
pub(crate) fn secs_to_micros(secs: i64) -> i64 {
    secs.saturating_mul(1_000_000)
}

/// A list of strings as stored: a JSON array.
pub(crate) fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).expect("a list of strings serialises")
}

/// A stored JSON array of strings.
pub(crate) fn parse_list(s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("stored list: {e}")))
}
