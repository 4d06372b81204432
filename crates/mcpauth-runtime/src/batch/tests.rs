use std::sync::{Arc, Mutex};

use super::*;

/// A sink that records what it wrote; `fail_first` transient failures, then `reject` refuses
/// any batch holding one of those items.
#[derive(Clone, Default)]
struct Recording {
    writes: Arc<Mutex<Vec<Vec<u32>>>>,
    attempts: Arc<Mutex<usize>>,
    fail_first: usize,
    reject: Vec<u32>,
    quarantined: Arc<Mutex<Vec<u32>>>,
}

#[derive(Debug)]
enum Failure {
    Down,
    Refused(u32),
}

impl Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Down => f.write_str("database down"),
            Failure::Refused(i) => write!(f, "item {i} refused"),
        }
    }
}

impl Sink<u32> for Recording {
    type Error = Failure;
    fn write<'a>(&'a mut self, items: &'a [u32]) -> BoxFuture<'a, Result<(), Failure>> {
        let mut n = self.attempts.lock().unwrap();
        *n += 1;
        let r = if *n <= self.fail_first {
            Err(Failure::Down)
        } else if let Some(bad) = items.iter().find(|i| self.reject.contains(i)) {
            Err(Failure::Refused(*bad))
        } else {
            self.writes.lock().unwrap().push(items.to_vec());
            Ok(())
        };
        Box::pin(std::future::ready(r))
    }
    fn rejects(&self, e: &Failure) -> bool {
        matches!(e, Failure::Refused(_))
    }
    fn quarantine(&mut self, item: &u32, _: &Failure) {
        self.quarantined.lock().unwrap().push(*item);
    }
}

impl Recording {
    fn written(&self) -> Vec<u32> {
        self.writes
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .copied()
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn items_gather_for_the_linger_then_go_in_one_write() {
    let (tx, rx) = mpsc::channel(100);
    let sink = Recording::default();
    let writer = tokio::spawn(write_batches(
        rx,
        Batching {
            max: 10,
            linger: Duration::from_millis(10),
        },
        "test",
        sink.clone(),
    ));
    tx.send(1).await.unwrap();
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    tx.send(2).await.unwrap();
    tx.send(3).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // More than `max` waiting: full batches, no linger needed.
    for i in 0..25 {
        tx.send(100 + i).await.unwrap();
    }
    drop(tx);
    writer.await.unwrap();
    let writes = sink.writes.lock().unwrap();
    assert_eq!(writes[0], vec![1, 2, 3]);
    let rest: Vec<u32> = writes[1..].iter().flatten().copied().collect();
    assert_eq!(rest, (100..125).collect::<Vec<_>>());
    assert!(writes[1..].iter().all(|b| b.len() <= 10), "{writes:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_is_retried_and_nothing_is_lost() {
    let (tx, rx) = mpsc::channel(100);
    let sink = Recording {
        fail_first: 3,
        ..Default::default()
    };
    let batching = Batching {
        max: 100,
        linger: Duration::ZERO,
    };
    let writer = tokio::spawn(write_batches(rx, batching, "test", sink.clone()));
    for i in 0..5 {
        tx.send(i).await.unwrap();
    }
    drop(tx);
    writer.await.unwrap();
    assert_eq!(sink.written(), vec![0, 1, 2, 3, 4]);
    assert_eq!(*sink.attempts.lock().unwrap(), 4);
    assert!(sink.quarantined.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_refused_item_is_quarantined_and_the_rest_of_its_batch_written_in_order() {
    let (tx, rx) = mpsc::channel(1_000);
    let sink = Recording {
        reject: vec![13, 14, 500],
        ..Default::default()
    };
    let batching = Batching {
        max: 256,
        linger: Duration::ZERO,
    };
    for i in 0..600 {
        tx.send(i).await.unwrap();
    }
    drop(tx);
    write_batches(rx, batching, "test", sink.clone()).await;
    let expected: Vec<u32> = (0..600).filter(|i| ![13, 14, 500].contains(i)).collect();
    assert_eq!(sink.written(), expected);
    assert_eq!(*sink.quarantined.lock().unwrap(), vec![13, 14, 500]);
    // Halving costs a few writes per refused item, not one per item.
    let attempts = *sink.attempts.lock().unwrap();
    assert!(attempts < 60, "{attempts} writes");
}

/// Against the real Postgres: a NUL byte in a text value is refused (SQLSTATE 22021) and must be
/// quarantined, while the rest of the batch lands. An unreachable database is not a rejection.
#[tokio::test]
async fn postgres_refusing_a_nul_byte_quarantines_that_row_only() {
    let admin_url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("mcpauth_batch_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&admin_url).await.expect("Postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE trail (n int NOT NULL, v text NOT NULL, d jsonb NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();

    struct Pg {
        pool: sqlx::PgPool,
        quarantined: Arc<Mutex<Vec<i32>>>,
    }
    impl Sink<(i32, String)> for Pg {
        type Error = sqlx::Error;
        fn write<'a>(
            &'a mut self,
            items: &'a [(i32, String)],
        ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
            let n: Vec<i32> = items.iter().map(|i| i.0).collect();
            let v: Vec<&str> = items.iter().map(|i| i.1.as_str()).collect();
            let d: Vec<serde_json::Value> = items
                .iter()
                .map(|i| serde_json::json!({ "v": i.1 }))
                .collect();
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO trail SELECT * FROM UNNEST($1::int[], $2::text[], $3::jsonb[])",
                )
                .bind(n)
                .bind(v)
                .bind(d)
                .execute(&self.pool)
                .await
                .map(drop)
            })
        }
        fn rejects(&self, e: &sqlx::Error) -> bool {
            postgres_rejects(e)
        }
        fn quarantine(&mut self, item: &(i32, String), _: &sqlx::Error) {
            self.quarantined.lock().unwrap().push(item.0);
        }
    }

    let quarantined = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel(1_000);
    for i in 0..500 {
        let v = match i {
            7 => "a\0b".to_owned(),
            300 => "\0".to_owned(),
            _ => format!("client-{i}"),
        };
        tx.send((i, v)).await.unwrap();
    }
    drop(tx);
    let sink = Pg {
        pool: pool.clone(),
        quarantined: quarantined.clone(),
    };
    let batching = Batching {
        max: 200,
        linger: Duration::ZERO,
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        write_batches(rx, batching, "test", sink),
    )
    .await
    .expect("the writer must not retry a refused row forever");
    let stored: Vec<i32> = sqlx::query_scalar("SELECT n FROM trail ORDER BY n")
        .fetch_all(&pool)
        .await
        .unwrap();
    let expected: Vec<i32> = (0..500).filter(|i| ![7, 300].contains(i)).collect();
    assert_eq!(stored, expected);
    assert_eq!(*quarantined.lock().unwrap(), vec![7, 300]);

    // The same value, sanitized, is accepted.
    let clean = sanitize("a\0b");
    assert_eq!(clean, "a\u{FFFD}b");
    let mut doc = serde_json::json!({"k\u{1}": ["x\0", {"y": "\u{7f}"}], "ok": "fine"});
    sanitize_json(&mut doc);
    assert_eq!(
        doc,
        serde_json::json!({"k\u{FFFD}": ["x\u{FFFD}", {"y": "\u{FFFD}"}], "ok": "fine"})
    );
    sqlx::query("INSERT INTO trail VALUES (1000, $1, $2)")
        .bind(clean.as_ref())
        .bind(&doc)
        .execute(&pool)
        .await
        .expect("a sanitized value is stored");

    pool.close().await;
    let unreachable = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let down = sqlx::query("SELECT 1")
        .execute(&unreachable)
        .await
        .unwrap_err();
    assert!(!postgres_rejects(&down), "{down}");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_full_channel_holds_a_request_up_at_most_once_then_drops_at_once() {
    let (tx, mut rx) = mpsc::channel(2);
    let recorder = Recorder::new(tx, "test", Duration::from_secs(1));
    assert!(recorder.record(1).await);
    assert!(recorder.record(2).await);
    // Full, nobody draining: the first item waits the bounded time, then is dropped.
    let started = tokio::time::Instant::now();
    assert!(!recorder.record(3).await);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    // Still full: dropped without waiting.
    let started = tokio::time::Instant::now();
    assert!(!recorder.clone().record(4).await);
    assert_eq!(started.elapsed(), Duration::ZERO);
    // The writer catches up: items go in again.
    assert_eq!(rx.recv().await, Some(1));
    assert!(recorder.record(5).await);
    assert_eq!(rx.recv().await, Some(2));
    assert_eq!(rx.recv().await, Some(5));
    drop(rx);
    assert!(!recorder.record(6).await, "a stopped writer drops");
}
