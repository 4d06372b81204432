//! Connection-pool gauges of the Postgres (sqlx) and Redis (deadpool) pools, sampled every
//! [`SAMPLE_EVERY`] by a task each service starts beside its pools:
//!
//! | metric | labels |
//! |---|---|
//! | `mcpauth_pool_connections` (gauge) | `pool` (`postgres`, `redis`), `state` (`idle`, `in_use`) |
//! | `mcpauth_pool_max_connections` (gauge) | `pool` |
//! | `mcpauth_pool_waiting` (gauge) | `pool` (`redis` only: requests waiting for a connection; sqlx does not expose its queue) |
//!
//! A pool at its maximum with requests waiting is the signal to raise `database.max_connections`
//! or `redis.pool_size` (or to look for slow queries).

use std::time::Duration;

/// How often the gauges are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Samples the pools now and every [`SAMPLE_EVERY`], until the task is aborted (services abort
/// it at shutdown with their other background tasks).
pub fn spawn(
    postgres: Option<sqlx::PgPool>,
    redis: Option<deadpool_redis::Pool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Some(p) = &postgres {
                record_postgres(p);
            }
            if let Some(r) = &redis {
                record_redis(r);
            }
        }
    })
}

/// Records the Postgres pool's gauges.
pub fn record_postgres(pool: &sqlx::PgPool) {
    let size = pool.size() as f64;
    let idle = pool.num_idle() as f64;
    record(
        "postgres",
        idle,
        (size - idle).max(0.0),
        f64::from(pool.options().get_max_connections()),
        None,
    );
}

/// Records the Redis pool's gauges.
pub fn record_redis(pool: &deadpool_redis::Pool) {
    let s = pool.status();
    record(
        "redis",
        s.available as f64,
        s.size.saturating_sub(s.available) as f64,
        s.max_size as f64,
        Some(s.waiting as f64),
    );
}

fn record(pool: &'static str, idle: f64, in_use: f64, max: f64, waiting: Option<f64>) {
    metrics::gauge!("mcpauth_pool_connections", "pool" => pool, "state" => "idle").set(idle);
    metrics::gauge!("mcpauth_pool_connections", "pool" => pool, "state" => "in_use").set(in_use);
    metrics::gauge!("mcpauth_pool_max_connections", "pool" => pool).set(max);
    if let Some(w) = waiting {
        metrics::gauge!("mcpauth_pool_waiting", "pool" => pool).set(w);
    }
}
