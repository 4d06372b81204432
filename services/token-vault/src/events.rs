//! Connection events on Redis: `PUBLISH <key_prefix>:connections {"user_id", "provider",
//! "status"}` after every stored, deleted or refused credential. mcp-service subscribes to
//! update its tool lists. Publishing is best effort: a lost event never blocks a request.

use deadpool_redis::Pool;
use serde::Serialize;

/// What happened to a connection.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionEvent {
    Connected,
    Disconnected,
    ReauthorizationRequired,
}

#[derive(Serialize)]
struct Message<'a> {
    user_id: &'a str,
    provider: &'a str,
    status: ConnectionEvent,
}

#[derive(Clone)]
pub struct ConnectionEvents {
    pool: Pool,
    channel: String,
}

impl ConnectionEvents {
    pub fn new(pool: Pool, key_prefix: &str) -> Self {
        Self {
            pool,
            channel: format!("{key_prefix}:connections"),
        }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub async fn publish(&self, user_id: &str, provider: &str, status: ConnectionEvent) {
        let body = serde_json::to_string(&Message {
            user_id,
            provider,
            status,
        })
        .expect("event serializes");
        let result = async {
            let mut c = self.pool.get().await.map_err(|e| e.to_string())?;
            redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(body)
                .query_async::<i64>(&mut c)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, provider, ?status, "connection event not published");
        }
    }
}
