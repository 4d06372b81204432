//! Storage: Postgres is the system of record (clients, users, consents, grants, refresh-token
//! hashes, revocations, audit); Redis holds what is short-lived or shared between replicas
//! (pending authorizations, codes, browser sessions, rate-limit windows, event fan-out).
//!
//! Each durable aggregate is a narrow interface (`<aggregate>.rs`: the trait and its types) with
//! a Postgres implementation (`<aggregate>/postgres.rs`, production) and a SQLite one
//! (`<aggregate>/sqlite.rs`, the embedded single-process mode); [`crate::stores::Stores`]
//! holds one of each.

pub mod audit;
pub mod clients;
pub mod consents;
pub mod ephemeral;
pub mod grants;
pub mod health;
pub mod revocations;
pub mod sqlite;
pub mod user_admin;
pub mod users;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::error::StoreError;

/// The embedded migrations of auth-service (`migrations/auth-service`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/auth-service");

/// Connects to Postgres.
pub async fn connect_postgres(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await?)
}

/// Applies pending migrations (idempotent; sqlx takes an advisory lock so replicas never race).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
