//! Revocation fan-out: auth-service publishes every revocation on `<auth prefix>:events`; each
//! vault replica evicts the tokens it covers from its introspection cache at once. While the
//! subscription is down the cache is emptied on reconnect, so nothing revoked meanwhile
//! survives. The same protocol as mcp-service's `revocations`.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::introspect::IntrospectionCache;

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Event {
    Revoked { kind: String, id: String },
    ClientChanged(#[allow(dead_code)] String),
}

/// Follows the revocation channel until `cancel`.
pub async fn follow(
    url: String,
    channel: String,
    cache: IntrospectionCache,
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
