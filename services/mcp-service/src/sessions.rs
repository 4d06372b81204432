//! MCP sessions that every replica knows, and notifications that reach a client whichever
//! replica produced them.
//!
//! A 2025-06-18 / 2025-11-25 session is a live rmcp worker in one process; it cannot move. What
//! moves is its record ([`crate::store::sessions`], in Redis in production): any replica that
//! gets a request for a session it does not hold re-creates the worker from the stored
//! `initialize` parameters (rmcp's `SessionStore` restore). DELETE and expiry are cluster-wide
//! because every request checks the record first, and a DELETE is announced on the cluster
//! channel (the event bus) so holders drop their workers and end their GET streams at once.
//!
//! Each session is bound to the user who created it (MCP 2025-11-25: session ids SHOULD be bound
//! to the user; 2026-07-28: possession of a handle is not authentication). A request naming
//! another user's session is answered as if the session did not exist (404).
//!
//! Shared state (prefix = `redis.key_prefix`):
//! - the session record: rmcp `SessionState` JSON (the `initialize` parameters) and the owner
//!   (the subject). It expires after `sessions.idle_timeout_secs` without use; every request of
//!   the session, and every replica holding its GET stream, refreshes it.
//! - bus channel `{prefix}:sessions`: JSON [`ClusterMessage`]s (session closed, notification
//!   for a user or a session). One dispatcher task per replica delivers them to the GET streams
//!   (2025 sessions) and `subscriptions/listen` streams (2026-07-28) it holds.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::{self, Stream};
use mcpauth_runtime::bus::{BusError, ChannelEvent, EventBus};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::SubscriptionSink;
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::{
    RestoreOutcome, ServerSseMessage, SessionId, SessionState, SessionStore, SessionStoreError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::store::sessions::{SessionRecords, StoreError};

tokio::task_local! {
    /// The subject of the `/mcp` request rmcp is handling; set by the HTTP bridge.
    static REQUEST_SUBJECT: Arc<str>;
}

/// Runs `f` (rmcp handling one `/mcp` request) as `subject`: session lookups, restores and new
/// sessions inside it are checked against and bound to this user.
pub async fn as_subject<F: Future>(subject: &str, f: F) -> F::Output {
    REQUEST_SUBJECT.scope(Arc::from(subject), f).await
}

fn current_subject() -> Option<Arc<str>> {
    REQUEST_SUBJECT.try_with(Arc::clone).ok()
}

/// A message on the cluster channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum ClusterMessage {
    /// The session was deleted: holders drop its worker and end its streams.
    Close { session: String },
    /// A JSON-RPC notification for every live session and listen stream of `user`, or for one
    /// `session`.
    Notify {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        message: serde_json::Value,
    },
}

/// What a session id means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Live, and the caller's.
    Owned,
    /// Unknown, expired, deleted, or another user's: all answered 404.
    NotFound,
}

struct GetStream {
    owner: Arc<str>,
    tx: mpsc::Sender<ServerSseMessage>,
}

struct Listener {
    owner: Arc<str>,
    sink: SubscriptionSink,
}

/// How long a confirmed (session, owner) pair is trusted without asking the store again, at
/// most (a quarter of the idle timeout when that is shorter): within it a request of the
/// session neither reads the record nor refreshes its expiry. Deletions reach the cache through the
/// cluster channel at once; this bounds only a missed message. Documented in
/// `docs/mcp-service.md`.
pub const SESSION_RECHECK: Duration = Duration::from_secs(1);

/// A local worker unused on this replica this long (and without a GET stream here) is dropped,
/// at most (the idle timeout if shorter); its session lives on in its record and is restored by its
/// next request. rmcp's own limit of the same length is off (see `local_sessions`).
pub const LOCAL_IDLE: Duration = Duration::from_secs(300);

/// How often, at most, the dispatcher sweeps local workers and refreshes streamed sessions.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Entries beyond which the owner cache is swept of stale pairs on insert.
const OWNER_CACHE_SWEEP_AT: usize = 50_000;

struct CachedOwner {
    owner: Arc<str>,
    checked: Instant,
}

struct HubInner {
    records: Arc<dyn SessionRecords>,
    bus: Arc<dyn EventBus>,
    prefix: String,
    idle: Duration,
    recheck: Duration,
    local: LocalSessionManager,
    /// Sessions recently confirmed live in the store, with their owner (see [`SESSION_RECHECK`]).
    owners: Mutex<HashMap<SessionId, CachedOwner>>,
    /// When each session was last used on this replica (either path), for [`LOCAL_IDLE`].
    last_use: Mutex<HashMap<SessionId, Instant>>,
    get_streams: Mutex<HashMap<SessionId, GetStream>>,
    listeners: Mutex<HashMap<u64, Listener>>,
    next_id: AtomicU64,
}

/// The replica's view of MCP sessions and its door to the cluster-wide notification channel.
/// Cheap to clone.
#[derive(Clone)]
pub struct SessionHub {
    inner: Arc<HubInner>,
}

/// Session store, event bus or serialisation failure.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// rmcp's in-process session registry, without rmcp's own idle limit: a local worker lives as
/// long as the session's record (see [`SessionHub::run`]). rmcp's limit counts only the
/// messages that pass through the worker, and most `tools/call`s do not (`crate::direct`).
fn local_sessions() -> LocalSessionManager {
    let mut local = LocalSessionManager::default();
    local.session_config.keep_alive = None;
    local
}

impl SessionHub {
    /// Sessions recorded in `records`, cluster messages on `bus`; `prefix` is
    /// `redis.key_prefix` (it names the cluster channel); `idle` is how long an unused session
    /// lives.
    pub fn new(
        records: Arc<dyn SessionRecords>,
        bus: Arc<dyn EventBus>,
        prefix: &str,
        idle: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(HubInner {
                records,
                bus,
                prefix: prefix.to_owned(),
                idle: idle.max(Duration::from_secs(1)),
                recheck: SESSION_RECHECK.min(idle.max(Duration::from_secs(1)) / 4),
                local: local_sessions(),
                owners: Mutex::default(),
                last_use: Mutex::default(),
                get_streams: Mutex::default(),
                listeners: Mutex::default(),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// The cluster channel.
    pub fn channel(&self) -> String {
        format!("{}:sessions", self.inner.prefix)
    }

    /// Sends `notifications/tools/list_changed` to every live session of `subject` (the user id,
    /// i.e. the `sub` of their access tokens), on whichever replica holds it: the GET event
    /// stream of each 2025-06-18 / 2025-11-25 session, and each 2026-07-28
    /// `subscriptions/listen` stream that asked for tool-list changes.
    ///
    /// Fire and forget: it publishes on the cluster channel from a spawned task and
    /// returns at once; it must be called inside the tokio runtime. Sessions without an open
    /// stream miss it (clients re-list tools when they reconnect). Failures are logged.
    pub fn notify_tools_changed(&self, subject: &str) {
        let msg = ClusterMessage::Notify {
            user: Some(subject.to_owned()),
            session: None,
            message: serde_json::json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
        };
        let hub = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = hub.publish(&msg).await {
                        tracing::warn!(error = %e, "cannot publish a tools/list_changed notification");
                    }
                });
            }
            Err(_) => tracing::error!("notify_tools_changed called outside the tokio runtime"),
        }
    }

    /// Publishes `msg` on the cluster channel (every replica, this one included, delivers it).
    pub async fn publish(&self, msg: &ClusterMessage) -> Result<(), HubError> {
        let payload = serde_json::to_string(msg)?;
        self.inner.bus.publish(&self.channel(), &payload).await?;
        Ok(())
    }

    /// Whether `session` is live and belongs to `subject`; refreshes its idle timer. A session
    /// that is gone from the store is dropped from this replica too.
    pub async fn ownership(&self, session: &str, subject: &str) -> Result<Ownership, HubError> {
        match self.inner.records.owner(session, self.inner.idle).await? {
            Some(o) if o == subject => Ok(Ownership::Owned),
            Some(_) => Ok(Ownership::NotFound),
            None => {
                self.close_local(session).await;
                Ok(Ownership::NotFound)
            }
        }
    }

    /// Like [`Self::ownership`], but a pair confirmed in the store less than [`SESSION_RECHECK`] ago
    /// (a quarter of the idle timeout if shorter) is answered from memory, without reading or
    /// refreshing the record. The record's expiry was refreshed when the pair was confirmed, so
    /// a cached pair cannot have expired; a deletion anywhere in the cluster evicts it through
    /// the cluster channel. Another user's id is never answered from the cache with `Owned`.
    pub async fn ownership_cached(
        &self,
        session: &SessionId,
        subject: &str,
    ) -> Result<Ownership, HubError> {
        let cached = {
            let owners = self.inner.owners.lock().expect("owners");
            owners.get(session).and_then(|c| {
                (c.checked.elapsed() < self.inner.recheck).then(|| Arc::clone(&c.owner))
            })
        };
        match cached {
            Some(owner) if &*owner == subject => {
                self.used(session);
                return Ok(Ownership::Owned);
            }
            Some(_) => return Ok(Ownership::NotFound),
            None => {}
        }
        let checked = Instant::now();
        let found = self.ownership(session, subject).await?;
        if found == Ownership::Owned {
            self.used(session);
            let mut owners = self.inner.owners.lock().expect("owners");
            if owners.len() >= OWNER_CACHE_SWEEP_AT {
                let recheck = self.inner.recheck;
                owners.retain(|_, c| c.checked.elapsed() < recheck);
            }
            owners.insert(
                session.clone(),
                CachedOwner {
                    owner: Arc::from(subject),
                    checked,
                },
            );
        }
        Ok(found)
    }

    /// Forgets every cached (session, owner) pair (after cluster messages may have been missed).
    fn forget_owners(&self) {
        self.inner.owners.lock().expect("owners").clear();
    }

    /// Forgets the cached owner of `session`.
    fn forget_owner(&self, session: &str) {
        self.inner.owners.lock().expect("owners").remove(session);
    }

    /// Ends this replica's worker and GET stream of `session` (not its record).
    pub async fn close_local(&self, session: &str) {
        self.forget_owner(session);
        self.inner
            .last_use
            .lock()
            .expect("last use")
            .remove(session);
        let id: SessionId = Arc::from(session);
        self.inner
            .get_streams
            .lock()
            .expect("get streams")
            .remove(&id);
        if let Err(e) = self.inner.local.close_session(&id).await {
            tracing::debug!(error = %e, "closing a local session");
        }
    }

    /// How many sessions this replica holds a worker for (for tests and metrics).
    pub async fn local_sessions(&self) -> usize {
        self.inner.local.sessions.read().await.len()
    }

    /// How many (session, owner) pairs are cached (see [`SESSION_RECHECK`]; for tests).
    pub fn cached_owners(&self) -> usize {
        self.inner.owners.lock().expect("owners").len()
    }

    /// Delivers a cluster message to the streams this replica holds.
    pub async fn deliver(&self, msg: ClusterMessage) {
        match msg {
            ClusterMessage::Close { session } => self.close_local(&session).await,
            ClusterMessage::Notify {
                user,
                session,
                message,
            } => {
                let Ok(parsed) = serde_json::from_value::<ServerJsonRpcMessage>(message) else {
                    tracing::warn!("cluster notification is not a server JSON-RPC message");
                    return;
                };
                let matches = |id: &str, owner: &str| {
                    user.as_deref().is_some_and(|u| u == owner)
                        || session.as_deref().is_some_and(|s| s == id)
                };
                let targets: Vec<(SessionId, mpsc::Sender<ServerSseMessage>)> = self
                    .inner
                    .get_streams
                    .lock()
                    .expect("get streams")
                    .iter()
                    .filter(|(id, g)| matches(id, &g.owner))
                    .map(|(id, g)| (id.clone(), g.tx.clone()))
                    .collect();
                for (id, tx) in targets {
                    match tx.try_send(ServerSseMessage::from_message(parsed.clone())) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tracing::warn!(session = %id, "GET stream is not reading: notification dropped");
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            let mut streams = self.inner.get_streams.lock().expect("get streams");
                            if streams.get(&id).is_some_and(|g| g.tx.is_closed()) {
                                streams.remove(&id);
                            }
                        }
                    }
                }
                // 2026-07-28 listen streams are per user (there is no session).
                if let (Some(user), ServerJsonRpcMessage::Notification(n)) = (&user, &parsed) {
                    let sinks: Vec<SubscriptionSink> = self
                        .inner
                        .listeners
                        .lock()
                        .expect("listeners")
                        .values()
                        .filter(|l| &*l.owner == user.as_str())
                        .map(|l| l.sink.clone())
                        .collect();
                    for sink in sinks {
                        let notification = n.notification.clone();
                        tokio::spawn(async move {
                            if let Err(e) = sink.send(notification).await {
                                tracing::debug!(error = %e, "listen stream did not take a notification");
                            }
                        });
                    }
                }
            }
        }
    }

    /// Registers a 2026-07-28 `subscriptions/listen` stream of `owner`; dropping the guard
    /// unregisters it.
    pub fn register_listener(&self, owner: &str, sink: SubscriptionSink) -> ListenerGuard {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner.listeners.lock().expect("listeners").insert(
            id,
            Listener {
                owner: Arc::from(owner),
                sink,
            },
        );
        ListenerGuard {
            hub: self.clone(),
            id,
        }
    }

    /// Follows the cluster channel until `cancel`: delivers messages, and every third of the idle
    /// timeout keeps the sessions whose GET streams this replica holds alive in the store and
    /// drops the local workers of sessions gone from it (expiry ends their streams even if a
    /// message was missed; rmcp's own idle limit is off, see `local_sessions`).
    pub async fn run(self, cancel: CancellationToken) {
        let refresh_every = (self.inner.idle / 3)
            .min(SWEEP_EVERY)
            .max(Duration::from_millis(500));
        let sweeper = {
            let hub = self.clone();
            async move {
                let mut refresh = tokio::time::interval(refresh_every);
                refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    refresh.tick().await;
                    hub.sweep().await;
                }
            }
        };
        let channel = self.channel();
        let follower = mcpauth_runtime::bus::follow(
            &*self.inner.bus,
            &channel,
            "session channel",
            cancel.cancelled(),
            |event| {
                let hub = self.clone();
                async move {
                    match event {
                        // Close messages may have been missed while unsubscribed.
                        ChannelEvent::Subscribed | ChannelEvent::Lost => hub.forget_owners(),
                        ChannelEvent::Message(payload) => {
                            match serde_json::from_str::<ClusterMessage>(&payload) {
                                Ok(m) => hub.deliver(m).await,
                                Err(e) => {
                                    tracing::warn!(error = %e, "unreadable session channel message")
                                }
                            }
                        }
                    }
                }
            },
        );
        tokio::select! {
            () = follower => {}
            () = sweeper => {}
        }
    }

    fn used(&self, session: &SessionId) {
        self.inner
            .last_use
            .lock()
            .expect("last use")
            .insert(session.clone(), Instant::now());
    }

    /// Refreshes the records of the sessions this replica streams to, drops the local
    /// workers unused here for [`LOCAL_IDLE`] (without a GET stream here), and closes every
    /// local session whose entry is gone.
    async fn sweep(&self) {
        {
            let recheck = self.inner.recheck;
            let mut owners = self.inner.owners.lock().expect("owners");
            owners.retain(|_, c| c.checked.elapsed() < recheck);
        }
        let streamed: std::collections::HashSet<SessionId> = {
            let mut streams = self.inner.get_streams.lock().expect("get streams");
            streams.retain(|_, g| !g.tx.is_closed());
            streams.keys().cloned().collect()
        };
        let mut ids: std::collections::HashSet<SessionId> = self
            .inner
            .local
            .sessions
            .read()
            .await
            .keys()
            .cloned()
            .collect();
        ids.extend(streamed.iter().cloned());
        let local_idle = LOCAL_IDLE.min(self.inner.idle);
        let idle: Vec<SessionId> = {
            let mut last_use = self.inner.last_use.lock().expect("last use");
            let now = Instant::now();
            // A worker seen for the first time (just initialized) counts as used now.
            let idle = ids
                .iter()
                .filter(|id| !streamed.contains(*id))
                .filter(|id| {
                    now.duration_since(*last_use.entry((*id).clone()).or_insert(now)) >= local_idle
                })
                .cloned()
                .collect();
            last_use.retain(|id, _| ids.contains(id));
            idle
        };
        for id in &idle {
            ids.remove(id);
            self.close_local(id).await;
        }
        let ids: Vec<SessionId> = ids.into_iter().collect();
        // Bounded batches (pipelines in Redis): a replica may hold many sessions.
        for chunk in ids.chunks(1_000) {
            let batch: Vec<(&str, bool)> = chunk
                .iter()
                .map(|id| (&**id, streamed.contains(id)))
                .collect();
            let Ok(alive) = self.inner.records.alive(&batch, self.inner.idle).await else {
                return;
            };
            for (id, alive) in chunk.iter().zip(alive) {
                if !alive {
                    self.close_local(id).await;
                }
            }
        }
    }

    /// The cluster side of the GET stream of session `id` of `owner`: the notifications for it
    /// published on the cluster channel. It ends when the session is closed anywhere in the
    /// cluster (or expires), or a newer GET stream of the session replaces it.
    pub fn side_channel(&self, id: SessionId, owner: Arc<str>) -> mpsc::Receiver<ServerSseMessage> {
        let (tx, rx) = mpsc::channel(64);
        self.inner
            .get_streams
            .lock()
            .expect("get streams")
            .insert(id, GetStream { owner, tx });
        rx
    }
}

/// Unregisters a listen stream when dropped.
pub struct ListenerGuard {
    hub: SessionHub,
    id: u64,
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        if let Ok(mut l) = self.hub.inner.listeners.lock() {
            l.remove(&self.id);
        }
    }
}

/// rmcp's `SessionStore` on the session records: what a replica needs to re-create a session it
/// never saw. `load` answers only for the session's owner, so another user's id is "not found".
#[derive(Clone)]
pub struct RecordedSessions {
    hub: SessionHub,
}

impl RecordedSessions {
    pub fn new(hub: SessionHub) -> Self {
        Self { hub }
    }
}

type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SessionStoreError>> + Send + 'a>>;

impl SessionStore for RecordedSessions {
    fn load<'life0, 'life1, 'async_trait>(
        &'life0 self,
        session_id: &'life1 str,
    ) -> StoreFuture<'async_trait, Option<SessionState>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let Some(subject) = current_subject() else {
                return Ok(None);
            };
            let hub = &self.hub.inner;
            match hub.records.load(session_id, &subject, hub.idle).await? {
                Some(state) => Ok(Some(serde_json::from_str(&state)?)),
                None => Ok(None),
            }
        })
    }

    fn store<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        session_id: &'life1 str,
        state: &'life2 SessionState,
    ) -> StoreFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            // Without a caller the session would belong to nobody: refuse (it then 404s).
            let subject = current_subject().ok_or("a session created outside a /mcp request")?;
            let json = serde_json::to_string(state)?;
            let hub = &self.hub.inner;
            hub.records
                .create(session_id, &subject, &json, hub.idle)
                .await?;
            Ok(())
        })
    }

    fn delete<'life0, 'life1, 'async_trait>(
        &'life0 self,
        session_id: &'life1 str,
    ) -> StoreFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.hub.inner.records.delete(session_id).await?;
            self.hub
                .publish(&ClusterMessage::Close {
                    session: session_id.to_owned(),
                })
                .await?;
            Ok(())
        })
    }
}

/// rmcp's in-process `LocalSessionManager` with the cluster hooks:
/// - `has_session` first asks the session records whether the session is live and the caller's; if it is gone
///   the local worker is dropped, so rmcp answers 404 (DELETE and expiry are cluster-wide);
/// - the GET stream also carries notifications published on the cluster channel;
/// - closing a session ends that side channel too.
#[derive(Clone)]
pub struct ClusterSessionManager {
    hub: SessionHub,
}

impl ClusterSessionManager {
    pub fn new(hub: SessionHub) -> Self {
        Self { hub }
    }

    fn local(&self) -> &LocalSessionManager {
        &self.hub.inner.local
    }
}

impl SessionManager for ClusterSessionManager {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    fn create_session(
        &self,
    ) -> impl Future<Output = Result<(SessionId, Self::Transport), Self::Error>> + Send {
        self.local().create_session()
    }

    fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<ServerJsonRpcMessage, Self::Error>> + Send {
        self.local().initialize_session(id, message)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        let Some(subject) = current_subject() else {
            return Ok(false);
        };
        match self.hub.ownership_cached(id, &subject).await {
            Ok(Ownership::Owned) => self.local().has_session(id).await,
            Ok(Ownership::NotFound) => Ok(false),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a session record");
                Err(LocalSessionManagerError::SessionNotFound(id.clone()))
            }
        }
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.hub.forget_owner(id);
        self.hub
            .inner
            .get_streams
            .lock()
            .expect("get streams")
            .remove(id);
        self.local().close_session(id).await
    }

    fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> impl Future<
        Output = Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error>,
    > + Send {
        self.local().create_stream(id, message)
    }

    fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.local().accept_message(id, message)
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let own = self.local().create_standalone_stream(id).await?;
        let owner = current_subject().unwrap_or_else(|| Arc::from(""));
        let rx = self.hub.side_channel(id.clone(), owner);
        // Ends when either side ends: the worker closed its stream (session closed or a newer
        // GET replaced it), or the side channel was dropped (session closed cluster-wide).
        let own = own.map(Some).chain(stream::iter([None]));
        let cluster = ReceiverStream::new(rx)
            .map(Some)
            .chain(stream::iter([None]));
        Ok(stream::select(own, cluster).scan((), |(), m| std::future::ready(m)))
    }

    fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> impl Future<
        Output = Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error>,
    > + Send {
        self.local().resume(id, last_event_id)
    }

    fn restore_session(
        &self,
        id: SessionId,
    ) -> impl Future<Output = Result<RestoreOutcome<Self::Transport>, Self::Error>> + Send {
        self.local().restore_session(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_messages_round_trip() {
        let m = ClusterMessage::Notify {
            user: Some("alice".into()),
            session: None,
            message: serde_json::json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
        };
        let s = serde_json::to_string(&m).unwrap();
        assert!(s.starts_with("{\"notify\":"), "{s}");
        assert!(!s.contains("session"), "{s}");
        assert_eq!(serde_json::from_str::<ClusterMessage>(&s).unwrap(), m);
        let c: ClusterMessage = serde_json::from_str(r#"{"close":{"session":"x"}}"#).unwrap();
        assert_eq!(
            c,
            ClusterMessage::Close {
                session: "x".into()
            }
        );
    }

    #[test]
    fn the_tools_changed_message_parses_as_a_server_notification() {
        let v = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        let m: ServerJsonRpcMessage = serde_json::from_value(v).unwrap();
        assert!(matches!(m, ServerJsonRpcMessage::Notification(_)));
    }
}
