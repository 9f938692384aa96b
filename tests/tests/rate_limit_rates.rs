//! Rates against theory over a measured interval: a token bucket refills, and GCRA emits, within
//! one point of `rate × elapsed`; the sliding window counter stays within its documented bound
//! (at most the limit per aligned window, at most twice the limit in any window-long interval)
//! under steady traffic.
//!
//! The interval is measured on the client from the reply that emptied the quota to the first
//! check that drains it again; the server's interval differs by less than a round trip, far
//! below one point at the rates used (10 per second: one point per 100 ms).
//!
//! The suite runs on a standalone server and on the cluster.

use std::time::{Duration, Instant};

use redisx::RedisX;
use redisx::rate_limit::Limit;
use redisx::testing::{Deployment, Topology};
use redisx_tests::rate_limit::test_runtime;

/// Points admitted by back-to-back checks of `limit` on `key` until the first denial.
async fn drain(rx: &RedisX, key: &str, limit: &Limit) -> u64 {
    let mut n = 0;
    while rx.rate_limiter().check(key, limit).await.unwrap().allowed {
        n += 1;
        assert!(n < 1000, "the limit never denies");
    }
    n
}

/// Empties `limit` on `key`, waits `pause`, then drains it: the points admitted after the
/// pause and the measured interval.
async fn refilled(rx: &RedisX, key: &str, limit: &Limit, pause: Duration) -> (u64, Duration) {
    drain(rx, key, limit).await;
    let emptied = Instant::now();
    tokio::time::sleep(pause).await;
    let elapsed = emptied.elapsed();
    (drain(rx, key, limit).await, elapsed)
}

/// Asserts `admitted` is within one point of `per_second × elapsed`.
#[allow(clippy::cast_precision_loss, reason = "small counts")]
fn within_one_point(admitted: u64, per_second: f64, elapsed: Duration, what: &str) {
    let theory = per_second * elapsed.as_secs_f64();
    assert!(
        (admitted as f64 - theory).abs() <= 1.0,
        "{what}: {admitted} admitted after {elapsed:?}, theory {theory:.2}"
    );
}

async fn a_token_bucket_refills_at_its_rate(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = test_runtime(&deployment, "rl_token_bucket_rate", |b| b).await;
    let limit = Limit::token_bucket(10, Duration::from_secs(1));
    for pause in [Duration::from_millis(350), Duration::from_millis(620)] {
        let (n, elapsed) = refilled(&rx, "tb", &limit, pause).await;
        within_one_point(n, 10.0, elapsed, "token bucket, 10/s");
    }
    // A refill given apart from the window: 5 per second.
    let slow = Limit::token_bucket(10, Duration::from_secs(1)).refill(5, Duration::from_secs(1));
    let (n, elapsed) = refilled(&rx, "tb-slow", &slow, Duration::from_millis(800)).await;
    within_one_point(n, 5.0, elapsed, "token bucket, refill 5/s");
    rx.shutdown().await;
}

async fn gcra_emits_at_its_rate_after_its_burst(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = test_runtime(&deployment, "rl_gcra_rate", |b| b).await;
    let limit = Limit::gcra(10, Duration::from_secs(1));
    assert_eq!(drain(&rx, "g", &limit).await, 10, "a burst of the limit");
    for pause in [Duration::from_millis(450), Duration::from_millis(730)] {
        let (n, elapsed) = refilled(&rx, "g", &limit, pause).await;
        within_one_point(n, 10.0, elapsed, "gcra, 10/s");
    }
    let small_burst = Limit::gcra(10, Duration::from_secs(1)).burst(2);
    assert_eq!(drain(&rx, "g2", &small_burst).await, 2);
    rx.shutdown().await;
}

async fn the_sliding_counter_stays_within_its_bound_under_steady_traffic(topology: Topology) {
    const LIMIT: u64 = 10;
    let deployment = Deployment::start(topology);
    let rx = test_runtime(&deployment, "rl_sliding_counter_bound", |b| b).await;
    let window = Duration::from_secs(1);
    let limit = Limit::sliding_counter(LIMIT, window);
    let start = Instant::now();
    let mut admitted: Vec<Duration> = Vec::new();
    while start.elapsed() < Duration::from_millis(3200) {
        if rx
            .rate_limiter()
            .check("steady", &limit)
            .await
            .unwrap()
            .allowed
        {
            admitted.push(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Any window-long interval: at most twice the limit (the documented worst case).
    for (i, t) in admitted.iter().enumerate() {
        let inside = admitted[i..]
            .iter()
            .take_while(|u| **u < *t + window)
            .count();
        assert!(
            inside as u64 <= 2 * LIMIT,
            "{inside} in the second after {t:?}"
        );
    }
    // Steady traffic is estimated well: about the limit per second over the run.
    let total = admitted.len() as u64;
    assert!(
        (2 * LIMIT..=4 * LIMIT + 2).contains(&total),
        "{total} admitted in 3.2 s at a limit of {LIMIT}/s"
    );
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    a_token_bucket_refills_at_its_rate,
    gcra_emits_at_its_rate_after_its_burst,
    the_sliding_counter_stays_within_its_bound_under_steady_traffic,
);
