//! What sets each algorithm apart: the fixed window is epoch-aligned and does not count its
//! denials; the sliding log does not record denials, so they never push the unblock time back;
//! the token bucket refills at one rate for `check`, `peek` and `state`; the sliding counter
//! never admits more than `limit` in an aligned window; GCRA admits exactly its burst at once,
//! then one per emission interval. Each runs on every topology (`Topology::ALL`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use redisx::RedisX;
use redisx::rate_limit::{Limit, RateLimitConfig};
use redisx::testing::{Deployment, Topology};
use redisx_tests::rate_limit::{epoch_ms, fresh_window, rl_runtime};
use redisx_tests::{raw_query, unique_prefix};

const MS: fn(u64) -> Duration = Duration::from_millis;

/// A runtime on a prefix of its own, with local deny off (every check reaches Redis).
async fn one(deployment: &Deployment, test: &str) -> RedisX {
    let config = RateLimitConfig::default().local_deny(false);
    let prefix = unique_prefix(&format!("{test}_{}", deployment.topology()));
    rl_runtime(&deployment.url(), &prefix, config).await
}

/// When a decision says the next unit of quota is admitted.
fn admission(d: &redisx::rate_limit::Decision, at: SystemTime) -> SystemTime {
    at + d.retry_after
}

async fn fixed_window_is_epoch_aligned_and_does_not_count_denials_on(topology: Topology) {
    const WINDOW: Duration = Duration::from_secs(1);
    eprintln!("on {topology}");
    let deployment = Deployment::start(topology);
    let rx = one(&deployment, "rl_fixed").await;
    let rl = rx.rate_limiter();
    let limit = Limit::fixed_window(3, WINDOW);
    // A whole window ahead: the run below takes a few milliseconds of it.
    fresh_window(WINDOW).await;
    let mut resets = Vec::new();
    for n in 1..=3 {
        let d = rl.check("k", &limit).await.unwrap();
        assert!(d.allowed && d.remaining == 3 - n, "{d:?}");
        resets.push(d.reset);
    }
    for _ in 0..5 {
        let d = rl.check("k", &limit).await.unwrap();
        assert!(!d.allowed, "{d:?}");
        assert_eq!(
            (d.remaining, d.current),
            (0, 3),
            "denials stay at the limit: {d:?}"
        );
        resets.push(d.reset);
    }
    let reset = resets[0];
    assert!(resets.iter().all(|r| *r == reset), "one window: {resets:?}");
    assert_eq!(
        epoch_ms(reset) % 1000,
        0,
        "the window ends on a whole second"
    );
    let p = rl.peek("k", &limit, 1).await.unwrap();
    assert_eq!(
        (p.allowed, p.current),
        (false, 3),
        "5 denials counted nothing: {p:?}"
    );
    let s = rl.state("k", &limit).await.unwrap();
    assert_eq!(s.current, 3, "{s:?}");
    // Decisions cap `current` at the limit; the stored count (`{window} {count}`) shows it too.
    let stored: String =
        raw_query(&deployment, redis::cmd("GET").arg(rl.full_key("k", &limit))).await;
    let count = stored.split(' ').nth(1).map(str::to_owned);
    assert_eq!(
        count.as_deref(),
        Some("3"),
        "the window's count holds no denial: {stored}"
    );

    // The next window starts from zero.
    let wait = reset.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(wait + MS(50)).await;
    let d = rl.check("k", &limit).await.unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!((d.remaining, d.current), (2, 1), "a fresh window: {d:?}");
    assert_eq!(d.reset, reset + WINDOW, "the next aligned window");
    rx.shutdown().await;
}

async fn sliding_log_denials_never_push_the_unblock_time_back_on(topology: Topology) {
    eprintln!("on {topology}");
    let deployment = Deployment::start(topology);
    let rx = one(&deployment, "rl_sliding_log").await;
    let rl = rx.rate_limiter();
    let limit = Limit::sliding_window(2, MS(1500));
    assert!(rl.check("k", &limit).await.unwrap().allowed);
    tokio::time::sleep(MS(500)).await;
    assert!(rl.check("k", &limit).await.unwrap().allowed);

    // Two denials some time apart: the second gives no later admission than the first.
    tokio::time::sleep(MS(200)).await;
    let (at_a, a) = (SystemTime::now(), rl.check("k", &limit).await.unwrap());
    tokio::time::sleep(MS(200)).await;
    let (at_b, b) = (SystemTime::now(), rl.check("k", &limit).await.unwrap());
    assert!(!a.allowed && !b.allowed, "{a:?} {b:?}");
    assert!(
        b.reset <= a.reset,
        "the whole quota is not pushed back: {a:?} then {b:?}"
    );
    // Measured on this side, so some ms apart; recorded denials would add 500 ms (the log
    // would have to lose both hits, not just the oldest).
    assert!(
        admission(&b, at_b) <= admission(&a, at_a) + MS(150),
        "the next admission is not pushed back: {a:?} then {b:?}"
    );

    // The oldest hit leaves 1.5 s after it came: one more is admitted then (the second hit stays
    // 500 ms longer), which a log holding the two denials (still in the window) would refuse.
    tokio::time::sleep(b.retry_after + MS(50)).await;
    let d = rl.check("k", &limit).await.unwrap();
    assert!(d.allowed, "admitted once the oldest hit left: {d:?}");
    assert_eq!(
        d.remaining, 0,
        "the second hit is still in the window: {d:?}"
    );
    rx.shutdown().await;
}

async fn token_bucket_check_peek_and_state_refill_at_one_rate_on(topology: Topology) {
    eprintln!("on {topology}");
    let deployment = Deployment::start(topology);
    let rx = one(&deployment, "rl_token_bucket").await;
    let rl = rx.rate_limiter();
    // Capacity 10, refilled at 10 per second (not the 1 per second that 10 per 10 s would be).
    let limit = Limit::token_bucket(10, Duration::from_secs(10)).refill(1, MS(100));
    let d = rl.check_cost("k", &limit, 10).await.unwrap();
    assert_eq!((d.allowed, d.remaining), (true, 0), "{d:?}");
    assert!(!rl.check("k", &limit).await.unwrap().allowed, "empty");

    // 300 ms later: about 3 tokens back at 10 per second (none at the slow rate), and far from
    // the whole 10 (which a faster rate would give).
    tokio::time::sleep(MS(300)).await;
    let s = rl.state("k", &limit).await.unwrap();
    let p = rl.peek("k", &limit, 1).await.unwrap();
    let c = rl.check("k", &limit).await.unwrap();
    assert!(
        (2..=8).contains(&s.remaining),
        "state refills at 10/s: {s:?}"
    );
    assert!(
        p.allowed && p.remaining >= s.remaining,
        "peek, at the same rate: {s:?} {p:?}"
    );
    assert!(
        c.allowed && c.remaining + 1 >= s.remaining,
        "check, at the same rate: {s:?} {c:?}"
    );
    assert!(
        p.remaining <= 8 && c.remaining <= 8,
        "not refilled faster: {p:?} {c:?}"
    );
    assert!(
        c.reset > SystemTime::now(),
        "the bucket is full again later: {c:?}"
    );
    rx.shutdown().await;
}

async fn sliding_counter_never_admits_more_than_its_limit_in_an_aligned_window_on(
    topology: Topology,
) {
    eprintln!("on {topology}");
    let deployment = Deployment::start(topology);
    let rx = one(&deployment, "rl_sliding_counter").await;
    let rl = rx.rate_limiter();
    let limit = Limit::sliding_counter(5, Duration::from_secs(1));
    // Admitted checks per aligned second, for the checks that ran within one second.
    let mut per_window: BTreeMap<u128, u64> = BTreeMap::new();
    let (mut total, mut straddling) = (0, 0);
    let end = SystemTime::now() + Duration::from_millis(3200);
    while SystemTime::now() < end {
        let before = epoch_ms(SystemTime::now());
        let d = rl.check("k", &limit).await.unwrap();
        let after = epoch_ms(SystemTime::now());
        if d.allowed {
            total += 1;
            if before / 1000 == after / 1000 {
                *per_window.entry(before / 1000).or_default() += 1;
            } else {
                straddling += 1;
            }
        }
        tokio::time::sleep(MS(10)).await;
    }
    for (second, n) in &per_window {
        assert!(*n <= 5, "{n} admitted in second {second}: {per_window:?}");
    }
    // Approximate, but it does let traffic through again in later windows.
    assert!(
        total > 5,
        "{total} admitted in 3 s ({straddling} straddling a second)"
    );
    assert!(per_window.len() >= 2, "{per_window:?}");
    rx.shutdown().await;
}

async fn gcra_admits_exactly_its_burst_at_once_on(topology: Topology) {
    eprintln!("on {topology}");
    let deployment = Deployment::start(topology);
    let rx = one(&deployment, "rl_gcra_burst").await;
    let rl = rx.rate_limiter();
    // One per 10 s, with a burst of 3.
    let limit = Limit::gcra(1, Duration::from_secs(10)).burst(3);
    for n in 1..=3 {
        let d = rl.check("k", &limit).await.unwrap();
        assert!(d.allowed, "burst hit {n}: {d:?}");
        assert_eq!((d.limit, d.remaining, d.current), (3, 3 - n, n), "{d:?}");
    }
    let d = rl.check("k", &limit).await.unwrap();
    assert!(!d.allowed, "the 4th is past the burst: {d:?}");
    assert_eq!((d.limit, d.remaining), (3, 0), "{d:?}");
    assert!(
        d.retry_after > Duration::from_secs(5) && d.retry_after <= Duration::from_secs(10),
        "one emission interval (10 s) away: {d:?}"
    );
    rx.shutdown().await;
}

async fn gcra_admits_one_more_per_emission_interval_after_the_burst_on(topology: Topology) {
    eprintln!("on {topology}");
    let deployment = Deployment::start(topology);
    let rx = one(&deployment, "rl_gcra_rate").await;
    let rl = rx.rate_limiter();
    // 1 per second, a burst of 2.
    let limit = Limit::gcra(1, Duration::from_secs(1)).burst(2);
    assert!(rl.check("k", &limit).await.unwrap().allowed);
    assert!(rl.check("k", &limit).await.unwrap().allowed);
    let denied = rl.check("k", &limit).await.unwrap();
    assert!(!denied.allowed, "{denied:?}");
    assert!(
        denied.retry_after <= Duration::from_secs(1),
        "within one interval: {denied:?}"
    );

    tokio::time::sleep(denied.retry_after + MS(50)).await;
    let d = rl.check("k", &limit).await.unwrap();
    assert!(d.allowed, "one emission interval later: {d:?}");
    let again = rl.check("k", &limit).await.unwrap();
    assert!(!again.allowed, "one, not a new burst: {again:?}");
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_log_denials_never_push_the_unblock_time_back() {
    for &topology in Topology::ALL {
        sliding_log_denials_never_push_the_unblock_time_back_on(topology).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_bucket_check_peek_and_state_refill_at_one_rate() {
    for &topology in Topology::ALL {
        token_bucket_check_peek_and_state_refill_at_one_rate_on(topology).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_counter_never_admits_more_than_its_limit_in_an_aligned_window() {
    for &topology in Topology::ALL {
        sliding_counter_never_admits_more_than_its_limit_in_an_aligned_window_on(topology).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_admits_exactly_its_burst_at_once() {
    for &topology in Topology::ALL {
        gcra_admits_exactly_its_burst_at_once_on(topology).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_admits_one_more_per_emission_interval_after_the_burst() {
    for &topology in Topology::ALL {
        gcra_admits_one_more_per_emission_interval_after_the_burst_on(topology).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_window_is_epoch_aligned_and_does_not_count_denials() {
    for &topology in Topology::ALL {
        fixed_window_is_epoch_aligned_and_does_not_count_denials_on(topology).await;
    }
}
