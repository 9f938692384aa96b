//! Retries against a held lock: the retry count and the `wait` budget per strategy (attempts
//! counted from the error and from the scripts sent, no timing asserted), and `try_acquire`'s
//! single attempt. Each test runs on a standalone server and on the shared 3-master cluster.

use std::time::Duration;

use redisx::lock::{LockConfig, LockOptions, RetryStrategy};
use redisx::testing::{Deployment, Topology};
use redisx::{ErrorCode, RedisX};
use redisx_tests::lock::{lock_runtime, scripts_sent};
use redisx_tests::unique_prefix;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// Acquires `key` (held elsewhere) with `opts`: the attempts the timeout error reports, checked
/// against the scripts the runtime sent.
async fn attempts(rx: &RedisX, key: &str, opts: &LockOptions) -> u64 {
    let sent = scripts_sent(rx);
    let err = rx.locks().acquire(key, opts).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::LockAcquisitionTimeout, "{err}");
    let n: u64 = err.context_value("attempts").unwrap().parse().unwrap();
    assert_eq!(scripts_sent(rx) - sent, n, "one script per attempt");
    n
}

async fn a_retry_count_makes_one_attempt_more_than_the_retries_with_every_strategy(
    topology: Topology,
) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("lock_retries");
    let holder = lock_runtime(&deployment.url(), &prefix, LockConfig::default()).await;
    // Short delays so the test stays quick; the defaults' count is 3 retries.
    let rx = lock_runtime(
        &deployment.url(),
        &prefix,
        LockConfig::default().retry(RetryStrategy::Exponential(MS(1), MS(8))),
    )
    .await;
    let _held = holder
        .locks()
        .acquire("busy", &LockOptions::new())
        .await
        .unwrap();

    assert_eq!(
        attempts(&rx, "busy", &LockOptions::new()).await,
        4,
        "the default 3 retries"
    );
    for (strategy, retries) in [
        (RetryStrategy::Fixed(MS(2)), 5),
        (RetryStrategy::Linear(MS(1), MS(4)), 6),
        (RetryStrategy::Exponential(MS(1), MS(16)), 2),
    ] {
        for jitter in [true, false] {
            let opts = LockOptions::new()
                .retry(strategy)
                .retries(retries)
                .jitter(jitter);
            assert_eq!(
                attempts(&rx, "busy", &opts).await,
                u64::from(retries) + 1,
                "{strategy:?}, jitter {jitter}"
            );
        }
    }
    assert_eq!(
        attempts(&rx, "busy", &LockOptions::new().retries(0)).await,
        1
    );
    let stats = rx.locks().stats();
    assert_eq!((stats.timeouts, stats.acquired), (8, 0));
    holder.shutdown().await;
    rx.shutdown().await;
}

async fn a_wait_budget_stops_before_a_sleep_would_pass_it(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("lock_wait");
    let holder = lock_runtime(&deployment.url(), &prefix, LockConfig::default()).await;
    let rx = lock_runtime(
        &deployment.url(),
        &prefix,
        LockConfig::default().jitter(false),
    )
    .await;
    let _held = holder
        .locks()
        .acquire("busy", &LockOptions::new())
        .await
        .unwrap();

    // Sleeps of 100, 200, 400 ms: attempts at 0, 100, 300 and 700 ms at the earliest; the next
    // sleep (400 ms) would pass the budget, so there are at most four (fewer if Redis is slow).
    let exp = LockOptions::new()
        .retry(RetryStrategy::Exponential(MS(100), MS(400)))
        .wait(MS(1000));
    let n = attempts(&rx, "busy", &exp).await;
    assert!((2..=4).contains(&n), "{n} attempts");
    // A fixed 50 ms within 500 ms: at most 1 + 500 / 50, and more than the default count
    // (the budget, not the retry count, decides).
    let fixed = LockOptions::new()
        .retry(RetryStrategy::Fixed(MS(50)))
        .wait(MS(500));
    let n = attempts(&rx, "busy", &fixed).await;
    assert!((5..=11).contains(&n), "{n} attempts");
    // A budget shorter than the first sleep: one attempt.
    let short = LockOptions::new()
        .retry(RetryStrategy::Fixed(MS(500)))
        .wait(MS(100));
    assert_eq!(attempts(&rx, "busy", &short).await, 1);
    // A linear strategy, from the config's budget.
    let cfg = lock_runtime(
        &deployment.url(),
        &prefix,
        LockConfig::default()
            .jitter(false)
            .retry(RetryStrategy::Linear(MS(100), MS(150)))
            .wait(MS(400)),
    )
    .await;
    let n = attempts(&cfg, "busy", &LockOptions::new()).await;
    assert!(
        (2..=3).contains(&n),
        "sleeps of 100 and 150 ms fit, a third would not: {n}"
    );
    for rx in [holder, rx, cfg] {
        rx.shutdown().await;
    }
}

async fn try_acquire_makes_exactly_one_attempt(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("lock_try");
    let a = lock_runtime(&deployment.url(), &prefix, LockConfig::default()).await;
    let b = lock_runtime(&deployment.url(), &prefix, LockConfig::default()).await;
    let held = a
        .locks()
        .try_acquire("cron", &LockOptions::new())
        .await
        .unwrap();
    let held = held.expect("a free lock is taken at the first attempt");

    let sent = scripts_sent(&b);
    let opts = LockOptions::new().retries(10).wait(Duration::from_secs(5));
    assert!(
        b.locks()
            .try_acquire("cron", &opts)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        scripts_sent(&b) - sent,
        1,
        "one attempt, whatever the retry options"
    );
    let stats = b.locks().stats();
    assert_eq!((stats.busy, stats.timeouts, stats.acquired), (1, 0, 0));

    held.release().await.unwrap();
    let again = b
        .locks()
        .try_acquire("cron", &LockOptions::new())
        .await
        .unwrap();
    assert!(again.is_some(), "free again once released");
    a.shutdown().await;
    b.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_retry_count_makes_one_attempt_more_than_the_retries_with_every_strategy,
    a_wait_budget_stops_before_a_sleep_would_pass_it,
    try_acquire_makes_exactly_one_attempt,
);
