//! `CredentialStore`: conditional writes, tombstones, per-user isolation, rekey.

use token_vault::credential::ProviderTokens;
use token_vault::crypto::{KeyRing, Sealed};
use token_vault::store::{ConnectionStatus, CredentialStore, CredentialWrite};

use super::Backend;
use crate::harness::key_b64;

/// Keys k1 and k2, sealing under `current`.
pub fn ring(current: &str) -> KeyRing {
    KeyRing::from_base64(
        &[("k1".into(), key_b64(1)), ("k2".into(), key_b64(2))],
        current,
    )
    .unwrap()
}

pub fn tokens(label: &str, expires_at: i64) -> ProviderTokens {
    ProviderTokens {
        access_token: format!("at-{label}"),
        refresh_token: format!("rt-{label}"),
        expires_at,
        scopes: vec!["repo".into(), "read:user".into()],
        token_type: "Bearer".into(),
    }
}

fn write<'a>(sealed: &'a Sealed, version: i64, t: &'a ProviderTokens) -> CredentialWrite<'a> {
    CredentialWrite {
        sealed,
        version,
        scopes: &t.scopes,
        expires_at: t.expires_at,
    }
}

/// Creates `(user, provider)` at `version` with `t` sealed under `keys`.
pub async fn insert(
    s: &dyn CredentialStore,
    keys: &KeyRing,
    user: &str,
    provider: &str,
    version: i64,
    t: &ProviderTokens,
) -> bool {
    let sealed = t.seal(keys, user, provider, version).unwrap();
    s.insert(
        user,
        provider,
        &write(&sealed, version, t),
        "https://upstream.example",
        &format!("{user}@upstream"),
    )
    .await
    .unwrap()
}

fn open(keys: &KeyRing, row: &token_vault::store::CredentialRow) -> ProviderTokens {
    ProviderTokens::open(keys, &row.user_id, &row.provider, row.version, &row.sealed).unwrap()
}

pub async fn put_get_replace_and_delete_leave_a_tombstone(b: &Backend) {
    let s = &*b.stores.credentials;
    let keys = ring("k1");
    let (u, p) = ("alice", "github");
    assert!(s.get(u, p).await.unwrap().is_none());
    assert_eq!(s.version(u, p).await.unwrap(), None);
    assert_eq!(s.version_and_floor(u, p).await.unwrap(), (None, 0));

    // Insert: once.
    let t1 = tokens("1", 1_900_000_000);
    assert!(insert(s, &keys, u, p, 1, &t1).await);
    assert!(
        !insert(s, &keys, u, p, 1, &tokens("dup", 0)).await,
        "an existing record is not overwritten by an insert"
    );
    let row = s.get(u, p).await.unwrap().unwrap();
    assert_eq!((row.user_id.as_str(), row.provider.as_str()), (u, p));
    assert_eq!(row.version, 1);
    assert_eq!(row.status, ConnectionStatus::Connected);
    assert_eq!(row.scopes, t1.scopes);
    assert_eq!(row.expires_at.map(|e| e.timestamp()), Some(1_900_000_000));
    assert_eq!(row.upstream_issuer, "https://upstream.example");
    assert_eq!(row.upstream_subject, "alice@upstream");
    assert_eq!(row.deleted_through, 0);
    assert!(row.updated_at >= row.connected_at);
    assert_eq!(row.sealed.key_id, "k1");
    assert_eq!(open(&keys, &row), t1);
    assert_eq!(
        s.version(u, p).await.unwrap(),
        Some((1, ConnectionStatus::Connected))
    );
    assert_eq!(
        s.version_and_floor(u, p).await.unwrap(),
        (Some((1, ConnectionStatus::Connected)), 0)
    );

    // Replace: only at the expected version.
    let t2 = tokens("2", 0);
    let sealed2 = t2.seal(&keys, u, p, 2).unwrap();
    assert!(
        !s.replace(u, p, 7, &write(&sealed2, 2, &t2), "https://i2", "s2")
            .await
            .unwrap()
    );
    assert!(
        s.replace(u, p, 1, &write(&sealed2, 2, &t2), "https://i2", "s2")
            .await
            .unwrap()
    );
    let row = s.get(u, p).await.unwrap().unwrap();
    assert_eq!(row.version, 2);
    assert_eq!(row.expires_at, None, "0 is an unknown expiry");
    assert_eq!(
        (row.upstream_issuer.as_str(), row.upstream_subject.as_str()),
        ("https://i2", "s2")
    );
    assert_eq!(open(&keys, &row), t2);

    // A refresh: only at the expected version, keeps the upstream identity.
    let t3 = tokens("3", 1_900_000_100);
    let sealed3 = t3.seal(&keys, u, p, 3).unwrap();
    assert!(
        !s.store_refreshed(u, p, 1, &write(&sealed3, 3, &t3))
            .await
            .unwrap()
    );
    assert!(
        s.store_refreshed(u, p, 2, &write(&sealed3, 3, &t3))
            .await
            .unwrap()
    );
    let row = s.get(u, p).await.unwrap().unwrap();
    assert_eq!((row.version, row.upstream_subject.as_str()), (3, "s2"));
    assert_eq!(open(&keys, &row), t3);

    // Reauthorization required: only at the expected version; the ciphertext stays.
    assert!(!s.mark_reauthorization_required(u, p, 2).await.unwrap());
    assert!(s.mark_reauthorization_required(u, p, 3).await.unwrap());
    assert_eq!(
        s.version(u, p).await.unwrap(),
        Some((3, ConnectionStatus::ReauthorizationRequired))
    );
    let row = s.get(u, p).await.unwrap().unwrap();
    assert_eq!(row.status, ConnectionStatus::ReauthorizationRequired);
    assert_eq!(open(&keys, &row), t3);

    // Delete: returns what was deleted and leaves the version in the tombstone.
    let deleted = s.delete(u, p).await.unwrap().unwrap();
    assert_eq!((deleted.version, deleted.deleted_through), (3, 0));
    assert_eq!(open(&keys, &deleted), t3);
    assert!(s.get(u, p).await.unwrap().is_none());
    assert!(s.list(u).await.unwrap().is_empty());
    assert_eq!(s.version_and_floor(u, p).await.unwrap(), (None, 3));
    assert!(s.delete(u, p).await.unwrap().is_none(), "nothing left");

    // A copy restored from before the delete (version at or below the tombstone) reads as
    // stale; deleting it again never lowers the tombstone.
    assert!(insert(s, &keys, u, p, 2, &t2).await);
    let restored = s.get(u, p).await.unwrap().unwrap();
    assert_eq!(restored.deleted_through, 3);
    assert!(restored.is_stale());
    assert_eq!(s.delete(u, p).await.unwrap().unwrap().version, 2);
    assert_eq!(s.version_and_floor(u, p).await.unwrap(), (None, 3));

    // A new record starts above the tombstone and is not stale; its delete raises it.
    assert!(insert(s, &keys, u, p, 4, &t1).await);
    let row = s.get(u, p).await.unwrap().unwrap();
    assert!(!row.is_stale());
    assert_eq!(row.deleted_through, 3);
    s.delete(u, p).await.unwrap().unwrap();
    assert_eq!(s.version_and_floor(u, p).await.unwrap(), (None, 4));
    s.ping().await.unwrap();
}

pub async fn another_users_credential_is_never_returned(b: &Backend) {
    let s = &*b.stores.credentials;
    let keys = ring("k1");
    // Ids that differ only by case, by a suffix, or that look like a pattern.
    let users = ["alice", "Alice", "alice2", "bob", "ali%", "alice:github"];
    for (i, u) in users.iter().enumerate() {
        assert!(insert(s, &keys, u, "github", 1, &tokens(&format!("{u}-{i}"), 0)).await);
    }
    assert!(insert(s, &keys, "alice", "gitlab", 1, &tokens("alice-gitlab", 0)).await);

    for (i, u) in users.iter().enumerate() {
        let row = s.get(u, "github").await.unwrap().unwrap();
        assert_eq!(row.user_id, *u);
        assert_eq!(open(&keys, &row).access_token, format!("at-{u}-{i}"));
        let listed = s.list(u).await.unwrap();
        assert!(listed.iter().all(|r| r.user_id == *u), "{u}: {listed:?}");
    }
    let alice: Vec<String> = s
        .list("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.provider)
        .collect();
    assert_eq!(alice, ["github", "gitlab"], "by provider");
    assert!(s.get("ali", "github").await.unwrap().is_none());
    assert!(s.get("alice", "git").await.unwrap().is_none());
    assert!(s.get("ali_e", "github").await.unwrap().is_none());
    assert!(s.list("ali").await.unwrap().is_empty());
    assert!(s.list("%").await.unwrap().is_empty());

    // Deleting one user's record touches no one else's (nor their tombstones).
    s.delete("alice", "github").await.unwrap().unwrap();
    for u in users.iter().filter(|u| **u != "alice") {
        assert_eq!(
            s.version_and_floor(u, "github").await.unwrap(),
            (Some((1, ConnectionStatus::Connected)), 0),
            "{u}"
        );
    }
    assert_eq!(s.list("alice").await.unwrap().len(), 1);
}

pub async fn rekey_reseals_every_readable_record_under_the_current_key(b: &Backend) {
    let s = &*b.stores.credentials;
    let old = ring("k1");
    let mut written = Vec::new();
    for i in 0..5 {
        let (u, t) = (format!("user-{i}"), tokens(&format!("rekey-{i}"), 0));
        assert!(insert(s, &old, &u, "github", 3, &t).await);
        written.push((u, t));
    }
    // One record that cannot be opened (its ciphertext was tampered with).
    let t = tokens("tampered", 0);
    let mut sealed = t.seal(&old, "user-x", "github", 1).unwrap();
    let last = sealed.blob.len() - 1;
    sealed.blob[last] ^= 1;
    assert!(
        s.insert(
            "user-x",
            "github",
            &write(&sealed, 1, &t),
            "https://upstream.example",
            "x"
        )
        .await
        .unwrap()
    );
    assert_eq!(s.count_by_key().await.unwrap(), [("k1".to_owned(), 6)]);

    let new = ring("k2");
    let mut lines = 0;
    let report = token_vault::rekey::rekey(s, &new, 2, |_| lines += 1)
        .await
        .unwrap();
    assert_eq!(
        (report.resealed, report.skipped, report.failed),
        (5, 0, 1),
        "{report:?}"
    );
    assert_eq!(lines, 3, "batches of 2 over 6 records");
    assert_eq!(
        s.count_by_key().await.unwrap(),
        [("k1".to_owned(), 1), ("k2".to_owned(), 5)]
    );
    for (u, t) in &written {
        let row = s.get(u, "github").await.unwrap().unwrap();
        assert_eq!((row.version, row.sealed.key_id.as_str()), (3, "k2"));
        assert_eq!(&open(&new, &row), t);
    }
    // Resumable: a second run finds only the unreadable record.
    let again = token_vault::rekey::rekey(s, &new, 2, |_| {}).await.unwrap();
    assert_eq!((again.resealed, again.failed), (0, 1));

    // A reseal is conditional on the version and the key it read.
    let row = s.get("user-0", "github").await.unwrap().unwrap();
    let resealed = written[0].1.seal(&new, "user-0", "github", 3).unwrap();
    let mut moved = row.clone();
    moved.version = 2;
    assert!(!s.reseal(&moved, &resealed).await.unwrap());
    let mut other_key = row.clone();
    other_key.sealed.key_id = "k1".into();
    assert!(!s.reseal(&other_key, &resealed).await.unwrap());
    assert!(s.reseal(&row, &resealed).await.unwrap());
}
