//! Revocations for the `jwt` verifier: a JWT is checked locally, so evicting a cache entry (what
//! the introspecting verifiers do on a revocation) would not stop it. Instead each revocation
//! auth-service publishes on `<auth prefix>:events` is remembered until no token it covers can
//! be valid anyway (its `expires_at`), and every verified JWT is checked against the set by
//! `jti`, grant, client and subject (a subject's tokens issued at or before `issued_before`).
//!
//! Limits (docs/tokens.md): a replica knows only the revocations published while it was
//! subscribed. Revocations published before it started, or while Redis was unreachable, are
//! not known here; the tokens they cover stay accepted until they expire (at most
//! `tokens.access_ttl_secs`). Deployments that need more put `introspection_grpc` in front.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use mcpauth_runtime::bus::{ChannelEvent, EventBus};
use mcpauth_runtime::revocation::feed::{FeedEvent, parse_event};
use mcpauth_runtime::revocation::{Revocation, RevocationIds, Scope, now_secs};
use serde::Deserialize;

/// The revocations this replica has heard of. Cheap to clone (clones share the set).
#[derive(Clone, Default)]
pub struct RevokedIds {
    /// `(scope, id)` → Unix seconds after which the entry can go.
    ids: Arc<RwLock<HashMap<(Scope, String), i64>>>,
    /// Subject → (tokens issued at or before this are revoked, entry lifetime).
    subjects: Arc<RwLock<HashMap<String, (i64, i64)>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Wire {
    Revoked(WireRevocation),
}

#[derive(Deserialize)]
struct WireRevocation {
    kind: String,
    id: String,
    expires_at: i64,
    #[serde(default)]
    issued_before: Option<i64>,
}

impl RevokedIds {
    /// Records one event of auth-service's channel (others are ignored).
    pub fn apply(&self, payload: &str) {
        let Ok(Wire::Revoked(r)) = serde_json::from_str::<Wire>(payload) else {
            return;
        };
        let Some(scope) = Scope::from_kind(&r.kind) else {
            tracing::warn!(kind = %r.kind, "ignoring a revocation of an unknown kind");
            return;
        };
        let now = now_secs();
        if scope == Scope::Subject {
            let mut s = self.subjects.write().expect("revoked lock");
            s.retain(|_, e| e.1 > now);
            let e = s.entry(r.id).or_insert((i64::MIN, i64::MIN));
            e.0 = e.0.max(r.issued_before.unwrap_or(i64::MAX));
            e.1 = e.1.max(r.expires_at);
            return;
        }
        let mut ids = self.ids.write().expect("revoked lock");
        ids.retain(|_, exp| *exp > now);
        let e = ids.entry((scope, r.id)).or_insert(i64::MIN);
        *e = (*e).max(r.expires_at);
    }

    /// Whether a token with these ids, issued at `iat`, is revoked.
    pub fn covers(&self, ids: &RevocationIds<'_>, iat: i64) -> bool {
        let listed = self.ids.read().expect("revoked lock");
        if ids
            .iter()
            .filter(|(s, _)| *s != Scope::Subject)
            .any(|(s, id)| listed.contains_key(&(s, id.to_owned())))
        {
            return true;
        }
        drop(listed);
        self.subjects
            .read()
            .expect("revoked lock")
            .get(ids.subject)
            .is_some_and(|(before, _)| iat <= *before)
    }

    /// Follows `channel` on `bus` until `stop`; each revocation also goes to `notify` (open
    /// event streams of a revoked token end, as in the introspecting modes).
    pub async fn follow(
        self,
        bus: Arc<dyn EventBus>,
        channel: String,
        notify: tokio::sync::broadcast::Sender<Revocation>,
        stop: impl Future<Output = ()>,
    ) {
        mcpauth_runtime::bus::follow(&*bus, &channel, "revocations", stop, |event| {
            match event {
                ChannelEvent::Message(payload) => {
                    self.apply(&payload);
                    if let Some(FeedEvent::Revoked(r)) = parse_event(&payload) {
                        let _ = notify.send(r);
                    }
                }
                ChannelEvent::Lost => tracing::warn!(
                    "revocation feed lost: JWTs revoked meanwhile stay accepted until they expire"
                ),
                ChannelEvent::Subscribed => {}
            }
            std::future::ready(())
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids<'a>(
        jti: &'a str,
        grant: Option<&'a str>,
        client: &'a str,
        sub: &'a str,
    ) -> RevocationIds<'a> {
        RevocationIds {
            token_id: Some(jti),
            grant_id: grant,
            client_id: client,
            subject: sub,
        }
    }

    #[test]
    fn each_kind_of_revocation_covers_its_tokens_only() {
        let r = RevokedIds::default();
        let far = now_secs() + 600;
        let t = ids("j1", Some("g1"), "c1", "u1");
        assert!(!r.covers(&t, 100));
        r.apply(&format!(
            r#"{{"revoked":{{"kind":"token","id":"j1","expires_at":{far}}}}}"#
        ));
        assert!(r.covers(&t, 100));
        assert!(!r.covers(&ids("j2", Some("g1"), "c1", "u1"), 100));
        r.apply(&format!(
            r#"{{"revoked":{{"kind":"grant","id":"g1","expires_at":{far}}}}}"#
        ));
        assert!(r.covers(&ids("j2", Some("g1"), "c1", "u1"), 100));
        assert!(!r.covers(&ids("j3", None, "c1", "u1"), 100));
        r.apply(&format!(
            r#"{{"revoked":{{"kind":"client","id":"c2","expires_at":{far}}}}}"#
        ));
        assert!(r.covers(&ids("j3", None, "c2", "u9"), 100));
        // A user's tokens issued at or before `issued_before`; later ones live.
        r.apply(&format!(
            r#"{{"revoked":{{"kind":"user","id":"u5","expires_at":{far},"issued_before":200}}}}"#
        ));
        assert!(r.covers(&ids("j4", None, "c1", "u5"), 200));
        assert!(!r.covers(&ids("j5", None, "c1", "u5"), 201));
        // Other events and junk change nothing.
        r.apply(r#"{"client_changed":"c1"}"#);
        r.apply("resync");
        r.apply(r#""resync""#);
        assert!(!r.covers(&ids("j6", None, "c1", "u1"), 100));
    }

    #[test]
    fn entries_past_their_tokens_lifetime_are_dropped() {
        let r = RevokedIds::default();
        r.apply(r#"{"revoked":{"kind":"token","id":"old","expires_at":1}}"#);
        r.apply(&format!(
            r#"{{"revoked":{{"kind":"token","id":"new","expires_at":{}}}}}"#,
            now_secs() + 600
        ));
        assert_eq!(r.ids.read().unwrap().len(), 1);
    }
}
