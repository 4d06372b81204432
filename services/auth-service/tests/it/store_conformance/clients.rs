//! `ClientStore` conformance: round trips, registration caps under concurrency, configured
//! clients' upsert, metadata documents written only when they change, RFC 7592 rotation, and
//! the sweeps.

use auth_service::error::StoreError;
use auth_service::store::clients::{CimdWrite, Client, ClientSource};
use chrono::Duration;
use serde_json::json;

use super::{Backend, now};

pub fn client(id: &str, source: ClientSource) -> Client {
    Client {
        client_id: id.into(),
        source,
        client_name: Some(format!("name of {id}")),
        redirect_uris: vec![
            "https://app.example/cb".into(),
            "http://127.0.0.1/cb".into(),
        ],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        response_types: vec!["code".into()],
        token_endpoint_auth_method: "none".into(),
        scope: Some("read write".into()),
        secret_sha256: None,
        registration_token_sha256: None,
        metadata: json!({"client_name": format!("name of {id}"), "logo_uri": "https://app.example/l.png", "x": [1, 2]}),
        created_at: now(),
    }
}

async fn a_client_round_trips(b: &Backend) {
    let mut c = client("c1", ClientSource::Dynamic);
    c.secret_sha256 = Some(vec![1; 32]);
    c.registration_token_sha256 = Some(vec![2; 32]);
    c.token_endpoint_auth_method = "client_secret_basic".into();
    b.stores.clients.insert(&c).await.unwrap();
    let got = b.stores.clients.get("c1").await.unwrap().unwrap();
    assert_eq!(got.client_id, "c1");
    assert_eq!(got.source, ClientSource::Dynamic);
    assert_eq!(got.client_name, c.client_name);
    assert_eq!(got.redirect_uris, c.redirect_uris);
    assert_eq!(got.grant_types, c.grant_types);
    assert_eq!(got.response_types, c.response_types);
    assert_eq!(got.token_endpoint_auth_method, "client_secret_basic");
    assert_eq!(got.scope, c.scope);
    assert_eq!(got.secret_sha256, c.secret_sha256);
    assert_eq!(got.registration_token_sha256, c.registration_token_sha256);
    assert_eq!(got.metadata, c.metadata);
    assert_eq!(got.created_at, c.created_at);
    assert!(b.stores.clients.get("nope").await.unwrap().is_none());
    // An id collision is `AlreadyExists`, and the first registration stays.
    let err = b
        .stores
        .clients
        .insert(&client("c1", ClientSource::Dynamic))
        .await;
    assert!(matches!(err, Err(StoreError::AlreadyExists)), "{err:?}");
    assert_eq!(
        b.stores
            .clients
            .get("c1")
            .await
            .unwrap()
            .unwrap()
            .secret_sha256,
        c.secret_sha256
    );
}

async fn concurrent_registrations_never_overshoot_the_cap(b: &Backend) {
    let store = b.stores.clients.clone();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .insert_dynamic_capped(&client(&format!("d{i}"), ClientSource::Dynamic), 5)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut stored = 0;
    for t in tasks {
        stored += t.await.unwrap() as i64;
    }
    assert_eq!(stored, 5);
    assert_eq!(store.count_dynamic().await.unwrap(), 5);
    // Other sources do not count against the dynamic cap.
    store
        .upsert(&client("s", ClientSource::Static))
        .await
        .unwrap();
    assert_eq!(store.count_dynamic().await.unwrap(), 5);
}

async fn upsert_replaces_a_configured_client(b: &Backend) {
    let store = &b.stores.clients;
    let mut c = client("static-1", ClientSource::Static);
    c.secret_sha256 = Some(vec![7; 32]);
    store.upsert(&c).await.unwrap();
    c.client_name = Some("renamed".into());
    c.redirect_uris = vec!["https://new.example/cb".into()];
    c.secret_sha256 = Some(vec![8; 32]);
    c.metadata = json!({});
    store.upsert(&c).await.unwrap();
    let got = store.get("static-1").await.unwrap().unwrap();
    assert_eq!(got.client_name.as_deref(), Some("renamed"));
    assert_eq!(got.redirect_uris, vec!["https://new.example/cb".to_owned()]);
    assert_eq!(got.secret_sha256, Some(vec![8; 32]));
    assert_eq!(got.metadata, json!({}));
    assert_eq!(b.count("SELECT count(*) FROM clients").await, 1);
}

async fn a_metadata_document_is_written_only_when_it_changes(b: &Backend) {
    let store = &b.stores.clients;
    let id = "https://app.example/client.json";
    let c = client(id, ClientSource::Cimd);
    assert_eq!(store.store_cimd(&c, 10).await.unwrap(), CimdWrite::Inserted);
    assert_eq!(
        store.store_cimd(&c, 10).await.unwrap(),
        CimdWrite::Unchanged
    );
    let mut changed = c.clone();
    changed.client_name = Some("v2".into());
    changed.metadata = json!({"client_name": "v2"});
    assert_eq!(
        store.store_cimd(&changed, 10).await.unwrap(),
        CimdWrite::Updated
    );
    assert_eq!(
        store.store_cimd(&changed, 10).await.unwrap(),
        CimdWrite::Unchanged
    );
    let got = store.get(id).await.unwrap().unwrap();
    assert_eq!(got.source, ClientSource::Cimd);
    assert_eq!(got.client_name.as_deref(), Some("v2"));
    assert_eq!(got.metadata, json!({"client_name": "v2"}));
    // A row of another source with that id is left alone.
    store
        .upsert(&client(
            "https://other.example/c.json",
            ClientSource::Static,
        ))
        .await
        .unwrap();
    let other = client("https://other.example/c.json", ClientSource::Cimd);
    let mut other_doc = other.clone();
    other_doc.metadata = json!({"different": true});
    assert_eq!(
        store.store_cimd(&other_doc, 10).await.unwrap(),
        CimdWrite::Unchanged
    );
    assert_eq!(
        store
            .get("https://other.example/c.json")
            .await
            .unwrap()
            .unwrap()
            .source,
        ClientSource::Static
    );
    // The cap counts document clients only.
    assert_eq!(
        store
            .store_cimd(
                &client("https://third.example/c.json", ClientSource::Cimd),
                1
            )
            .await
            .unwrap(),
        CimdWrite::Full
    );
    assert!(
        store
            .get("https://third.example/c.json")
            .await
            .unwrap()
            .is_none()
    );
}

async fn concurrent_first_sightings_of_documents_respect_the_cap(b: &Backend) {
    let store = b.stores.clients.clone();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                // Two lookups race for every document.
                let c = client(
                    &format!("https://app{}.example/c.json", i % 10),
                    ClientSource::Cimd,
                );
                store.store_cimd(&c, 4).await.unwrap()
            })
        })
        .collect();
    let mut inserted = 0;
    for t in tasks {
        if t.await.unwrap() == CimdWrite::Inserted {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 4);
    assert_eq!(
        b.count("SELECT count(*) FROM clients WHERE source = 'cimd'")
            .await,
        4
    );
}

async fn rfc7592_update_and_registration_token_rotation(b: &Backend) {
    let store = b.stores.clients.clone();
    let mut c = client("dyn", ClientSource::Dynamic);
    c.registration_token_sha256 = Some(vec![1; 32]);
    c.secret_sha256 = Some(vec![9; 32]);
    store.insert(&c).await.unwrap();
    let mut updated = c.clone();
    updated.client_name = Some("updated".into());
    updated.grant_types = vec!["authorization_code".into()];
    updated.secret_sha256 = None;
    store.update_metadata(&updated).await.unwrap();
    let got = store.get("dyn").await.unwrap().unwrap();
    assert_eq!(got.client_name.as_deref(), Some("updated"));
    assert_eq!(got.grant_types, vec!["authorization_code".to_owned()]);
    assert_eq!(got.secret_sha256, Some(vec![9; 32]), "the secret is kept");
    let missing = store
        .update_metadata(&client("ghost", ClientSource::Dynamic))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    // Of concurrent rotations from the same current token, exactly one wins.
    let tasks: Vec<_> = (0..10u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .rotate_registration_token("dyn", &[1; 32], &[10 + i; 32])
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += t.await.unwrap() as u32;
    }
    assert_eq!(wins, 1);
    assert!(
        !store
            .rotate_registration_token("dyn", &[1; 32], &[3; 32])
            .await
            .unwrap()
    );
}

async fn deleting_a_client_takes_its_consents_and_grants(b: &Backend) {
    let s = &b.stores;
    s.clients
        .insert(&client("gone", ClientSource::Dynamic))
        .await
        .unwrap();
    let user = s.users.upsert("dev", "alice", "alice").await.unwrap();
    s.consents
        .record_consent(user, "gone", "https://r.example/mcp", "read")
        .await
        .unwrap();
    let grant = super::grants::grant(user, "gone");
    s.grants
        .create(&grant, now() + Duration::hours(1), Some(&[5; 32][..]))
        .await
        .unwrap();
    assert!(s.clients.delete("gone").await.unwrap());
    assert!(!s.clients.delete("gone").await.unwrap());
    assert!(s.clients.get("gone").await.unwrap().is_none());
    assert!(
        s.consents
            .consented_scope(user, "gone", "https://r.example/mcp")
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.grants.grant_of_refresh(&[5; 32]).await.unwrap().is_none());
    assert_eq!(b.count("SELECT count(*) FROM refresh_tokens").await, 0);
}

async fn unused_clients_are_swept(b: &Backend) {
    let s = &b.stores;
    let mut old = client("old", ClientSource::Dynamic);
    old.created_at = now() - Duration::hours(2);
    s.clients.insert(&old).await.unwrap();
    let mut used = client("used", ClientSource::Dynamic);
    used.created_at = now() - Duration::hours(2);
    s.clients.insert(&used).await.unwrap();
    s.clients
        .insert(&client("new", ClientSource::Dynamic))
        .await
        .unwrap();
    s.clients.touch(&["used".to_owned()]).await.unwrap();
    let swept = s.clients.delete_unused(3600).await.unwrap();
    assert_eq!(swept, vec!["old".to_owned()]);
    assert_eq!(s.clients.count_dynamic().await.unwrap(), 2);

    // Document clients: a negative TTL makes every one "unused long enough", so only the live
    // grant keeps one.
    let kept = "https://kept.example/c.json";
    let dropped = "https://dropped.example/c.json";
    s.clients
        .store_cimd(&client(kept, ClientSource::Cimd), 10)
        .await
        .unwrap();
    s.clients
        .store_cimd(&client(dropped, ClientSource::Cimd), 10)
        .await
        .unwrap();
    let user = s.users.upsert("dev", "bob", "bob").await.unwrap();
    s.grants
        .create(
            &super::grants::grant(user, kept),
            now() + Duration::hours(1),
            None,
        )
        .await
        .unwrap();
    let swept = s.clients.delete_unused_cimd(-10).await.unwrap();
    assert_eq!(swept, vec![dropped.to_owned()]);
    assert!(s.clients.get(kept).await.unwrap().is_some());
    // Dynamic clients are not document clients.
    assert_eq!(s.clients.count_dynamic().await.unwrap(), 2);
}

crate::conformance!(
    a_client_round_trips,
    concurrent_registrations_never_overshoot_the_cap,
    upsert_replaces_a_configured_client,
    a_metadata_document_is_written_only_when_it_changes,
    concurrent_first_sightings_of_documents_respect_the_cap,
    rfc7592_update_and_registration_token_rotation,
    deleting_a_client_takes_its_consents_and_grants,
    unused_clients_are_swept,
);
