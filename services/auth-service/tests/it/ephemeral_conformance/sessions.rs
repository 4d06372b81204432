//! Browser sessions: one ends at logout, all of a user's end together, and each is gone after
//! its TTL.

use uuid::Uuid;

use super::{Backend, conformance, outlive, random_key};

conformance!(
    put_get_delete,
    delete_user_ends_only_that_users_sessions,
    delete_user_counts_live_sessions_only,
    expires_after_its_ttl
);

async fn put_get_delete(b: Backend) {
    let e = b.ephemeral();
    let (k, user) = (random_key(), Uuid::new_v4());
    assert_eq!(e.sessions.get(&k).await.unwrap(), None);
    e.sessions.put(&k, user, 60).await.unwrap();
    assert_eq!(e.sessions.get(&k).await.unwrap(), Some(user));
    assert!(e.sessions.delete(&k).await.unwrap());
    assert_eq!(e.sessions.get(&k).await.unwrap(), None);
    assert!(!e.sessions.delete(&k).await.unwrap());
}

async fn delete_user_ends_only_that_users_sessions(b: Backend) {
    let e = b.ephemeral();
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let alices: Vec<Vec<u8>> = (0..3).map(|_| random_key()).collect();
    for k in &alices {
        e.sessions.put(k, alice, 60).await.unwrap();
    }
    let bobs = random_key();
    e.sessions.put(&bobs, bob, 60).await.unwrap();
    // One of Alice's sessions already logged out: not counted again.
    assert!(e.sessions.delete(&alices[0]).await.unwrap());
    assert_eq!(e.sessions.delete_user(alice).await.unwrap(), 2);
    for k in &alices {
        assert_eq!(e.sessions.get(k).await.unwrap(), None);
    }
    assert_eq!(e.sessions.get(&bobs).await.unwrap(), Some(bob));
    assert_eq!(e.sessions.delete_user(alice).await.unwrap(), 0);
    // A session after the revocation is a new one, ended by the next revocation.
    let again = random_key();
    e.sessions.put(&again, alice, 60).await.unwrap();
    assert_eq!(e.sessions.get(&again).await.unwrap(), Some(alice));
    assert_eq!(e.sessions.delete_user(alice).await.unwrap(), 1);
    assert_eq!(e.sessions.delete_user(Uuid::new_v4()).await.unwrap(), 0);
}

async fn delete_user_counts_live_sessions_only(b: Backend) {
    let e = b.ephemeral();
    let user = Uuid::new_v4();
    let (short, long) = (random_key(), random_key());
    e.sessions.put(&short, user, 1).await.unwrap();
    // The newer session keeps the user's index alive.
    e.sessions.put(&long, user, 60).await.unwrap();
    outlive(1).await;
    assert_eq!(e.sessions.delete_user(user).await.unwrap(), 1);
    assert_eq!(e.sessions.get(&long).await.unwrap(), None);
}

async fn expires_after_its_ttl(b: Backend) {
    let e = b.ephemeral();
    let k = random_key();
    e.sessions.put(&k, Uuid::new_v4(), 1).await.unwrap();
    outlive(1).await;
    assert_eq!(e.sessions.get(&k).await.unwrap(), None);
    assert!(!e.sessions.delete(&k).await.unwrap());
}
