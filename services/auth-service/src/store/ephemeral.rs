//! Short-lived state in Redis: pending authorization requests, authorization codes, browser
//! sessions, rate-limit windows, and the event channel replicas use to tell each other about
//! revocations and client changes. Keys are namespaced with the configured prefix; codes and
//! sessions are keyed by the SHA-256 of their value, never the value itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_redis::Pool;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::domain::token::hex;
use crate::error::StoreError;
use crate::store::revocations::Revocation;

/// An `/authorize` request waiting for login and consent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub client_id: String,
    pub redirect_uri: String,
    /// Whether the request named `redirect_uri` (then the token request must repeat it).
    pub redirect_uri_given: bool,
    pub state: Option<String>,
    pub code_challenge: String,
    pub scope: String,
    pub resource: String,
    /// CSRF token embedded in the login and consent forms.
    pub csrf: String,
    /// SHA-256 (hex) of the browser-binding cookie set at `/authorize`.
    pub browser_sha256: String,
    /// Set once the user has logged in.
    pub user_id: Option<Uuid>,
    /// When `user_id` was established (Unix seconds): a user revoked at or after it (`admin
    /// revoke-user`) gets no code from this request, even from a consent page already open.
    #[serde(default)]
    pub authenticated_at: Option<i64>,
    /// `prompt=consent`: ask again even if the user already approved this client.
    #[serde(default)]
    pub force_consent: bool,
}

/// What an upstream authorization (a redirect to a provider) is for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamPurpose {
    /// Logging a user in for an `/authorize` request the user already consented to.
    Login { pending: Box<PendingAuthorization> },
    /// Logging a user in to open a connect link (`ticket` is the link's secret part).
    ConnectLogin { ticket: String },
    /// Connecting `provider` for an already identified user.
    Connect {
        user_id: Uuid,
        /// When the connect link was issued (Unix seconds): a user revoked or disabled at or
        /// after it gets nothing stored by this flow. `None` (stored by an earlier version)
        /// counts as older than any revocation.
        #[serde(default)]
        ticket_created_at: Option<i64>,
    },
}

/// The server side of an upstream `state`: stored (by the state's SHA-256) only after consent,
/// immediately before the redirect; taken exactly once at the callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpstreamAuthState {
    pub provider: String,
    pub purpose: UpstreamPurpose,
    /// PKCE verifier of this upstream request.
    pub code_verifier: String,
    /// OIDC `nonce` sent upstream; the ID token must carry it back.
    pub nonce: String,
    /// SHA-256 (hex) of the `__Host-` cookie set on the browser with the redirect.
    pub browser_sha256: String,
}

/// A connect link issued by `UpstreamConnect.StartConnect` (stored by the ticket's SHA-256).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectTicket {
    pub user_id: Uuid,
    pub provider: String,
    /// CSRF token of the login and confirmation forms.
    pub csrf: String,
    /// SHA-256 (hex) of the browser-binding cookie of the first browser that opened the link.
    pub browser_sha256: Option<String>,
    pub expires_at: i64,
    /// When `StartConnect` issued it (Unix seconds); `None` when stored by an earlier version.
    #[serde(default)]
    pub created_at: Option<i64>,
}

/// What an authorization code is bound to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeRecord {
    pub client_id: String,
    pub redirect_uri: String,
    pub redirect_uri_given: bool,
    pub code_challenge: String,
    pub scope: String,
    pub resource: String,
    pub user_id: Uuid,
    /// Unix seconds; a code issued at or before a revocation of its user is refused.
    #[serde(default)]
    pub issued_at: i64,
}

/// Result of redeeming a code.
#[derive(Debug)]
pub enum CodeRedemption {
    /// First use.
    Fresh(CodeRecord),
    /// The code was already redeemed; this is the grant it produced (to revoke).
    Replayed(Option<Uuid>),
    /// Unknown or expired.
    Unknown,
}

/// Events that replicas fan out to each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaEvent {
    Revoked(Revocation),
    ClientChanged(String),
    /// An earlier event could not be published: whoever caches what events invalidate (the
    /// verification caches of mcp-service and token-vault) forgets everything.
    Resync,
}

/// Redis access.
#[derive(Clone)]
pub struct Ephemeral {
    pool: Pool,
    prefix: String,
    /// An event was lost (its publish failed) and no `Resync` has been published since.
    resync_owed: Arc<AtomicBool>,
}

/// How long a redeemed code is remembered, to catch replays after its TTL-bound first use.
const USED_CODE_TTL_SECS: u64 = 600;

impl Ephemeral {
    pub fn new(pool: Pool, prefix: &str) -> Self {
        Self {
            pool,
            prefix: prefix.to_owned(),
            resync_owed: Arc::default(),
        }
    }

    /// The connection pool (for its gauges).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}:{kind}:{id}", self.prefix)
    }

    /// The pub/sub channel of replica events.
    pub fn events_channel(&self) -> String {
        format!("{}:events", self.prefix)
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, StoreError> {
        Ok(self.pool.get().await?)
    }

    async fn put_json<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl: u64,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut c = self.conn().await?;
        let _: () = c.set_ex(key, body, ttl).await?;
        Ok(())
    }

    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let mut c = self.conn().await?;
        let raw: Option<String> = c.get(key).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    // --- pending authorizations -------------------------------------------------------------

    pub async fn put_pending(
        &self,
        id: &str,
        p: &PendingAuthorization,
        ttl: u64,
    ) -> Result<(), StoreError> {
        self.put_json(&self.key("authz", id), p, ttl).await
    }

    pub async fn get_pending(&self, id: &str) -> Result<Option<PendingAuthorization>, StoreError> {
        self.get_json(&self.key("authz", id)).await
    }

    /// Removes and returns a pending request (single use at the end of the flow).
    pub async fn take_pending(&self, id: &str) -> Result<Option<PendingAuthorization>, StoreError> {
        let mut c = self.conn().await?;
        let raw: Option<String> = c.get_del(self.key("authz", id)).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    // --- upstream authorizations and connect links -------------------------------------------

    pub async fn put_upstream_state(
        &self,
        state_sha256: &[u8],
        s: &UpstreamAuthState,
        ttl: u64,
    ) -> Result<(), StoreError> {
        self.put_json(&self.key("upstate", &hex(state_sha256)), s, ttl)
            .await
    }

    /// Takes an upstream state (GETDEL): a state is honoured once, replays find nothing.
    pub async fn take_upstream_state(
        &self,
        state_sha256: &[u8],
    ) -> Result<Option<UpstreamAuthState>, StoreError> {
        let mut c = self.conn().await?;
        let raw: Option<String> = c.get_del(self.key("upstate", &hex(state_sha256))).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    pub async fn put_connect_ticket(
        &self,
        ticket_sha256: &[u8],
        t: &ConnectTicket,
        ttl: u64,
    ) -> Result<(), StoreError> {
        self.put_json(&self.key("connect", &hex(ticket_sha256)), t, ttl)
            .await
    }

    pub async fn get_connect_ticket(
        &self,
        ticket_sha256: &[u8],
    ) -> Result<Option<ConnectTicket>, StoreError> {
        self.get_json(&self.key("connect", &hex(ticket_sha256)))
            .await
    }

    /// Binds a ticket to the first browser that opens it: succeeds only if no browser was bound
    /// yet (a compare-and-set in one Lua script, so two browsers cannot both win).
    pub async fn bind_connect_ticket(
        &self,
        ticket_sha256: &[u8],
        browser_sha256: &str,
    ) -> Result<bool, StoreError> {
        let script = redis::Script::new(
            r"local raw = redis.call('GET', KEYS[1])
              if not raw then return 0 end
              local t = cjson.decode(raw)
              if t.browser_sha256 ~= nil and t.browser_sha256 ~= cjson.null then
                return (t.browser_sha256 == ARGV[1]) and 1 or 0
              end
              t.browser_sha256 = ARGV[1]
              redis.call('SET', KEYS[1], cjson.encode(t), 'KEEPTTL')
              return 1",
        );
        let mut c = self.conn().await?;
        let n: i64 = script
            .key(self.key("connect", &hex(ticket_sha256)))
            .arg(browser_sha256)
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    /// Takes a ticket (GETDEL): a connect link starts one upstream authorization at most.
    pub async fn take_connect_ticket(
        &self,
        ticket_sha256: &[u8],
    ) -> Result<Option<ConnectTicket>, StoreError> {
        let mut c = self.conn().await?;
        let raw: Option<String> = c.get_del(self.key("connect", &hex(ticket_sha256))).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    // --- authorization codes ------------------------------------------------------------------

    pub async fn put_code(
        &self,
        code_sha256: &[u8],
        rec: &CodeRecord,
        ttl: u64,
    ) -> Result<(), StoreError> {
        self.put_json(&self.key("code", &hex(code_sha256)), rec, ttl)
            .await
    }

    /// Atomically takes a code (GETDEL), so that two concurrent redemptions cannot both win.
    pub async fn redeem_code(&self, code_sha256: &[u8]) -> Result<CodeRedemption, StoreError> {
        let h = hex(code_sha256);
        let mut c = self.conn().await?;
        let raw: Option<String> = c.get_del(self.key("code", &h)).await?;
        if let Some(raw) = raw {
            let rec = serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            // Mark as used before anything is issued, so a racing replay sees it.
            let _: () = c
                .set_ex(self.key("code_used", &h), "", USED_CODE_TTL_SECS)
                .await?;
            return Ok(CodeRedemption::Fresh(rec));
        }
        let used_key = self.key("code_used", &h);
        let used: Option<String> = c.get(&used_key).await?;
        match used.as_deref() {
            None => Ok(CodeRedemption::Unknown),
            Some("") => {
                // The first redemption has not recorded its grant yet. Flag the replay, then look
                // again: either we now see the grant, or the first redemption sees the flag.
                let _: () = c
                    .set_ex(self.key("code_replayed", &h), "1", USED_CODE_TTL_SECS)
                    .await?;
                let again: Option<String> = c.get(&used_key).await?;
                Ok(CodeRedemption::Replayed(
                    again.and_then(|g| Uuid::parse_str(&g).ok()),
                ))
            }
            Some(g) => Ok(CodeRedemption::Replayed(Uuid::parse_str(g).ok())),
        }
    }

    /// Remembers which grant a redeemed code produced (revoked if the code is replayed).
    /// Returns true when a replay was seen meanwhile: the caller must then revoke the grant.
    pub async fn bind_code_grant(
        &self,
        code_sha256: &[u8],
        grant_id: Uuid,
    ) -> Result<bool, StoreError> {
        let h = hex(code_sha256);
        let mut c = self.conn().await?;
        let _: () = c
            .set_ex(
                self.key("code_used", &h),
                grant_id.to_string(),
                USED_CODE_TTL_SECS,
            )
            .await?;
        let replayed: Option<String> = c.get(self.key("code_replayed", &h)).await?;
        Ok(replayed.is_some())
    }

    // --- browser sessions ---------------------------------------------------------------------

    pub async fn put_session(
        &self,
        session_sha256: &[u8],
        user_id: Uuid,
        ttl: u64,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let id = hex(session_sha256);
        // The user's set of sessions lets `admin revoke-user` end them all; it lives as long as
        // the newest session.
        let index = self.key("user_sessions", &user_id.to_string());
        let _: () = redis::pipe()
            .atomic()
            .set_ex(self.key("session", &id), user_id.to_string(), ttl)
            .sadd(&index, &id)
            .expire(&index, ttl as i64)
            .query_async(&mut *c)
            .await?;
        Ok(())
    }

    /// Ends one browser session (logout).
    pub async fn delete_session(&self, session_sha256: &[u8]) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let n: u64 = c.del(self.key("session", &hex(session_sha256))).await?;
        Ok(n > 0)
    }

    /// Ends every browser session of a user; returns how many were live.
    pub async fn delete_user_sessions(&self, user_id: Uuid) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        let index = self.key("user_sessions", &user_id.to_string());
        // One script: a session stored meanwhile is either in the set read here or in a new set.
        let n: u64 = redis::Script::new(
            "local ids = redis.call('SMEMBERS', KEYS[1]) \
             redis.call('DEL', KEYS[1]) \
             local n = 0 \
             for _, id in ipairs(ids) do n = n + redis.call('DEL', ARGV[1] .. id) end \
             return n",
        )
        .key(&index)
        .arg(self.key("session", ""))
        .invoke_async(&mut *c)
        .await?;
        Ok(n)
    }

    pub async fn get_session(&self, session_sha256: &[u8]) -> Result<Option<Uuid>, StoreError> {
        let mut c = self.conn().await?;
        let raw: Option<String> = c.get(self.key("session", &hex(session_sha256))).await?;
        Ok(raw.and_then(|r| Uuid::parse_str(&r).ok()))
    }

    // --- rate limits --------------------------------------------------------------------------

    /// Counts one request in the fixed window `window` of `bucket`/`subject`; returns the count
    /// so far in that window (shared by every replica).
    pub async fn count_request(
        &self,
        bucket: &str,
        subject: &str,
        window: u64,
        window_secs: u64,
    ) -> Result<u64, StoreError> {
        let key = format!("{}:rl:{bucket}:{subject}:{window}", self.prefix);
        let mut c = self.conn().await?;
        let (n,): (u64,) = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .expire(&key, window_secs as i64 + 1)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(n)
    }

    /// Takes one request back from a rate-limit window ([`Ephemeral::count_request`]).
    pub async fn uncount_request(
        &self,
        bucket: &str,
        subject: &str,
        window: u64,
        window_secs: u64,
    ) -> Result<(), StoreError> {
        let key = format!("{}:rl:{bucket}:{subject}:{window}", self.prefix);
        let mut c = self.conn().await?;
        let _: () = redis::pipe()
            .atomic()
            .decr(&key, 1)
            .ignore()
            .expire(&key, window_secs as i64 + 1)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// The shared count of a rate-limit window (0 when nothing was counted yet).
    pub async fn requests_counted(
        &self,
        bucket: &str,
        subject: &str,
        window: u64,
    ) -> Result<u64, StoreError> {
        let key = format!("{}:rl:{bucket}:{subject}:{window}", self.prefix);
        let mut c = self.conn().await?;
        let n: Option<u64> = c.get(&key).await?;
        Ok(n.unwrap_or(0))
    }

    /// Adds batches of requests `(bucket, subject, window, count)` counted by one replica;
    /// returns each window's total across all replicas.
    pub async fn add_requests(
        &self,
        items: &[(&str, &str, u64, u64)],
        window_secs: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let mut pipe = redis::pipe();
        for (bucket, subject, window, n) in items {
            let key = format!("{}:rl:{bucket}:{subject}:{window}", self.prefix);
            pipe.incr(&key, *n)
                .expire(&key, window_secs as i64 + 1)
                .ignore();
        }
        let mut c = self.conn().await?;
        Ok(pipe.query_async(&mut c).await?)
    }

    // --- replica events -----------------------------------------------------------------------

    /// Publishes `event` to every replica. When that fails a `Resync` is owed, published by
    /// [`Self::publish_owed_resync`] (the revocation re-sync loop calls it every tick).
    pub async fn publish(&self, event: &ReplicaEvent) -> Result<(), StoreError> {
        let sent = self.publish_now(event).await;
        if sent.is_err() {
            self.resync_owed.store(true, Ordering::Release);
        }
        sent
    }

    async fn publish_now(&self, event: &ReplicaEvent) -> Result<(), StoreError> {
        let body = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut c = self.conn().await?;
        let _: i64 = c.publish(self.events_channel(), body).await?;
        Ok(())
    }

    /// Publishes the `Resync` owed since a failed publish, if any; it stays owed until sent.
    pub async fn publish_owed_resync(&self) -> Result<(), StoreError> {
        if !self.resync_owed.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let sent = self.publish_now(&ReplicaEvent::Resync).await;
        if sent.is_err() {
            self.resync_owed.store(true, Ordering::Release);
        } else {
            tracing::info!("replica events were lost; resync published");
        }
        sent
    }

    /// Whether a `Resync` is owed.
    pub fn resync_owed(&self) -> bool {
        self.resync_owed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn ephemeral(url: &str) -> Ephemeral {
        let client = redis::Client::open(url).unwrap();
        let pool = mcpauth_runtime::redis_pool("redis", &client, 2).unwrap();
        Ephemeral::new(pool, &format!("eph-test-{}", uuid::Uuid::new_v4().simple()))
    }

    fn redis_url() -> String {
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    #[tokio::test]
    async fn a_failed_publish_owes_a_resync() {
        // Nothing listens on port 1.
        let e = ephemeral("redis://127.0.0.1:1");
        assert!(!e.resync_owed());
        let r = e.publish(&ReplicaEvent::ClientChanged("c".into())).await;
        assert!(r.is_err());
        assert!(e.resync_owed());
        // Still unreachable: still owed.
        assert!(e.publish_owed_resync().await.is_err());
        assert!(e.resync_owed());
    }

    #[tokio::test]
    async fn an_owed_resync_is_published_once() {
        let e = ephemeral(&redis_url());
        let client = redis::Client::open(redis_url()).unwrap();
        let mut sub = client.get_async_pubsub().await.unwrap();
        sub.subscribe(e.events_channel()).await.unwrap();
        // Nothing owed: nothing published.
        e.publish_owed_resync().await.unwrap();
        e.resync_owed.store(true, Ordering::Release);
        e.publish_owed_resync().await.unwrap();
        assert!(!e.resync_owed());
        e.publish(&ReplicaEvent::ClientChanged("marker".into()))
            .await
            .unwrap();
        let mut messages = sub.on_message();
        let mut got = Vec::new();
        for _ in 0..2 {
            let m = tokio::time::timeout(std::time::Duration::from_secs(5), messages.next())
                .await
                .unwrap()
                .unwrap();
            got.push(m.get_payload::<String>().unwrap());
        }
        assert_eq!(got, [r#""resync""#, r#"{"client_changed":"marker"}"#]);
    }
}
