//! Connect tickets: bound to the first browser (a compare-and-set, also under a race), keeping
//! their TTL when bound, taken once.

use auth_service::store::ephemeral::ConnectTicket;

use super::{Backend, conformance, outlive, random_key};

conformance!(
    put_get_take,
    the_first_browser_wins,
    fifty_browsers_race_one_wins,
    binding_keeps_the_ttl,
    expires_after_its_ttl
);

fn ticket() -> ConnectTicket {
    ConnectTicket {
        user_id: uuid::Uuid::new_v4(),
        provider: "github".into(),
        csrf: "csrf".into(),
        browser_sha256: None,
        expires_at: 1_700_000_600,
        created_at: Some(1_700_000_000),
    }
}

async fn put_get_take(b: Backend) {
    let e = b.ephemeral();
    let (k, t) = (random_key(), ticket());
    e.connect_tickets.put(&k, &t, 60).await.unwrap();
    let got = e.connect_tickets.get(&k).await.unwrap().unwrap();
    assert_eq!(got.user_id, t.user_id);
    assert_eq!(got.expires_at, 1_700_000_600);
    assert!(got.browser_sha256.is_none());
    assert_eq!(
        e.connect_tickets.take(&k).await.unwrap().unwrap().user_id,
        t.user_id
    );
    assert!(e.connect_tickets.take(&k).await.unwrap().is_none());
    assert!(e.connect_tickets.get(&k).await.unwrap().is_none());
}

async fn the_first_browser_wins(b: Backend) {
    let e = b.ephemeral();
    let k = random_key();
    // Unknown ticket: nothing to bind.
    assert!(
        !e.connect_tickets
            .bind_browser(&k, "browser-a")
            .await
            .unwrap()
    );
    e.connect_tickets.put(&k, &ticket(), 60).await.unwrap();
    assert!(
        e.connect_tickets
            .bind_browser(&k, "browser-a")
            .await
            .unwrap()
    );
    // The same browser again: still its link.
    assert!(
        e.connect_tickets
            .bind_browser(&k, "browser-a")
            .await
            .unwrap()
    );
    assert!(
        !e.connect_tickets
            .bind_browser(&k, "browser-b")
            .await
            .unwrap()
    );
    let got = e.connect_tickets.get(&k).await.unwrap().unwrap();
    assert_eq!(got.browser_sha256.as_deref(), Some("browser-a"));
    // The rest of the ticket is intact.
    assert_eq!(got.provider, "github");
    assert_eq!(got.csrf, "csrf");
}

async fn fifty_browsers_race_one_wins(b: Backend) {
    let e = b.ephemeral();
    let k = random_key();
    e.connect_tickets.put(&k, &ticket(), 60).await.unwrap();
    let binders: Vec<_> = (0..50)
        .map(|i| {
            let (e, k) = (e.clone(), k.clone());
            tokio::spawn(async move {
                let browser = format!("browser-{i}");
                let won = e.connect_tickets.bind_browser(&k, &browser).await.unwrap();
                won.then_some(browser)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in binders {
        winners.extend(t.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let got = e.connect_tickets.get(&k).await.unwrap().unwrap();
    assert_eq!(got.browser_sha256, winners.pop());
}

async fn binding_keeps_the_ttl(b: Backend) {
    let e = b.ephemeral();
    let k = random_key();
    e.connect_tickets.put(&k, &ticket(), 2).await.unwrap();
    assert!(
        e.connect_tickets
            .bind_browser(&k, "browser-a")
            .await
            .unwrap()
    );
    outlive(2).await;
    assert!(e.connect_tickets.get(&k).await.unwrap().is_none());
    assert!(
        !e.connect_tickets
            .bind_browser(&k, "browser-a")
            .await
            .unwrap()
    );
}

async fn expires_after_its_ttl(b: Backend) {
    let e = b.ephemeral();
    let k = random_key();
    e.connect_tickets.put(&k, &ticket(), 1).await.unwrap();
    outlive(1).await;
    assert!(e.connect_tickets.get(&k).await.unwrap().is_none());
    assert!(e.connect_tickets.take(&k).await.unwrap().is_none());
}
