//! Device authorizations (RFC 8628): the user-code index, one decision per code, polling with
//! the per-code interval and `slow_down`, expiry, and an approval taken by exactly one poll
//! (also among 50 concurrent pollers). Times are passed in, so no test waits on a clock.

use auth_service::store::ephemeral::{DeviceAuthorization, DeviceDecision, DevicePoll};
use uuid::Uuid;

use super::{Backend, conformance, random_key};

conformance!(
    a_user_code_names_its_pending_device_code_once,
    a_taken_user_code_is_refused,
    polling_is_pending_then_slow_down_adds_five_seconds_each_time,
    another_client_changes_nothing,
    an_approval_is_redeemed_once,
    a_denial_is_reported_until_expiry,
    expiry_is_reported_and_ends_entry,
    fifty_concurrent_pollers_one_redeems
);

const NOW: i64 = 1_900_000_000;

fn auth(expires_in: i64) -> DeviceAuthorization {
    let now = chrono::Utc::now().timestamp();
    DeviceAuthorization {
        client_id: "device-client".into(),
        scope: "mcp:tools.read".into(),
        resource: "https://r.example/mcp".into(),
        issued_at: now,
        expires_at: now + expires_in,
    }
}

fn approved(user: Uuid) -> DeviceDecision {
    DeviceDecision::Approved {
        user_id: user,
        authenticated_at: NOW,
    }
}

/// Milliseconds at `secs` seconds from now (the store compares polls with `expires_at`).
fn at(secs: f64) -> i64 {
    chrono::Utc::now().timestamp_millis() + (secs * 1000.0) as i64
}

async fn a_user_code_names_its_pending_device_code_once(b: Backend) {
    let e = b.ephemeral();
    let (device, user, a) = (random_key(), random_key(), auth(600));
    assert!(e.device_codes.put(&device, &user, &a, 5).await.unwrap());
    let now = chrono::Utc::now().timestamp();
    let (found, got) = e
        .device_codes
        .pending_by_user_code(&user, now)
        .await
        .unwrap()
        .expect("the user code names its device code");
    assert_eq!(found, device);
    assert_eq!(got, a);
    assert!(
        e.device_codes
            .pending_by_user_code(&random_key(), now)
            .await
            .unwrap()
            .is_none()
    );
    // Decided once: the code names nothing any more, and a second decision is refused.
    assert!(
        e.device_codes
            .decide(&device, approved(Uuid::new_v4()), now)
            .await
            .unwrap()
    );
    assert!(
        e.device_codes
            .pending_by_user_code(&user, now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !e.device_codes
            .decide(&device, DeviceDecision::Denied, now)
            .await
            .unwrap()
    );
}

async fn a_taken_user_code_is_refused(b: Backend) {
    let e = b.ephemeral();
    let user = random_key();
    let first = random_key();
    assert!(
        e.device_codes
            .put(&first, &user, &auth(600), 5)
            .await
            .unwrap()
    );
    let second = random_key();
    assert!(
        !e.device_codes
            .put(&second, &user, &auth(600), 5)
            .await
            .unwrap()
    );
    // Nothing was stored for the refused one.
    assert_eq!(
        e.device_codes
            .poll(&second, "device-client", at(0.0))
            .await
            .unwrap(),
        DevicePoll::Unknown
    );
    let now = chrono::Utc::now().timestamp();
    let (found, _) = e
        .device_codes
        .pending_by_user_code(&user, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, first);
}

async fn polling_is_pending_then_slow_down_adds_five_seconds_each_time(b: Backend) {
    let e = b.ephemeral();
    let d = random_key();
    e.device_codes
        .put(&d, &random_key(), &auth(600), 5)
        .await
        .unwrap();
    let poll = |ms| {
        let e = e.clone();
        let d = d.clone();
        async move { e.device_codes.poll(&d, "device-client", ms).await.unwrap() }
    };
    assert_eq!(poll(at(0.0)).await, DevicePoll::Pending { interval: 5 });
    // One second later: too fast.
    assert_eq!(poll(at(1.0)).await, DevicePoll::SlowDown { interval: 10 });
    // Five seconds after that is too fast for the new interval…
    assert_eq!(poll(at(6.0)).await, DevicePoll::SlowDown { interval: 15 });
    // …fifteen is on time, and the interval stays where slow_down left it.
    assert_eq!(poll(at(21.0)).await, DevicePoll::Pending { interval: 15 });
    assert_eq!(poll(at(36.0)).await, DevicePoll::Pending { interval: 15 });
    // Another device code has its own interval.
    let other = random_key();
    e.device_codes
        .put(&other, &random_key(), &auth(600), 5)
        .await
        .unwrap();
    assert_eq!(
        e.device_codes
            .poll(&other, "device-client", at(36.0))
            .await
            .unwrap(),
        DevicePoll::Pending { interval: 5 }
    );
}

async fn another_client_changes_nothing(b: Backend) {
    let e = b.ephemeral();
    let d = random_key();
    e.device_codes
        .put(&d, &random_key(), &auth(600), 5)
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    e.device_codes
        .decide(&d, approved(Uuid::new_v4()), now)
        .await
        .unwrap();
    assert_eq!(
        e.device_codes
            .poll(&d, "someone-else", at(0.0))
            .await
            .unwrap(),
        DevicePoll::WrongClient
    );
    // The approval is still there for its own client.
    assert!(matches!(
        e.device_codes
            .poll(&d, "device-client", at(0.0))
            .await
            .unwrap(),
        DevicePoll::Approved { .. }
    ));
}

async fn an_approval_is_redeemed_once(b: Backend) {
    let e = b.ephemeral();
    let (d, a, user) = (random_key(), auth(600), Uuid::new_v4());
    e.device_codes.put(&d, &random_key(), &a, 5).await.unwrap();
    assert_eq!(
        e.device_codes
            .poll(&d, "device-client", at(0.0))
            .await
            .unwrap(),
        DevicePoll::Pending { interval: 5 }
    );
    let now = chrono::Utc::now().timestamp();
    assert!(
        e.device_codes
            .decide(&d, approved(user), now)
            .await
            .unwrap()
    );
    // Polled right away after the approval: the approval wins over slow_down.
    assert_eq!(
        e.device_codes
            .poll(&d, "device-client", at(0.1))
            .await
            .unwrap(),
        DevicePoll::Approved {
            auth: a,
            user_id: user,
            authenticated_at: NOW
        }
    );
    for s in [6.0, 12.0] {
        assert_eq!(
            e.device_codes
                .poll(&d, "device-client", at(s))
                .await
                .unwrap(),
            DevicePoll::Redeemed
        );
    }
}

async fn a_denial_is_reported_until_expiry(b: Backend) {
    let e = b.ephemeral();
    let d = random_key();
    e.device_codes
        .put(&d, &random_key(), &auth(60), 5)
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        e.device_codes
            .decide(&d, DeviceDecision::Denied, now)
            .await
            .unwrap()
    );
    assert!(
        !e.device_codes
            .decide(&d, approved(Uuid::new_v4()), now)
            .await
            .unwrap()
    );
    for s in [0.0, 0.5] {
        assert_eq!(
            e.device_codes
                .poll(&d, "device-client", at(s))
                .await
                .unwrap(),
            DevicePoll::Denied
        );
    }
    assert_eq!(
        e.device_codes
            .poll(&d, "device-client", at(61.0))
            .await
            .unwrap(),
        DevicePoll::Expired
    );
}

async fn expiry_is_reported_and_ends_entry(b: Backend) {
    let e = b.ephemeral();
    let (d, user) = (random_key(), random_key());
    e.device_codes.put(&d, &user, &auth(60), 5).await.unwrap();
    let later = chrono::Utc::now().timestamp() + 61;
    assert!(
        e.device_codes
            .pending_by_user_code(&user, later)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !e.device_codes
            .decide(&d, approved(Uuid::new_v4()), later)
            .await
            .unwrap()
    );
    assert_eq!(
        e.device_codes
            .poll(&d, "device-client", at(61.0))
            .await
            .unwrap(),
        DevicePoll::Expired
    );
}

async fn fifty_concurrent_pollers_one_redeems(b: Backend) {
    let e = b.ephemeral();
    let d = random_key();
    e.device_codes
        .put(&d, &random_key(), &auth(600), 5)
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    e.device_codes
        .decide(&d, approved(Uuid::new_v4()), now)
        .await
        .unwrap();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let pollers: Vec<_> = (0..50)
        .map(|_| {
            let (e, d, start) = (e.clone(), d.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                e.device_codes
                    .poll(&d, "device-client", at(0.0))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut approved = 0;
    for p in pollers {
        match p.await.unwrap() {
            DevicePoll::Approved { .. } => approved += 1,
            DevicePoll::Redeemed => {}
            other => panic!("a concurrent poll gave {other:?}"),
        }
    }
    assert_eq!(approved, 1);
}
