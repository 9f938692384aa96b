//! The local deny cache: once Redis denied a key, its repeat checks are answered in process
//! (`local == true`, no script call reaching the server, counted as `local_deny`) until the
//! denial's `retry_after` has passed, when the next check goes to Redis again. Other keys are
//! untouched, `reset` clears the entry, a smaller cost that still fits is not refused, a local
//! denial of several limits is counted under the limit that decided, and with
//! `.local_deny(false)` every check reaches Redis.
//!
//! The suite runs on a standalone server and on the cluster. The script calls are counted over
//! the whole deployment, so no other test may send any meanwhile: each standalone test has a
//! server of its own, and the cluster tests, which share the binary's cluster, take turns.

use std::time::Duration;

use redisx::RedisX;
use redisx::rate_limit::{Algorithm, Decision, Limit, RateLimitConfig};
use redisx::testing::{Deployment, Topology};
use redisx_tests::Nodes;
use redisx_tests::rate_limit::{fresh_window, requests, rl_runtime};
use redisx_tests::unique_prefix;
use tokio::sync::{Mutex, MutexGuard};

/// The fixed window of the tests: long enough for 50 checks, short enough to wait out.
const WINDOW: Duration = Duration::from_secs(2);

/// How many repeat checks the tests send after the first denial.
const REPEATS: u64 = 50;

/// The turn of a cluster test: held for the whole test.
static CLUSTER_TURN: Mutex<()> = Mutex::const_new(());

/// A deployment whose script calls are the test's own while it lives: a server of its own,
/// or the shared cluster once the cluster tests before it are done.
struct Quiet {
    deployment: Deployment,
    _turn: Option<MutexGuard<'static, ()>>,
}

impl Quiet {
    /// Every script call the deployment ran.
    async fn script_calls(&self) -> u64 {
        Nodes::of(&self.deployment).await.script_calls().await
    }
}

/// A quiet deployment of `topology`, and a runtime on it with `config`.
async fn setup(topology: Topology, test: &str, config: RateLimitConfig) -> (Quiet, RedisX) {
    let (deployment, turn) = if topology == Topology::Standalone {
        (Deployment::start_owned(topology), None)
    } else {
        let turn = CLUSTER_TURN.lock().await;
        (Deployment::start(topology), Some(turn))
    };
    let rx = rl_runtime(&deployment.url(), &unique_prefix(test), config).await;
    let quiet = Quiet {
        deployment,
        _turn: turn,
    };
    (quiet, rx)
}

/// Checks `key` until Redis denies it: `limit.limit()` admitted, then the denial, returned.
async fn exhaust(rx: &RedisX, key: &str, limit: &Limit) -> Decision {
    for n in 0..limit.limit() {
        let d = rx.rate_limiter().check(key, limit).await.unwrap();
        assert!(d.allowed && !d.local, "check {n}: {d:?}");
    }
    let d = rx.rate_limiter().check(key, limit).await.unwrap();
    assert!(!d.allowed, "{d:?}");
    assert!(!d.local, "the first denial comes from Redis: {d:?}");
    d
}

/// Sends `REPEATS` checks of `key`, all denied; returns how many were answered locally.
async fn repeats(rx: &RedisX, key: &str, limit: &Limit) -> u64 {
    let mut local = 0;
    for _ in 0..REPEATS {
        let d = rx.rate_limiter().check(key, limit).await.unwrap();
        assert!(!d.allowed, "{d:?}");
        assert!(
            d.retry_after > Duration::ZERO && d.retry_after <= WINDOW,
            "{d:?}"
        );
        assert_eq!((d.remaining, d.current), (0, limit.limit()), "{d:?}");
        local += u64::from(d.local);
    }
    local
}

async fn repeat_denials_are_answered_locally_until_retry_after(topology: Topology) {
    let (quiet, rx) = setup(topology, "rl_local_deny", RateLimitConfig::default()).await;
    let limit = Limit::fixed_window(3, WINDOW);
    fresh_window(WINDOW).await;
    let denial = exhaust(&rx, "user:1", &limit).await;
    let sent = quiet.script_calls().await;
    assert!(
        sent >= 4,
        "the checks so far show in the server's count ({sent})"
    );

    assert_eq!(
        repeats(&rx, "user:1", &limit).await,
        REPEATS,
        "all answered locally"
    );
    assert_eq!(
        quiet.script_calls().await,
        sent,
        "none of them reached Redis"
    );
    let alg = Algorithm::FixedWindow;
    assert_eq!(requests(&rx, alg, "local_deny"), REPEATS);
    assert_eq!(
        (requests(&rx, alg, "allowed"), requests(&rx, alg, "denied")),
        (3, 1)
    );

    // Another key is not denied by this one's entry.
    let other = rx.rate_limiter().check("user:2", &limit).await.unwrap();
    assert!(other.allowed && !other.local, "{other:?}");

    // Past retry_after (the window's end), the next check asks Redis again: a new window.
    tokio::time::sleep(denial.retry_after + Duration::from_millis(50)).await;
    let sent = quiet.script_calls().await;
    let d = rx.rate_limiter().check("user:1", &limit).await.unwrap();
    assert!(d.allowed && !d.local, "{d:?}");
    assert_eq!(d.remaining, 2, "{d:?}");
    assert_eq!(quiet.script_calls().await, sent + 1, "it went to Redis");
    rx.shutdown().await;
}

async fn without_local_deny_every_check_reaches_redis(topology: Topology) {
    let config = RateLimitConfig::default().local_deny(false);
    let (quiet, rx) = setup(topology, "rl_no_local_deny", config).await;
    let limit = Limit::fixed_window(3, WINDOW);
    fresh_window(WINDOW).await;
    exhaust(&rx, "user:1", &limit).await;
    let sent = quiet.script_calls().await;

    assert_eq!(
        repeats(&rx, "user:1", &limit).await,
        0,
        "none answered locally"
    );
    assert_eq!(
        quiet.script_calls().await,
        sent + REPEATS,
        "every one reached Redis"
    );
    let alg = Algorithm::FixedWindow;
    assert_eq!(requests(&rx, alg, "denied"), REPEATS + 1);
    assert_eq!(requests(&rx, alg, "local_deny"), 0);
    rx.shutdown().await;
}

async fn reset_clears_the_local_deny_entry(topology: Topology) {
    let (_quiet, rx) = setup(topology, "rl_local_reset", RateLimitConfig::default()).await;
    let rl = rx.rate_limiter();
    let limit = Limit::fixed_window(3, Duration::from_secs(3600));
    exhaust(&rx, "user:1", &limit).await;
    let d = rl.check("user:1", &limit).await.unwrap();
    assert!(!d.allowed && d.local, "denied locally: {d:?}");

    rl.reset("user:1", &limit).await.unwrap();
    let d = rl.check("user:1", &limit).await.unwrap();
    assert!(d.allowed && !d.local, "reset forgot the denial: {d:?}");
    assert_eq!(d.remaining, 2, "{d:?}");
    rx.shutdown().await;
}

async fn every_algorithm_denies_locally_after_a_denial(topology: Topology) {
    let (quiet, rx) = setup(topology, "rl_local_all", RateLimitConfig::default()).await;
    let rl = rx.rate_limiter();
    for alg in Algorithm::ALL {
        let limit = Limit::new(alg, 2, Duration::from_secs(3600));
        exhaust(&rx, "user:1", &limit).await;
        let sent = quiet.script_calls().await;
        let d = rl.check("user:1", &limit).await.unwrap();
        assert!(!d.allowed && d.local, "{alg:?}: {d:?}");
        assert_eq!(quiet.script_calls().await, sent, "{alg:?}: no round trip");
        assert_eq!(requests(&rx, alg, "local_deny"), 1, "{alg:?}");
    }
    rx.shutdown().await;
}

async fn a_smaller_cost_that_still_fits_is_not_denied_locally(topology: Topology) {
    let (_quiet, rx) = setup(topology, "rl_local_cost", RateLimitConfig::default()).await;
    let rl = rx.rate_limiter();
    let limit = Limit::fixed_window(5, Duration::from_secs(3600));
    assert!(rl.check_cost("user:1", &limit, 4).await.unwrap().allowed);
    // 3 do not fit into the 1 left...
    let big = rl.check_cost("user:1", &limit, 3).await.unwrap();
    assert!(!big.allowed && !big.local, "{big:?}");
    // ...but 1 does, and Redis would admit it: the denial of 3 must not refuse it.
    let d = rl.check("user:1", &limit).await.unwrap();
    assert!(d.allowed, "the last unit is still there: {d:?}");
    assert_eq!(d.remaining, 0, "{d:?}");
    rx.shutdown().await;
}

async fn a_multi_limit_denial_is_counted_under_the_deciding_limit_locally_too(topology: Topology) {
    let (_quiet, rx) = setup(topology, "rl_local_multi", RateLimitConfig::default()).await;
    let rl = rx.rate_limiter();
    let hour = Duration::from_secs(3600);
    // The second limit (a sliding log) is the one that denies.
    let limits = [Limit::fixed_window(5, hour), Limit::sliding_window(2, hour)];
    for _ in 0..2 {
        assert!(rl.check_all("user:1", &limits, 1).await.unwrap().allowed);
    }
    let d = rl.check_all("user:1", &limits, 1).await.unwrap();
    assert!(!d.allowed && !d.local && d.limit == 2, "{d:?}");
    let d = rl.check_all("user:1", &limits, 1).await.unwrap();
    assert!(!d.allowed && d.local && d.limit == 2, "{d:?}");
    // Both denials, from Redis and from the cache, under the algorithm that decided.
    let (sliding, fixed) = (Algorithm::SlidingWindow, Algorithm::FixedWindow);
    assert_eq!(requests(&rx, sliding, "denied"), 1);
    assert_eq!(
        requests(&rx, sliding, "local_deny"),
        1,
        "{}",
        rx.metrics_text()
    );
    assert_eq!(requests(&rx, fixed, "local_deny"), 0);
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    repeat_denials_are_answered_locally_until_retry_after,
    without_local_deny_every_check_reaches_redis,
    reset_clears_the_local_deny_entry,
    every_algorithm_denies_locally_after_a_denial,
    a_smaller_cost_that_still_fits_is_not_denied_locally,
    a_multi_limit_denial_is_counted_under_the_deciding_limit_locally_too,
);
