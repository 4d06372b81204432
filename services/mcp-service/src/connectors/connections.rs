//! What token-vault told this replica about a user, kept briefly and dropped the moment the
//! vault says it changed: which providers each user has connected (`ListConnections`), and the
//! upstream access tokens it handed out for an MCP token (`GetAccessToken`, see
//! [`UpstreamTokenCache`]). Both are asked with the user's own MCP token and invalidated by
//! token-vault's connection events, which also tell the user's sessions that their tool list
//! changed.

use mcpauth_runtime::bus::{ChannelEvent, EventBus};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use mcpauth_runtime::Secret;

use crate::auth::{BearerToken, Principal};
use crate::tools::Connections;
use crate::vault::{VaultClient, VaultTokenError};

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
    /// Upstream access tokens, invalidated with the connections.
    pub tokens: UpstreamTokenCache,
}

impl ConnectionCache {
    /// `ttl`: how long a user's connections are reused; `tokens_ttl`: how long an upstream
    /// access token is (zero: every call asks the vault).
    pub fn new(vault: VaultClient, ttl: Duration, tokens_ttl: Duration) -> Self {
        Self {
            tokens: UpstreamTokenCache::new(vault.clone(), tokens_ttl),
            vault,
            ttl,
            users: Default::default(),
            epoch: Default::default(),
        }
    }

    /// Forgets what is known of `subject`: connections and upstream tokens.
    pub fn invalidate(&self, subject: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.users
            .write()
            .expect("connection cache")
            .remove(subject);
        self.tokens.invalidate(subject);
    }

    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.users.write().expect("connection cache").clear();
        self.tokens.clear();
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

/// Upstream access tokens that token-vault handed out, reused for a few seconds by the same MCP
/// token (`vault.upstream_token_cache_ttl_ms`, default 30 s; 0 asks the vault on every call).
///
/// What keeps this as safe as asking every time:
/// - An entry is keyed by SHA-256(MCP access token, provider): only a request carrying the very
///   token the vault authorized reaches it, and that request has just been verified (live, not
///   revoked, this resource's audience). Another token of the same user asks the vault anew;
///   another user cannot name the entry at all.
/// - It lives at most the TTL, and never past the upstream token's expiry minus
///   [`EXPIRY_MARGIN`] (token-vault's default refresh buffer), so it never serves a token the
///   vault would have refreshed.
/// - A connection event for the user (connected, disconnected, needs re-authorization) drops the
///   user's entries at once; a lost subscription drops them all; an upstream 401 drops them.
/// - Plaintext tokens stay in this process's memory, as they already did for the length of a
///   call: never in Redis, Postgres or a log line. At most [`MAX_TOKENS`] entries.
#[derive(Clone)]
pub struct UpstreamTokenCache {
    vault: VaultClient,
    ttl: Duration,
    entries: Arc<RwLock<HashMap<[u8; 32], CachedToken>>>,
    epoch: Arc<AtomicU64>,
}

struct CachedToken {
    subject: Arc<str>,
    token: Secret,
    until: Instant,
}

/// Bound on cached upstream tokens (expired ones are swept past it; beyond, nothing is added).
pub const MAX_TOKENS: usize = 100_000;

/// An upstream token is not reused within this many seconds of its expiry (token-vault's
/// default refresh buffer): the vault is asked, and refreshes it.
pub const EXPIRY_MARGIN: i64 = 60;

fn token_key(token: &BearerToken, provider: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(token.expose().as_bytes());
    ctx.update(&[0]);
    ctx.update(provider.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(ctx.finish().as_ref());
    k
}

impl UpstreamTokenCache {
    pub fn new(vault: VaultClient, ttl: Duration) -> Self {
        Self {
            vault,
            ttl,
            entries: Default::default(),
            epoch: Default::default(),
        }
    }

    /// A valid upstream access token of `p` for `provider`, and whether it was reused: reused
    /// when this MCP token got one recently (unless `fresh`), else asked of token-vault with the
    /// user's own token.
    pub async fn access_token(
        &self,
        p: &Principal,
        token: &BearerToken,
        provider: &str,
        fresh: bool,
    ) -> Result<(Secret, bool), VaultTokenError> {
        if self.ttl.is_zero() {
            let (t, _) = self.vault.access_token(token, provider).await?;
            return Ok((t, false));
        }
        let key = token_key(token, provider);
        if !fresh && let Some(hit) = self.cached(&key) {
            metrics::counter!("mcpauth_mcp_upstream_token_cache_total", "result" => "hit")
                .increment(1);
            return Ok((hit, true));
        }
        metrics::counter!("mcpauth_mcp_upstream_token_cache_total", "result" => "miss")
            .increment(1);
        let epoch = self.epoch.load(Ordering::SeqCst);
        let (secret, expires_at) = self.vault.access_token(token, provider).await?;
        self.store(key, &p.subject, &secret, expires_at, epoch);
        Ok((secret, false))
    }

    /// Forgets the token reused for this MCP token and provider (the upstream refused it).
    pub fn forget(&self, token: &BearerToken, provider: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries
            .write()
            .expect("upstream tokens")
            .remove(&token_key(token, provider));
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Secret> {
        let entries = self.entries.read().expect("upstream tokens");
        let e = entries.get(key)?;
        (Instant::now() < e.until).then(|| e.token.clone())
    }

    fn store(&self, key: [u8; 32], subject: &str, token: &Secret, expires_at: i64, epoch: u64) {
        let mut life = self.ttl;
        // Negative: nonsense from upstream; treat as expired.
        if expires_at < 0 {
            return;
        }
        if expires_at > 0 {
            let left = expires_at - EXPIRY_MARGIN - crate::verify::cache::now_secs();
            match u64::try_from(left) {
                Ok(secs) if secs > 0 => life = life.min(Duration::from_secs(secs)),
                _ => return,
            }
        }
        let mut entries = self.entries.write().expect("upstream tokens");
        // An invalidation while we were asking: the answer may be stale, do not keep it.
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        if entries.len() >= MAX_TOKENS {
            let now = Instant::now();
            entries.retain(|_, e| now < e.until);
            if entries.len() >= MAX_TOKENS {
                return;
            }
        }
        entries.insert(
            key,
            CachedToken {
                subject: Arc::from(subject),
                token: token.clone(),
                until: Instant::now() + life,
            },
        );
    }

    /// Forgets every upstream token of `subject`.
    pub fn invalidate(&self, subject: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries
            .write()
            .expect("upstream tokens")
            .retain(|_, e| &*e.subject != subject);
    }

    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.write().expect("upstream tokens").clear();
    }

    /// How many tokens are held (for tests).
    pub fn len(&self) -> usize {
        self.entries.read().expect("upstream tokens").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
                Err(VaultTokenError::Unauthenticated) => Some(BTreeSet::new()),
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

/// What a follower of token-vault's connection events learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionNews {
    /// The connections of this user changed (connected, disconnected, needs
    /// re-authorization).
    Changed(String),
    /// Events may have been missed (subscribed anew, or the subscription is down): nothing
    /// learnt before can be trusted.
    Missed,
}

/// Follows token-vault's connection events on `channel` of `bus` until `stop`, telling `on`.
pub async fn follow_news(
    bus: &dyn EventBus,
    channel: &str,
    stop: impl std::future::Future<Output = ()>,
    mut on: impl FnMut(ConnectionNews),
) {
    mcpauth_runtime::bus::follow(bus, channel, "connection events", stop, |event| {
        match event {
            // Events published before now were not seen.
            ChannelEvent::Subscribed => on(ConnectionNews::Missed),
            ChannelEvent::Message(payload) => {
                match serde_json::from_str::<ConnectionEvent>(&payload) {
                    Ok(ev) => on(ConnectionNews::Changed(ev.user_id)),
                    Err(_) => tracing::warn!("malformed connection event ignored"),
                }
            }
            // Events are being missed until resubscribed.
            ChannelEvent::Lost => on(ConnectionNews::Missed),
        }
        std::future::ready(())
    })
    .await;
}

/// Follows `<vault key_prefix>:connections` until `cancel`: each event invalidates the user's
/// cached connections, then `changed(user)` tells the user's sessions. While the subscription
/// is down the whole cache is dropped on reconnect, so nothing missed meanwhile survives.
pub async fn follow(
    bus: Arc<dyn EventBus>,
    channel: String,
    cache: ConnectionCache,
    changed: ToolsChanged,
    cancel: CancellationToken,
) {
    follow_news(&*bus, &channel, cancel.cancelled(), |news| match news {
        ConnectionNews::Changed(user) => {
            cache.invalidate(&user);
            changed(&user);
        }
        ConnectionNews::Missed => cache.clear(),
    })
    .await;
}
