//! Background work of every replica: keeping the revocation deny list and client cache in step
//! with the other replicas, recording client use, and sweeping expired rows.

use mcpauth_runtime::bus::{self, ChannelEvent};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::AppState;
use crate::store::ephemeral::ReplicaEvent;

/// Loads the whole unexpired deny list before the service answers its first request.
pub async fn initial_sync(state: &AppState) -> anyhow::Result<()> {
    let (all, _) = state.revocations.since(None).await?;
    for r in &all {
        state.tokens.deny.insert(r);
    }
    tracing::info!(entries = all.len(), "revocation deny list loaded");
    Ok(())
}

/// Spawns the background tasks; they stop when `shutdown` flips.
pub fn spawn(state: &AppState, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(listen_events(state.clone(), shutdown.clone())),
        tokio::spawn(resync_revocations(state.clone(), shutdown.clone())),
        tokio::spawn(flush_rate_limits(state.clone(), shutdown.clone())),
        tokio::spawn(periodic(state.clone(), shutdown)),
    ]
}

/// Applies revocations and client changes published by other replicas (on the event bus: Redis
/// pub/sub, reconnecting with backoff). Anything missed meanwhile arrives through
/// `resync_revocations`.
async fn listen_events(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let events = state.ephemeral.events.clone();
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    bus::follow(
        events.bus(),
        events.channel(),
        "replica events",
        stop,
        |event| {
            if let ChannelEvent::Message(payload) = event {
                match serde_json::from_str::<ReplicaEvent>(&payload) {
                    Ok(ReplicaEvent::Revoked(r)) => state.tokens.deny.insert(&r),
                    Ok(ReplicaEvent::ClientChanged(id)) => state.clients.invalidate(&id),
                    // This replica re-reads revocations from Postgres anyway.
                    Ok(ReplicaEvent::Resync) => {}
                    Err(e) => tracing::warn!(error = %e, "ignoring malformed replica event"),
                }
            }
            std::future::ready(())
        },
    )
    .await;
}

/// Re-reads recent revocations from Postgres every `revocation_resync_ms`: the guarantee
/// behind "revoked everywhere within a second" even when pub/sub loses a message.
async fn resync_revocations(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_millis(state.config.tokens.revocation_resync_ms.max(100));
    // Overlap the windows: a transaction that started before the watermark may commit after it.
    let overlap = chrono::Duration::seconds(5);
    let mut watermark: Option<DateTime<Utc>> = Some(Utc::now() - overlap);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        match state
            .revocations
            .since(watermark.map(|w| w - overlap))
            .await
        {
            Ok((rows, now)) => {
                for r in &rows {
                    state.tokens.deny.insert(r);
                }
                watermark = Some(now);
            }
            Err(e) => tracing::warn!(error = %e, "revocation re-sync failed"),
        }
        // Verification caches elsewhere (mcp-service, token-vault) know revocations only
        // from the channel: after a failed publish they are told to forget everything.
        if let Err(e) = state.ephemeral.events.publish_owed_resync().await {
            tracing::warn!(error = %e, "resync of replica events still owed");
        }
        state.tokens.deny.purge(Utc::now().timestamp());
        metrics::gauge!("mcpauth_deny_list_entries").set(state.tokens.deny.len() as f64);
    }
}

/// Pushes locally counted requests of high-volume rate limits to Redis.
async fn flush_rate_limits(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(crate::ratelimit::FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => state.rate_limiter.flush(Utc::now().timestamp() as u64).await,
            _ = shutdown.changed() => return,
        }
    }
}

/// Client-use bookkeeping every 30 s and sweeping every 10 minutes.
async fn periodic(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut flush = tokio::time::interval(Duration::from_secs(30));
    let mut sweep = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = flush.tick() => {
                if let Err(e) = state.clients.flush_used().await {
                    tracing::warn!(error = %e, "recording client use failed");
                }
            }
            _ = sweep.tick() => sweep_once(&state).await,
            _ = shutdown.changed() => {
                let _ = state.clients.flush_used().await;
                return;
            }
        }
    }
}

/// Deletes expired revocations, grants and refresh tokens, and dynamic clients unused for
/// `registration.unused_client_ttl_secs`.
pub async fn sweep_once(state: &AppState) {
    match state.revocations.sweep().await {
        Ok(n) if n > 0 => tracing::info!(rows = n, "swept expired revocations"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "revocation sweep failed"),
    }
    match state.grants.sweep_expired().await {
        Ok(n) if n > 0 => tracing::info!(rows = n, "swept expired grants and refresh tokens"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "grant sweep failed"),
    }
    let ttl = state.config.registration.unused_client_ttl_secs;
    if ttl > 0 {
        match state.clients.store().delete_unused(ttl).await {
            Ok(ids) => {
                let until = Utc::now().timestamp() + state.tokens.access_ttl();
                for id in &ids {
                    // As on DELETE /register/{id}: nothing issued to a removed client stays valid.
                    if let Err(e) = state
                        .tokens
                        .revoke(crate::store::revocations::RevocationKind::Client, id, until)
                        .await
                    {
                        tracing::warn!(error = %e, "revoking a removed client's tokens failed");
                    }
                    state.client_changed(id).await;
                }
                if !ids.is_empty() {
                    tracing::info!(clients = ids.len(), "removed unused dynamic clients");
                }
            }
            Err(e) => tracing::warn!(error = %e, "client sweep failed"),
        }
    }
    let ttl = state.config.cimd.unused_client_ttl_secs;
    if ttl > 0 {
        // No live grant and unused for longer than an access token lives: nothing issued to the
        // client is still valid, so no revocation entry is needed (one would also refuse the
        // client's next tokens should it come back).
        let ttl = ttl.max(state.tokens.access_ttl());
        match state.clients.store().delete_unused_cimd(ttl).await {
            Ok(ids) => {
                for id in &ids {
                    state.client_changed(id).await;
                }
                if !ids.is_empty() {
                    tracing::info!(
                        clients = ids.len(),
                        "removed unused metadata document clients"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "metadata document client sweep failed"),
        }
    }
}
