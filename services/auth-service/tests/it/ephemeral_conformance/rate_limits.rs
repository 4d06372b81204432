//! Rate-limit counters: counted per bucket, subject and window, given back, added in batches,
//! and gone `window_secs + 1` seconds after their last change.

use super::{Backend, conformance, outlive};

conformance!(
    counts_per_bucket_subject_and_window,
    a_give_back_takes_one_request_back,
    batches_add_up_with_single_counts,
    concurrent_counts_are_all_counted,
    a_window_expires_one_second_after_it_ends
);

/// A subject of its own per test (the Redis prefix is fresh anyway; memory starts empty).
fn subject() -> String {
    format!("198.51.100.{}", uuid::Uuid::new_v4().as_u128() % 250)
}

async fn counts_per_bucket_subject_and_window(b: Backend) {
    let e = b.ephemeral();
    let r = &e.rate_limits;
    let (ip, other_ip) = (subject(), format!("{}-other", subject()));
    assert_eq!(r.requests_counted("register", &ip, 7).await.unwrap(), 0);
    for n in 1..=3 {
        assert_eq!(r.count("register", &ip, 7, 60).await.unwrap(), n);
    }
    assert_eq!(r.requests_counted("register", &ip, 7).await.unwrap(), 3);
    // Another window, bucket or subject starts from zero.
    assert_eq!(r.count("register", &ip, 8, 60).await.unwrap(), 1);
    assert_eq!(r.count("login", &ip, 7, 60).await.unwrap(), 1);
    assert_eq!(r.count("register", &other_ip, 7, 60).await.unwrap(), 1);
    assert_eq!(r.requests_counted("register", &ip, 7).await.unwrap(), 3);
}

async fn a_give_back_takes_one_request_back(b: Backend) {
    let e = b.ephemeral();
    let r = &e.rate_limits;
    let ip = subject();
    r.count("token", &ip, 1, 60).await.unwrap();
    r.count("token", &ip, 1, 60).await.unwrap();
    r.uncount("token", &ip, 1, 60).await.unwrap();
    assert_eq!(r.requests_counted("token", &ip, 1).await.unwrap(), 1);
    assert_eq!(r.count("token", &ip, 1, 60).await.unwrap(), 2);
    // Only that window.
    r.count("token", &ip, 2, 60).await.unwrap();
    r.uncount("token", &ip, 1, 60).await.unwrap();
    assert_eq!(r.requests_counted("token", &ip, 1).await.unwrap(), 1);
    assert_eq!(r.requests_counted("token", &ip, 2).await.unwrap(), 1);
}

async fn batches_add_up_with_single_counts(b: Backend) {
    let e = b.ephemeral();
    let r = &e.rate_limits;
    let (a, c) = (subject(), format!("{}-c", subject()));
    r.count("token", &a, 5, 60).await.unwrap();
    let totals = r
        .add(
            &[
                ("token", &a, 5, 10),
                ("token", &c, 5, 4),
                ("token", &a, 6, 2),
            ],
            60,
        )
        .await
        .unwrap();
    assert_eq!(totals, [11, 4, 2]);
    // Another replica's batch adds to the same windows.
    let totals = r
        .add(&[("token", &a, 5, 1), ("token", &c, 5, 1)], 60)
        .await
        .unwrap();
    assert_eq!(totals, [12, 5]);
    assert_eq!(r.requests_counted("token", &a, 5).await.unwrap(), 12);
}

async fn concurrent_counts_are_all_counted(b: Backend) {
    let e = b.ephemeral();
    let ip = subject();
    let counters: Vec<_> = (0..50)
        .map(|_| {
            let (e, ip) = (e.clone(), ip.clone());
            tokio::spawn(async move { e.rate_limits.count("login", &ip, 3, 60).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for c in counters {
        seen.push(c.await.unwrap());
    }
    seen.sort_unstable();
    // Each request saw a count of its own: none was lost, none counted twice.
    assert_eq!(seen, (1..=50).collect::<Vec<u64>>());
}

async fn a_window_expires_one_second_after_it_ends(b: Backend) {
    let e = b.ephemeral();
    let r = &e.rate_limits;
    let ip = subject();
    r.count("register", &ip, 9, 1).await.unwrap();
    r.add(&[("token", &ip, 9, 5)], 1).await.unwrap();
    // Kept for window_secs + 1 = 2 s after its last change.
    outlive(2).await;
    assert_eq!(r.requests_counted("register", &ip, 9).await.unwrap(), 0);
    assert_eq!(r.requests_counted("token", &ip, 9).await.unwrap(), 0);
    assert_eq!(r.count("register", &ip, 9, 1).await.unwrap(), 1);
}
