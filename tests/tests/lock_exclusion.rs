//! Mutual exclusion: critical sections doing a non-atomic GET-then-SET increment, from tasks
//! spread over two runtimes (two instances of one service), give the exact total under the
//! lock; the same workload without the lock loses updates, so the check can fail.
//!
//! `REDISX_LOCK_SECTIONS` sets the sections per task (default 50, 8 tasks).

use std::time::Duration;

use redisx::RedisX;
use redisx::lock::{LockConfig, LockOptions, RetryStrategy};
use redisx_tests::lock::lock_runtime;
use redisx_tests::{RedisServer, unique_prefix};

const TASKS: u64 = 8;

fn sections() -> u64 {
    std::env::var("REDISX_LOCK_SECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

/// One non-atomic increment of `counter`: read, let other tasks run, write back.
async fn increment(rx: &RedisX, counter: &str) {
    let client = rx.client();
    let n: Option<u64> = client.query(redis::cmd("GET").arg(counter)).await.unwrap();
    tokio::time::sleep(Duration::from_micros(200)).await;
    let () = client
        .query(redis::cmd("SET").arg(counter).arg(n.unwrap_or(0) + 1))
        .await
        .unwrap();
}

/// Runs `TASKS` tasks, alternately on `a` and `b`, each doing `sections()` increments of one
/// counter, with the lock or without; returns the counter's final value.
async fn workload(a: &RedisX, b: &RedisX, locked: bool) -> u64 {
    let counter = format!("{}counter:{locked}", a.key_prefix());
    // A 1–5 ms fixed retry (3 ms with full jitter), for as long as it takes.
    let opts = LockOptions::new()
        .retry(RetryStrategy::Fixed(Duration::from_millis(3)))
        .wait(Duration::from_secs(120));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let rx = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (counter, opts) = (counter.clone(), opts.clone());
            tokio::spawn(async move {
                for _ in 0..sections() {
                    if locked {
                        let guard = rx.locks().acquire("counter", &opts).await.unwrap();
                        increment(&rx, &counter).await;
                        guard.release().await.unwrap();
                    } else {
                        increment(&rx, &counter).await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let n: Option<u64> = a
        .client()
        .query(redis::cmd("GET").arg(&counter))
        .await
        .unwrap();
    n.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locked_increments_from_two_runtimes_give_the_exact_total() {
    let server = RedisServer::start();
    let prefix = unique_prefix("lock_exclusion");
    let a = lock_runtime(&server.url(), &prefix, LockConfig::default()).await;
    let b = lock_runtime(&server.url(), &prefix, LockConfig::default()).await;
    let expected = TASKS * sections();

    assert_eq!(
        workload(&a, &b, true).await,
        expected,
        "no update lost under the lock"
    );
    let stats = (a.locks().stats(), b.locks().stats());
    assert_eq!(stats.0.acquired + stats.1.acquired, expected);
    assert_eq!((stats.0.lost, stats.1.lost), (0, 0));
    assert_eq!((stats.0.active, stats.1.active), (0, 0));

    let unlocked = workload(&a, &b, false).await;
    assert!(
        unlocked < expected,
        "the same workload without the lock loses updates ({unlocked} of {expected}), so the check above can fail"
    );
    a.shutdown().await;
    b.shutdown().await;
}
