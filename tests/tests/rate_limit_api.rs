//! What every rate-limit algorithm shares: exactly `limit` admitted and then a denial, costs
//! above one (a denial consuming nothing), peeks and state reads that consume nothing, `reset`
//! (a whole quota again, every key the check wrote deleted), the key layout and the TTL of every
//! key, multi-limit checks and named policies (all or nothing), and bad input refused before
//! Redis.

use std::time::{Duration, SystemTime};

use redisx::rate_limit::{Algorithm, Decision, Limit, RateLimitConfig};
use redisx::testing::{Deployment, Topology};
use redisx::{Error, ErrorCode, RedisX};
use redisx_tests::cache::pttl;
use redisx_tests::rate_limit::{keys_under, rl_runtime};
use redisx_tests::unique_prefix;

/// Long enough that nothing refills, slides or expires during a test.
const HOUR: Duration = Duration::from_secs(3600);

/// A runtime on a prefix of its own, with local deny off (every check reaches Redis).
async fn one(deployment: &Deployment, test: &str, config: RateLimitConfig) -> (RedisX, String) {
    let prefix = unique_prefix(test);
    let rx = rl_runtime(&deployment.url(), &prefix, config.local_deny(false)).await;
    (rx, prefix)
}

/// 5 per hour of `algorithm`.
fn five(algorithm: Algorithm) -> Limit {
    Limit::new(algorithm, 5, HOUR)
}

/// The fields of a decision that do not depend on when it was made:
/// `(allowed, limit, remaining, current)`.
fn counts(d: &Decision) -> (bool, u64, u64, u64) {
    (d.allowed, d.limit, d.remaining, d.current)
}

/// The error of `r`, which must have failed.
fn error_of<T: std::fmt::Debug>(r: redisx::Result<T>) -> Error {
    r.expect_err("expected an error")
}

async fn every_algorithm_admits_exactly_its_limit_then_denies(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, _) = one(&deployment, "rl_exact_limit", RateLimitConfig::default()).await;
    let rl = rx.rate_limiter();
    // One key for all algorithms: each has its own state (the algorithm is in the key).
    for alg in Algorithm::ALL {
        let limit = five(alg);
        for n in 1..=5 {
            let before = SystemTime::now();
            let d = rl.check("user:1", &limit).await.unwrap();
            assert_eq!(counts(&d), (true, 5, 5 - n, n), "{alg:?} check {n}: {d:?}");
            assert_eq!(d.retry_after, Duration::ZERO, "{alg:?}: allowed, no wait");
            assert!(!d.local, "{alg:?}: answered by Redis");
            assert!(
                d.reset > before,
                "{alg:?}: the quota is whole again later: {d:?}"
            );
        }
        let d = rl.check("user:1", &limit).await.unwrap();
        assert_eq!(
            counts(&d),
            (false, 5, 0, 5),
            "{alg:?}: the 6th is denied: {d:?}"
        );
        assert!(
            // The sliding counter may wait into the next aligned window.
            d.retry_after > Duration::ZERO && d.retry_after <= 2 * HOUR,
            "{alg:?}: a denial says when to retry: {d:?}"
        );
    }
    rx.shutdown().await;
}

async fn a_check_can_cost_more_than_one_and_a_denial_consumes_nothing(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, _) = one(&deployment, "rl_cost", RateLimitConfig::default()).await;
    let rl = rx.rate_limiter();
    for alg in Algorithm::ALL {
        let limit = five(alg);
        let d = rl.check_cost("k", &limit, 3).await.unwrap();
        assert_eq!(
            counts(&d),
            (true, 5, 2, 3),
            "{alg:?}: cost 3 of 5 leaves 2: {d:?}"
        );
        // 3 more do not fit into the 2 left: denied, and nothing taken...
        let d = rl.check_cost("k", &limit, 3).await.unwrap();
        assert_eq!(counts(&d), (false, 5, 2, 3), "{alg:?}: {d:?}");
        assert!(d.retry_after > Duration::ZERO, "{alg:?}: {d:?}");
        // ...so the 2 left are still there.
        let d = rl.check_cost("k", &limit, 2).await.unwrap();
        assert_eq!(
            counts(&d),
            (true, 5, 0, 5),
            "{alg:?}: the denial took nothing: {d:?}"
        );
        assert!(!rl.check("k", &limit).await.unwrap().allowed, "{alg:?}");
    }
    rx.shutdown().await;
}

async fn peeks_and_state_consume_nothing_and_agree_with_the_next_check(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, prefix) = one(&deployment, "rl_peek", RateLimitConfig::default()).await;
    let mut raw = deployment.raw_connection().await;
    let rl = rx.rate_limiter();
    for alg in Algorithm::ALL {
        let limit = five(alg);
        // An untouched key: a whole quota, and reading it writes nothing.
        let fresh = rl.state("untouched", &limit).await.unwrap();
        assert_eq!(counts(&fresh), (true, 5, 5, 0), "{alg:?}: {fresh:?}");
        // A peek's `remaining` is what is left now, before the cost.
        let p = rl.peek("untouched", &limit, 1).await.unwrap();
        assert_eq!(counts(&p), (true, 5, 5, 0), "{alg:?}: {p:?}");
        assert_eq!(
            keys_under(&mut raw, &prefix).await,
            Vec::<String>::new(),
            "{alg:?}"
        );

        for _ in 0..2 {
            assert!(rl.check("k", &limit).await.unwrap().allowed);
        }
        let s1 = rl.state("k", &limit).await.unwrap();
        let s2 = rl.state("k", &limit).await.unwrap();
        assert_eq!(counts(&s1), (true, 5, 3, 2), "{alg:?}: {s1:?}");
        assert_eq!(counts(&s1), counts(&s2), "{alg:?}: two state reads agree");
        let p1 = rl.peek("k", &limit, 1).await.unwrap();
        let p2 = rl.peek("k", &limit, 1).await.unwrap();
        assert_eq!(counts(&p1), counts(&p2), "{alg:?}: two peeks agree");
        // Too much to fit: a peek says no, and takes nothing either.
        let big = rl.peek("k", &limit, 4).await.unwrap();
        assert!(
            !big.allowed && big.retry_after > Duration::ZERO,
            "{alg:?}: {big:?}"
        );
        assert_eq!(counts(&p1), (true, 5, 3, 2), "{alg:?}: {p1:?}");
        let d = rl.check("k", &limit).await.unwrap();
        assert_eq!(
            counts(&d),
            (true, 5, 2, 3),
            "{alg:?}: the peeks took nothing: {d:?}"
        );
        rl.reset("k", &limit).await.unwrap();
    }
    rx.shutdown().await;
}

async fn reset_makes_the_quota_whole_and_deletes_every_key_the_check_wrote(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, prefix) = one(&deployment, "rl_reset", RateLimitConfig::default()).await;
    let mut raw = deployment.raw_connection().await;
    let rl = rx.rate_limiter();
    for alg in Algorithm::ALL {
        let limit = five(alg);
        for _ in 0..6 {
            rl.check("user:1", &limit).await.unwrap();
        }
        assert!(
            !rl.check("user:1", &limit).await.unwrap().allowed,
            "{alg:?}"
        );
        assert!(
            !keys_under(&mut raw, &prefix).await.is_empty(),
            "{alg:?}: the checks wrote state"
        );
        rl.reset("user:1", &limit).await.unwrap();
        assert_eq!(
            keys_under(&mut raw, &prefix).await,
            Vec::<String>::new(),
            "{alg:?}: reset deletes every key the checks wrote"
        );
        let d = rl.check("user:1", &limit).await.unwrap();
        assert_eq!(
            counts(&d),
            (true, 5, 4, 1),
            "{alg:?}: a whole quota again: {d:?}"
        );
        rl.reset("user:1", &limit).await.unwrap();
    }
    rx.shutdown().await;
}

async fn every_key_a_check_writes_has_a_ttl(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, prefix) = one(&deployment, "rl_ttl", RateLimitConfig::default()).await;
    let mut raw = deployment.raw_connection().await;
    let rl = rx.rate_limiter();
    for alg in Algorithm::ALL {
        // Allowed and denied checks alike.
        let limit = Limit::new(alg, 2, HOUR);
        for _ in 0..3 {
            rl.check("user:1", &limit).await.unwrap();
        }
        let ttl = pttl(&mut raw, &rl.full_key("user:1", &limit)).await;
        assert!(ttl > 0, "{alg:?}: the check's key has a TTL ({ttl})");
    }
    let keys = keys_under(&mut raw, &prefix).await;
    assert!(keys.len() >= Algorithm::ALL.len(), "{keys:?}");
    for key in keys {
        let ttl = pttl(&mut raw, &key).await;
        assert!(ttl > 0, "{key} has a TTL ({ttl})");
    }
    rx.shutdown().await;
}

async fn keys_name_the_algorithm_limit_and_window_so_limits_are_independent(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, prefix) = one(&deployment, "rl_layout", RateLimitConfig::default()).await;
    let rl = rx.rate_limiter();
    let limit = Limit::fixed_window(5, Duration::from_secs(60));
    assert_eq!(
        rl.full_key("user:1", &limit),
        format!("{prefix}rl:fixed_window:5/60s:{{user:1}}")
    );
    for alg in Algorithm::ALL {
        let key = rl.full_key("user:1", &Limit::new(alg, 3, Duration::from_millis(1500)));
        assert_eq!(
            key,
            format!("{prefix}rl:{}:3/1500ms:{{user:1}}", alg.as_str())
        );
    }
    // A limit's parameter is part of its key too.
    assert_eq!(
        rl.full_key("user:1", &Limit::gcra(5, Duration::from_secs(1)).burst(2)),
        format!("{prefix}rl:gcra:5/1s:b2:{{user:1}}")
    );
    // Another window on the same key is another limit.
    let (hourly, daily) = (
        Limit::fixed_window(1, HOUR),
        Limit::fixed_window(1, 24 * HOUR),
    );
    assert!(rl.check("user:1", &hourly).await.unwrap().allowed);
    assert!(!rl.check("user:1", &hourly).await.unwrap().allowed);
    assert!(rl.check("user:1", &daily).await.unwrap().allowed);
    assert!(
        rl.check("user:2", &hourly).await.unwrap().allowed,
        "another key"
    );
    rx.shutdown().await;
}

/// Checks `limits` on `key` through `check`, three times: two admitted, the third denied by
/// the limit of 2, whichever position it has.
async fn two_then_denied<F, Fut>(mut check: F, denying_first: bool)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redisx::Result<Decision>>,
{
    let first = check().await.unwrap();
    assert_eq!(
        counts(&first),
        (true, 2, 1, 1),
        "the least remaining: {first:?}"
    );
    let second = check().await.unwrap();
    assert_eq!(counts(&second), (true, 2, 0, 2), "{second:?}");
    let third = check().await.unwrap();
    assert_eq!(
        counts(&third),
        (false, 2, 0, 2),
        "the denying limit (first: {denying_first}) is the answer: {third:?}"
    );
    assert!(third.retry_after > Duration::ZERO, "{third:?}");
}

async fn several_limits_are_all_or_nothing_in_either_order(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, _) = one(&deployment, "rl_multi", RateLimitConfig::default()).await;
    let rl = rx.rate_limiter();
    let (tight, loose) = (Limit::fixed_window(2, HOUR), Limit::sliding_window(5, HOUR));
    // The tight limit first, then last: the loose one must not be charged by the denial.
    for (key, limits) in [
        ("ip:1", [tight.clone(), loose.clone()]),
        ("ip:2", [loose.clone(), tight.clone()]),
    ] {
        let denying_first = limits[0].limit() == 2;
        two_then_denied(|| rl.check_all(key, &limits, 1), denying_first).await;
        let s = rl.state(key, &loose).await.unwrap();
        assert_eq!(
            counts(&s),
            (true, 5, 3, 2),
            "{key}: nothing consumed on the deny"
        );
        let s = rl.state(key, &tight).await.unwrap();
        assert_eq!(counts(&s), (true, 2, 0, 2), "{key}: {s:?}");
    }
    rx.shutdown().await;
}

async fn a_named_policy_checks_its_limits_all_or_nothing(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (tight, loose) = (Limit::fixed_window(2, HOUR), Limit::sliding_window(5, HOUR));
    let config = RateLimitConfig::default().policy("login", [loose.clone(), tight.clone()]);
    let (rx, prefix) = one(&deployment, "rl_policy", config).await;
    let mut raw = deployment.raw_connection().await;
    let rl = rx.rate_limiter();
    two_then_denied(|| rl.check_policy("login", "ip:1", 1), false).await;
    // A policy's limits have keys of their own (`rl:{policy}#{n}:{<key>}`); the loose one, a
    // sliding log, holds the 2 admitted points and not the denied one.
    let log = format!("{prefix}rl:login#0:{{ip:1}}");
    let points: u64 = redis::cmd("ZCARD")
        .arg(&log)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(points, 2, "nothing consumed on the deny");
    // An unknown policy is a configuration error, and nothing is written for it.
    let before = keys_under(&mut raw, &prefix).await;
    let err = error_of(rl.check_policy("signup", "ip:1", 1).await);
    assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{err}");
    assert_eq!(keys_under(&mut raw, &prefix).await, before);
    rx.shutdown().await;
}

async fn bad_input_is_refused_before_redis(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, prefix) = one(&deployment, "rl_bad_input", RateLimitConfig::default()).await;
    let mut raw = deployment.raw_connection().await;
    let rl = rx.rate_limiter();
    let ok = five(Algorithm::FixedWindow);
    let long = "k".repeat(1025); // the default maximum is 1,024 bytes
    for key in ["", "a\nb", "tab\there", "nul\0", &long] {
        let err = error_of(rl.check(key, &ok).await);
        assert_eq!(err.code(), ErrorCode::RateLimitKeyInvalid, "{key:?}: {err}");
    }
    for alg in Algorithm::ALL {
        // Cost 0, a cost above the limit, limit 0, a zero window.
        let bad = [
            (five(alg), 0),
            (five(alg), 6),
            (Limit::new(alg, 0, HOUR), 1),
            (Limit::new(alg, 5, Duration::ZERO), 1),
        ];
        for (limit, cost) in bad {
            let err = error_of(rl.check_cost("k", &limit, cost).await);
            assert_eq!(
                err.code(),
                ErrorCode::ConfigInvalid,
                "{alg:?} {limit:?} cost {cost}: {err}"
            );
        }
    }
    assert_eq!(
        keys_under(&mut raw, &prefix).await,
        Vec::<String>::new(),
        "nothing written"
    );
    rx.shutdown().await;
}

#[test]
fn algorithms_round_trip_their_names_and_unknown_names_are_config_errors() {
    let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "fixed_window",
            "sliding_window",
            "sliding_counter",
            "token_bucket",
            "gcra"
        ]
    );
    for alg in Algorithm::ALL {
        assert_eq!(alg.as_str().parse::<Algorithm>().unwrap(), alg);
    }
    let err = "leaky_bucket".parse::<Algorithm>().unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{err}");
}

async fn a_rate_limited_error_carries_its_decision(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, _) = one(&deployment, "rl_error", RateLimitConfig::default()).await;
    let limit = Limit::fixed_window(1, HOUR);
    rx.rate_limiter().check("k", &limit).await.unwrap();
    let decision = rx.rate_limiter().check("k", &limit).await.unwrap();
    assert!(!decision.allowed);
    let err = Error::rate_limited(decision.clone());
    assert_eq!(err.code(), ErrorCode::RateLimitExceeded, "{err}");
    assert_eq!(err.rate_limit_decision(), Some(&decision));
    assert!(err.is_retryable(), "retry after `retry_after`");
    let other = Error::new(ErrorCode::ConfigInvalid, "not a rate limit");
    assert_eq!(other.rate_limit_decision(), None);
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    every_algorithm_admits_exactly_its_limit_then_denies,
    a_check_can_cost_more_than_one_and_a_denial_consumes_nothing,
    peeks_and_state_consume_nothing_and_agree_with_the_next_check,
    reset_makes_the_quota_whole_and_deletes_every_key_the_check_wrote,
    every_key_a_check_writes_has_a_ttl,
    keys_name_the_algorithm_limit_and_window_so_limits_are_independent,
    several_limits_are_all_or_nothing_in_either_order,
    a_named_policy_checks_its_limits_all_or_nothing,
    bad_input_is_refused_before_redis,
    a_rate_limited_error_carries_its_decision,
);
