//! Revocation fan-out: auth-service publishes every revocation on Redis; each mcp-service
//! replica evicts the tokens it covers from its introspection cache at once, so a revoked token
//! is refused everywhere within a second. While the subscription is down the cache is emptied
//! on reconnect, so nothing revoked meanwhile survives.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::verify::cache::IntrospectionCache;

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Event {
    Revoked { kind: String, id: String },
    ClientChanged(#[allow(dead_code)] String),
}

/// A revocation as other components of this replica see it: `kind` is `token` (a jti), `grant`
/// or `client`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub kind: String,
    pub id: String,
}

impl Revoked {
    /// Whether this revocation covers a token of `principal`.
    pub fn covers(&self, p: &crate::auth::Principal) -> bool {
        match self.kind.as_str() {
            "token" => p.token_id.as_deref() == Some(self.id.as_str()),
            "grant" => p.grant_id.as_deref() == Some(self.id.as_str()),
            "client" => p.client_id == self.id,
            _ => false,
        }
    }
}

pub async fn follow(
    url: String,
    channel: String,
    cache: IntrospectionCache,
    notify: tokio::sync::broadcast::Sender<Revoked>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        let client = match redis::Client::open(url.as_str()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "invalid redis url for revocation fan-out");
                return;
            }
        };
        let subscribed = match client.get_async_pubsub().await {
            Ok(mut pubsub) => pubsub.subscribe(&channel).await.is_ok().then_some(pubsub),
            Err(_) => None,
        };
        match subscribed {
            Some(mut pubsub) => {
                if !first {
                    // Revocations published while we were away were missed: forget everything.
                    cache.clear();
                }
                first = false;
                backoff = Duration::from_millis(100);
                let mut stream = pubsub.on_message();
                loop {
                    tokio::select! {
                        msg = stream.next() => {
                            let Some(msg) = msg else { break };
                            let Ok(payload) = msg.get_payload::<String>() else { continue };
                            if let Ok(Event::Revoked { kind, id }) = serde_json::from_str::<Event>(&payload) {
                                cache.evict(&kind, &id);
                                // Open event streams of the revoked token end too.
                                let _ = notify.send(Revoked { kind, id });
                            }
                        }
                        () = cancel.cancelled() => return,
                    }
                }
                tracing::warn!("revocation subscription closed, reconnecting");
            }
            None => tracing::warn!("cannot subscribe to revocations, retrying"),
        }
        cache.clear();
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = cancel.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
