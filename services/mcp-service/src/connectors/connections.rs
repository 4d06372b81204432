//! Which providers each user has connected: asked of token-vault (`ListConnections`, with the
//! user's own token), cached briefly per user, and invalidated by token-vault's connection
//! events, which also tell the user's sessions that their tool list changed.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::auth::Principal;
use crate::tools::Connections;
use crate::vault::{VaultClient, VaultError};

/// Bound on cached users (the cache is emptied of expired entries past it).
const MAX_USERS: usize = 100_000;

/// Called with a subject whose tool list changed (sends `notifications/tools/list_changed`
/// to that user's sessions).
pub type ToolsChanged = Arc<dyn Fn(&str) + Send + Sync>;

/// When a user's connections were read, and the providers connected then.
type Entry = (Instant, BTreeSet<String>);

#[derive(Clone)]
pub struct ConnectionCache {
    vault: VaultClient,
    ttl: Duration,
    users: Arc<RwLock<HashMap<String, Entry>>>,
    /// Bumped by every invalidation: an answer asked for before one is not cached.
    epoch: Arc<AtomicU64>,
}

impl ConnectionCache {
    pub fn new(vault: VaultClient, ttl: Duration) -> Self {
        Self {
            vault,
            ttl,
            users: Default::default(),
            epoch: Default::default(),
        }
    }

    pub fn invalidate(&self, subject: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.users
            .write()
            .expect("connection cache")
            .remove(subject);
    }

    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.users.write().expect("connection cache").clear();
    }

    fn cached(&self, subject: &str) -> Option<BTreeSet<String>> {
        let users = self.users.read().expect("connection cache");
        let (at, set) = users.get(subject)?;
        (at.elapsed() < self.ttl).then(|| set.clone())
    }

    fn store(&self, subject: &str, set: BTreeSet<String>, epoch: u64) {
        let mut users = self.users.write().expect("connection cache");
        // An invalidation while we were asking: the answer may be stale, do not keep it.
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        if users.len() >= MAX_USERS {
            let ttl = self.ttl;
            users.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        users.insert(subject.to_owned(), (Instant::now(), set));
    }
}

impl Connections for ConnectionCache {
    fn connected<'a>(&'a self, p: &'a Principal) -> BoxFuture<'a, Option<BTreeSet<String>>> {
        Box::pin(async move {
            if let Some(hit) = self.cached(&p.subject) {
                return Some(hit);
            }
            let token = p.access_token.as_ref()?;
            let epoch = self.epoch.load(Ordering::SeqCst);
            match self.vault.connections(token).await {
                Ok(list) => {
                    let set: BTreeSet<String> = list
                        .into_iter()
                        .filter(|c| c.connected)
                        .map(|c| c.provider)
                        .collect();
                    self.store(&p.subject, set.clone(), epoch);
                    Some(set)
                }
                // A caller the vault does not know as a user has no connections.
                Err(VaultError::Unauthenticated) => Some(BTreeSet::new()),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the user's connections");
                    None
                }
            }
        })
    }
}

/// A token-vault connection event.
#[derive(Debug, serde::Deserialize)]
struct ConnectionEvent {
    user_id: String,
    #[allow(dead_code)]
    provider: String,
    #[allow(dead_code)]
    status: String,
}

/// Follows `<vault key_prefix>:connections` until `cancel`: each event invalidates the user's
/// cached connections, then `changed(user)` tells the user's sessions. While the subscription
/// is down the whole cache is dropped on reconnect, so nothing missed meanwhile survives.
pub async fn follow(
    url: String,
    channel: String,
    cache: ConnectionCache,
    changed: ToolsChanged,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let client = match redis::Client::open(url.as_str()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "invalid redis url for connection events");
                return;
            }
        };
        let subscribed = match client.get_async_pubsub().await {
            Ok(mut pubsub) => pubsub.subscribe(&channel).await.is_ok().then_some(pubsub),
            Err(_) => None,
        };
        match subscribed {
            Some(mut pubsub) => {
                cache.clear();
                backoff = Duration::from_millis(100);
                let mut stream = pubsub.on_message();
                loop {
                    tokio::select! {
                        msg = stream.next() => {
                            let Some(msg) = msg else { break };
                            let Ok(payload) = msg.get_payload::<String>() else { continue };
                            match serde_json::from_str::<ConnectionEvent>(&payload) {
                                Ok(ev) => {
                                    cache.invalidate(&ev.user_id);
                                    changed(&ev.user_id);
                                }
                                Err(_) => tracing::warn!("malformed connection event ignored"),
                            }
                        }
                        () = cancel.cancelled() => return,
                    }
                }
                tracing::warn!("connection event subscription closed, reconnecting");
            }
            None => tracing::warn!("cannot subscribe to connection events, retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = cancel.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
