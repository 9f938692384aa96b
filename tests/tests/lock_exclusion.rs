//! Mutual exclusion: critical sections doing a non-atomic GET-then-SET increment, from tasks
//! spread over two OS processes with two runtimes each (instances of one service), give the
//! exact total under the lock; the same workload without the lock loses updates, so the check
//! can fail. Both run on a standalone server and on the shared 3-master cluster.
//!
//! `REDISX_LOCK_SECTIONS` sets the sections per task (default 125: 2,000 sections in all; 8
//! tasks per process).

use std::time::Duration;

use redisx::RedisX;
use redisx::lock::{LockConfig, LockOptions, RetryStrategy};
use redisx::testing::{ChildProcess, Deployment, Topology, in_scenario, signal_ready};
use redisx_tests::lock::lock_runtime;
use redisx_tests::unique_prefix;

/// Tasks per process, spread over its two runtimes.
const TASKS: u64 = 8;

/// The environment variables that give the child process its deployment's URL and prefix.
const URL_ENV: &str = "REDISX_LOCK_TEST_URL";
const PREFIX_ENV: &str = "REDISX_LOCK_TEST_PREFIX";

/// Increments per task: 125 by default, so 2,000 sections in all (2 processes × 8 tasks);
/// `REDISX_LOCK_SECTIONS=625` gives 10,000.
fn sections() -> u64 {
    std::env::var("REDISX_LOCK_SECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(125)
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

/// Runs `TASKS` tasks, alternately on `a` and `b`, each doing `sections()` increments of
/// `counter` (a full key), with the lock or without.
async fn workload(a: &RedisX, b: &RedisX, counter: &str, locked: bool) {
    // A 1–5 ms fixed retry (3 ms with full jitter), for as long as it takes.
    let opts = LockOptions::new()
        .retry(RetryStrategy::Fixed(Duration::from_millis(3)))
        .wait(Duration::from_secs(300));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let rx = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (counter, opts) = (counter.to_owned(), opts.clone());
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
}

async fn read(rx: &RedisX, key: &str) -> u64 {
    let n: Option<u64> = rx.client().query(redis::cmd("GET").arg(key)).await.unwrap();
    n.unwrap_or(0)
}

/// Two runtimes on `url` (any topology's) under `prefix`: two instances of one service.
async fn pair(url: &str, prefix: &str) -> (RedisX, RedisX) {
    let a = lock_runtime(url, prefix, LockConfig::default()).await;
    let b = lock_runtime(url, prefix, LockConfig::default()).await;
    (a, b)
}

/// The child process's half of the locked workload: waits for the parent's go (a key), then
/// runs the same workload on the same counter.
#[test]
#[ignore = "scenario: run in a child process by locked_increments_from_two_processes_give_the_exact_total"]
fn exclusion_worker() {
    if !in_scenario("exclusion_worker") {
        return;
    }
    let url = std::env::var(URL_ENV).unwrap();
    let prefix = std::env::var(PREFIX_ENV).unwrap();
    let rt = redisx_tests::scenario_runtime();
    rt.block_on(async {
        let (a, b) = pair(&url, &prefix).await;
        signal_ready();
        let go = format!("{prefix}go");
        while read(&a, &go).await == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        workload(&a, &b, &format!("{prefix}counter"), true).await;
        assert_eq!(a.locks().stats().lost + b.locks().stats().lost, 0);
        a.shutdown().await;
        b.shutdown().await;
    });
}

async fn locked_increments_from_two_processes_give_the_exact_total(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("lock_exclusion");
    let (a, b) = pair(&deployment.url(), &prefix).await;
    let child = ChildProcess::scenario("exclusion_worker")
        .env(URL_ENV, deployment.url())
        .env(PREFIX_ENV, &prefix)
        .start();
    let () = a
        .client()
        .query(redis::cmd("SET").arg(format!("{prefix}go")).arg(1))
        .await
        .unwrap();
    let counter = format!("{prefix}counter");
    workload(&a, &b, &counter, true).await;
    let (exit, output) = tokio::task::spawn_blocking(move || {
        let mut child = child;
        let exit = child.wait_exit(Duration::from_secs(300));
        (exit, child.output())
    })
    .await
    .unwrap();
    assert!(
        exit.unwrap().success(),
        "the child's half failed:\n{output}"
    );

    let expected = 2 * TASKS * sections();
    assert_eq!(
        read(&a, &counter).await,
        expected,
        "no update lost under the lock on {topology}"
    );
    let stats = (a.locks().stats(), b.locks().stats());
    assert_eq!(stats.0.acquired + stats.1.acquired, TASKS * sections());
    assert_eq!((stats.0.lost, stats.1.lost), (0, 0));
    assert_eq!((stats.0.active, stats.1.active), (0, 0));
    a.shutdown().await;
    b.shutdown().await;
}

async fn the_same_increments_without_the_lock_lose_updates(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("lock_no_exclusion");
    let (a, b) = pair(&deployment.url(), &prefix).await;
    let counter = format!("{prefix}counter");
    workload(&a, &b, &counter, false).await;
    let total = read(&a, &counter).await;
    let expected = TASKS * sections();
    assert!(
        total < expected,
        "without the lock on {topology}, updates are lost ({total} of {expected}), so the locked check can fail"
    );
    a.shutdown().await;
    b.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 4]
    locked_increments_from_two_processes_give_the_exact_total,
    the_same_increments_without_the_lock_lose_updates,
);
