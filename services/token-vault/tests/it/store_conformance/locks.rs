//! `RefreshLocks`: one holder at a time, leases that expire when the holder dies and are renewed
//! while it lives; and the refresh built on them: one upstream refresh for 50 callers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use token_vault::audit::AuditLog;
use token_vault::cache::{CredentialCache, Invalidations};
use token_vault::changes::Changes;
use token_vault::config::{ProviderConfig, RefreshConfig};
use token_vault::credential::ProviderTokens;
use token_vault::events::ConnectionEvents;
use token_vault::refresh::{Refresher, SystemClock, TokenEndpoint};
use token_vault::upstream::UpstreamError;

use super::Backend;
use super::credentials::{insert, ring, tokens};

pub async fn one_holder_among_50_concurrent_acquirers(b: &Backend) {
    let replica = b.replica().await;
    let lease = Duration::from_secs(30);
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let locks = if i % 2 == 0 {
                b.stores.locks.clone()
            } else {
                replica.locks.clone()
            };
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                locks.try_acquire("alice", "github", lease).await.unwrap()
            })
        })
        .collect();
    let mut held = Vec::new();
    for t in tasks {
        if let Some(lock) = t.await.unwrap() {
            held.push(lock);
        }
    }
    assert_eq!(
        held.len(),
        1,
        "exactly one of 50 concurrent acquirers holds the lock"
    );

    // Other records are not blocked.
    let locks = &b.stores.locks;
    let other = locks.try_acquire("alice", "gitlab", lease).await.unwrap();
    let bob = locks.try_acquire("bob", "github", lease).await.unwrap();
    assert!(other.is_some() && bob.is_some());
    assert!(
        locks
            .try_acquire("alice", "github", lease)
            .await
            .unwrap()
            .is_none()
    );
    // Released: free at once.
    held.pop().unwrap().release().await;
    let again = replica
        .locks
        .try_acquire("alice", "github", lease)
        .await
        .unwrap();
    assert!(again.is_some(), "a released lock can be taken again");
    for l in [again, other, bob].into_iter().flatten() {
        l.release().await;
    }
    b.stores.locks.ping().await.unwrap();
}

/// Polls until `(user, provider)` can be taken (at most `within`).
async fn acquire_within(
    locks: &dyn token_vault::store::RefreshLocks,
    lease: Duration,
    within: Duration,
) -> Option<Box<dyn token_vault::store::locks::HeldLock>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(l) = locks.try_acquire("carol", "github", lease).await.unwrap() {
            return Some(l);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn a_dead_holders_lock_expires_and_a_live_holder_keeps_it(b: &Backend) {
    let locks = &*b.stores.locks;
    let replica = b.replica().await;
    // A holder that dies (dropped without releasing: its renewal stops) keeps others out only
    // until its lease runs out.
    let lease = Duration::from_secs(2);
    let holder = locks
        .try_acquire("carol", "github", lease)
        .await
        .unwrap()
        .unwrap();
    drop(holder);
    assert!(
        replica
            .locks
            .try_acquire("carol", "github", lease)
            .await
            .unwrap()
            .is_none(),
        "nothing released it: still held"
    );
    let next = acquire_within(&*replica.locks, lease, Duration::from_secs(30))
        .await
        .expect("the dead holder's lease expires");

    // A live holder renews its lease: well past one lease, the lock is still its own.
    tokio::time::sleep(lease * 2).await;
    assert!(
        locks
            .try_acquire("carol", "github", lease)
            .await
            .unwrap()
            .is_none(),
        "renewed while held"
    );
    next.release().await;
    assert!(
        locks
            .try_acquire("carol", "github", lease)
            .await
            .unwrap()
            .is_some()
    );
}

/// A token endpoint that counts refreshes and answers each after a short delay (so that the
/// callers overlap), with tokens numbered by call.
struct CountingEndpoint {
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl TokenEndpoint for CountingEndpoint {
    async fn refresh(
        &self,
        _provider: &ProviderConfig,
        refresh_token: &str,
    ) -> Result<ProviderTokens, UpstreamError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        assert_eq!(
            refresh_token, "rt-due",
            "the stored refresh token is redeemed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(ProviderTokens {
            access_token: format!("at-fresh-{n}"),
            refresh_token: format!("rt-fresh-{n}"),
            expires_at: chrono::Utc::now().timestamp() + 3600,
            scopes: vec![],
            token_type: "Bearer".into(),
        })
    }
}

fn refresher(
    stores: &token_vault::Stores,
    prefix: &str,
    upstream: Arc<CountingEndpoint>,
) -> (Refresher, tokio::task::JoinHandle<()>) {
    let (audit, writer) = AuditLog::start(stores.audit.clone());
    let changes = Changes {
        cache: CredentialCache::new(token_vault::cache::TTL, 100),
        invalidations: Invalidations::new(stores.bus.clone(), prefix),
        events: ConnectionEvents::new(stores.bus.clone(), prefix),
        audit,
    };
    let refresher = Refresher {
        store: stores.credentials.clone(),
        locks: stores.locks.clone(),
        upstream,
        clock: Arc::new(SystemClock),
        keys: Arc::new(ring("k1")),
        settings: RefreshConfig {
            buffer_secs: 60,
            upstream_timeout_ms: 5_000,
            retries: 0,
            retry_backoff_ms: 50,
            lock_ttl_ms: 5_000,
            wait_ms: 60_000,
        },
        changes,
    };
    (refresher, writer)
}

pub async fn fifty_concurrent_refreshers_cause_one_upstream_refresh(b: &Backend) {
    let keys = ring("k1");
    let (u, p) = ("dave", "github");
    let mut due = tokens("due", chrono::Utc::now().timestamp() + 10);
    due.refresh_token = "rt-due".into();
    assert!(insert(&*b.stores.credentials, &keys, u, p, 1, &due).await);
    let row = b.stores.credentials.get(u, p).await.unwrap().unwrap();

    let upstream = Arc::new(CountingEndpoint {
        calls: AtomicUsize::new(0),
    });
    let replica = b.replica().await;
    let (r1, w1) = refresher(&b.stores, &b.prefix, upstream.clone());
    let (r2, w2) = refresher(&replica, &b.prefix, upstream.clone());
    let provider: ProviderConfig = serde_json::from_value(serde_json::json!({
        "token_endpoint": "https://upstream.example/token",
        "client_id": "vault",
    }))
    .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let r = if i % 2 == 0 { r1.clone() } else { r2.clone() };
            let (row, due, provider, barrier) =
                (row.clone(), due.clone(), provider.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                r.refresh("conformance", &provider, row, due).await
            })
        })
        .collect();
    for t in tasks {
        let fresh = t.await.unwrap().expect("every caller gets tokens");
        assert_eq!(fresh.access_token, "at-fresh-1");
        assert_eq!(fresh.refresh_token, "rt-fresh-1");
    }
    assert_eq!(
        upstream.calls.load(Ordering::SeqCst),
        1,
        "one upstream refresh for 50 concurrent callers"
    );
    let stored = b.stores.credentials.get(u, p).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    let opened = ProviderTokens::open(&keys, u, p, stored.version, &stored.sealed).unwrap();
    assert_eq!(opened.access_token, "at-fresh-1");
    assert_eq!(opened.refresh_token, "rt-fresh-1");
    drop((r1, r2));
    w1.await.unwrap();
    w2.await.unwrap();
}
