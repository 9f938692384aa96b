//! Rate limiting and idempotency on every topology (`Topology::ALL`: standalone, cluster,
//! sentinel), each body written once, over two runtimes sharing a prefix (two instances of one
//! service). Rate limits: every algorithm admits exactly `limit` then denies; several limits
//! and a named policy are all or nothing; peeks and state reads consume nothing, and `reset`
//! makes the quota whole. Idempotency: the first call runs and a duplicate replays the stored
//! value without running the body; a concurrent duplicate waits and gets the first call's
//! value, woken by the completion message (pub/sub) long before any re-check; another
//! fingerprint is a mismatch, while the first call runs and after it.

use std::time::Duration;

use redisx::idempotency::{Check, IdempotencyConfig, IdempotencyOptions, Status};
use redisx::rate_limit::{Algorithm, Decision, Limit, RateLimitConfig};
use redisx::testing::{Deployment, Topology, unique_prefix};
use redisx::{Error, ErrorCode, RedisX, redis};
use redisx_tests::idempotency::{Runs, assert_code, done_channel};
use redisx_tests::{eventually, raw_connection, raw_query};

/// Long enough that nothing refills, slides or expires during a test.
const HOUR: Duration = Duration::from_secs(3600);
const FP: &str = "9c2e-fingerprint-of-the-request";

/// Two runtimes on one prefix of `test` on `deployment` (local deny off: every check reaches
/// Redis), and the prefix.
async fn pair(
    deployment: &Deployment,
    test: &str,
    limits: &RateLimitConfig,
    idempotency: &IdempotencyConfig,
) -> (RedisX, RedisX, String) {
    let prefix = unique_prefix(&format!("{test}_{}", deployment.topology()));
    let build = || async {
        deployment
            .redisx_builder()
            .key_prefix(&prefix)
            .rate_limit(limits.clone().local_deny(false))
            .idempotency(idempotency.clone())
            .build()
            .await
            .unwrap_or_else(|e| panic!("a runtime on {}: {e}", deployment.topology()))
    };
    let (a, b) = (build().await, build().await);
    (a, b, prefix)
}

/// Two runtimes with the default rate-limit and idempotency configs.
async fn default_pair(deployment: &Deployment, test: &str) -> (RedisX, RedisX) {
    let (limits, idem) = (RateLimitConfig::default(), IdempotencyConfig::default());
    let (a, b, _) = pair(deployment, test, &limits, &idem).await;
    (a, b)
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

/// Whether `key` exists, read without redisx.
async fn exists(deployment: &Deployment, key: &str) -> bool {
    raw_query::<i64>(deployment, redis::cmd("EXISTS").arg(key)).await == 1
}

async fn admits_exactly_the_limit(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = default_pair(&deployment, "topo_rl_exact").await;
    for alg in Algorithm::ALL {
        let limit = five(alg);
        // Alternately through the two runtimes: one quota in Redis.
        for n in 1..=5 {
            let rx = if n % 2 == 0 { &a } else { &b };
            let d = rx.rate_limiter().check("user:1", &limit).await.unwrap();
            assert_eq!(
                counts(&d),
                (true, 5, 5 - n, n),
                "on {topology}, {alg:?} check {n}: {d:?}"
            );
            assert!(
                d.retry_after.is_zero() && !d.local,
                "on {topology}, {alg:?}: {d:?}"
            );
        }
        for rx in [&a, &b] {
            let d = rx.rate_limiter().check("user:1", &limit).await.unwrap();
            assert_eq!(
                counts(&d),
                (false, 5, 0, 5),
                "on {topology}, {alg:?}: past the limit: {d:?}"
            );
            assert!(d.retry_after > Duration::ZERO, "on {topology}, {alg:?}");
        }
        // Another key has a quota of its own.
        let d = a.rate_limiter().check("user:2", &limit).await.unwrap();
        assert_eq!(counts(&d), (true, 5, 4, 1), "on {topology}, {alg:?}");
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_admits_exactly_its_limit_on_every_topology() {
    for &topology in Topology::ALL {
        admits_exactly_the_limit(topology).await;
    }
}

async fn several_limits_are_all_or_nothing(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (tight, loose) = (Limit::fixed_window(2, HOUR), Limit::sliding_window(5, HOUR));
    let limits = RateLimitConfig::default().policy("login", [loose.clone(), tight.clone()]);
    let idem = IdempotencyConfig::default();
    let (a, b, prefix) = pair(&deployment, "topo_rl_multi", &limits, &idem).await;
    // The tight limit first, then last; the third check is denied by it, and the loose one
    // is not charged for the denial.
    for (key, order) in [
        ("ip:1", [tight.clone(), loose.clone()]),
        ("ip:2", [loose.clone(), tight.clone()]),
    ] {
        let expected = [(true, 2, 1, 1), (true, 2, 0, 2), (false, 2, 0, 2)];
        for (i, want) in expected.into_iter().enumerate() {
            let rx = if i % 2 == 0 { &a } else { &b };
            let d = rx.rate_limiter().check_all(key, &order, 1).await.unwrap();
            assert_eq!(counts(&d), want, "on {topology}, {key} check {i}: {d:?}");
        }
        let s = a.rate_limiter().state(key, &loose).await.unwrap();
        assert_eq!(
            counts(&s),
            (true, 5, 3, 2),
            "on {topology}, {key}: nothing consumed on the deny: {s:?}"
        );
    }
    // A named policy: the same, with keys of its own.
    for i in 0..3 {
        let rx = if i % 2 == 0 { &a } else { &b };
        let d = rx.rate_limiter().check_policy("login", "ip:1", 1).await;
        assert_eq!(d.unwrap().allowed, i < 2, "on {topology}: policy check {i}");
    }
    let log = format!("{prefix}rl:login#0:{{ip:1}}");
    let points: u64 = raw_query(&deployment, redis::cmd("ZCARD").arg(&log)).await;
    assert_eq!(
        points, 2,
        "on {topology}: the denial left the loose log alone"
    );
    let s = b
        .rate_limiter()
        .state_policy("login", "ip:1")
        .await
        .unwrap();
    let left = (s.limit, s.remaining, s.current);
    assert_eq!(
        left,
        (2, 0, 2),
        "on {topology}: the tight limit is used up: {s:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_limits_are_all_or_nothing_on_every_topology() {
    for &topology in Topology::ALL {
        several_limits_are_all_or_nothing(topology).await;
    }
}

async fn peek_state_and_reset(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = default_pair(&deployment, "topo_rl_peek").await;
    let (rl, other) = (a.rate_limiter(), b.rate_limiter());
    for alg in Algorithm::ALL {
        let limit = five(alg);
        let key = rl.full_key("k", &limit);
        // An untouched key: a whole quota, and reading it writes nothing.
        let fresh = rl.state("k", &limit).await.unwrap();
        assert_eq!(counts(&fresh), (true, 5, 5, 0), "on {topology}, {alg:?}");
        let p = other.peek("k", &limit, 1).await.unwrap();
        assert_eq!(counts(&p), (true, 5, 5, 0), "on {topology}, {alg:?}: {p:?}");
        assert!(!exists(&deployment, &key).await, "on {topology}, {alg:?}");

        for _ in 0..2 {
            let d = rl.check("k", &limit).await.unwrap();
            assert!(d.allowed, "on {topology}, {alg:?}: {d:?}");
        }
        let (s1, s2) = (rl.state("k", &limit).await, other.state("k", &limit).await);
        let (s1, s2) = (s1.unwrap(), s2.unwrap());
        assert_eq!(counts(&s1), (true, 5, 3, 2), "on {topology}, {alg:?}");
        assert_eq!(counts(&s1), counts(&s2), "on {topology}, {alg:?}");
        let p = other.peek("k", &limit, 1).await.unwrap();
        assert_eq!(counts(&p), (true, 5, 3, 2), "on {topology}, {alg:?}: {p:?}");
        // Too much to fit: the peek says no, and takes nothing either.
        let big = other.peek("k", &limit, 4).await.unwrap();
        assert!(
            !big.allowed && big.retry_after > Duration::ZERO,
            "on {topology}, {alg:?}: {big:?}"
        );
        let d = rl.check("k", &limit).await.unwrap();
        assert_eq!(
            counts(&d),
            (true, 5, 2, 3),
            "on {topology}, {alg:?}: the peeks took nothing: {d:?}"
        );

        // Reset, from the other runtime: the state is gone and the quota whole.
        assert!(exists(&deployment, &key).await, "on {topology}, {alg:?}");
        other.reset("k", &limit).await.unwrap();
        assert!(!exists(&deployment, &key).await, "on {topology}, {alg:?}");
        let d = rl.check("k", &limit).await.unwrap();
        assert_eq!(
            counts(&d),
            (true, 5, 4, 1),
            "on {topology}, {alg:?}: whole again: {d:?}"
        );
        rl.reset("k", &limit).await.unwrap();
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_state_and_reset_on_every_topology() {
    for &topology in Topology::ALL {
        peek_state_and_reset(topology).await;
    }
}

async fn run_then_replay(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = default_pair(&deployment, "topo_idem_replay").await;
    let opts = IdempotencyOptions::new();
    let runs = Runs::new();
    let receipt = vec!["charged".to_owned(), "4200 EUR".to_owned()];
    let body = runs.body(Duration::ZERO, receipt.clone());
    let first: Vec<String> = a
        .idempotency()
        .run("payment:1", FP, &opts, body)
        .await
        .unwrap();
    assert_eq!(first, receipt, "on {topology}");
    for rx in [&b, &a, &b] {
        let body = runs.body(Duration::ZERO, vec!["a second charge".to_owned()]);
        let again: Vec<String> = rx
            .idempotency()
            .run("payment:1", FP, &opts, body)
            .await
            .unwrap();
        assert_eq!(again, receipt, "on {topology}: the first call's value");
    }
    assert_eq!(runs.count(), 1, "on {topology}: the body ran once");
    let (sa, sb) = (a.idempotency().stats(), b.idempotency().stats());
    let counted = (sa.new, sa.replayed, sb.new, sb.replayed);
    assert_eq!(counted, (1, 1, 0, 2), "on {topology}: new and replayed");

    // The stored bytes, as the raw API replays them, and the record with its ttl.
    let check = b.idempotency().check_and_lock("payment:1", FP, &opts).await;
    let Check::Replay(replay) = check.unwrap() else {
        panic!("on {topology}: a completed key is replayed");
    };
    let stored = serde_json::to_vec(&receipt).unwrap();
    assert_eq!(replay.result(), stored, "on {topology}: the stored bytes");
    let rec = a.idempotency().get("payment:1").await.unwrap().unwrap();
    let got = (rec.status(), rec.fingerprint());
    assert_eq!(got, (Status::Completed, FP), "on {topology}");
    let full = a.idempotency().full_key("payment:1");
    let ttl: i64 = raw_query(&deployment, redis::cmd("PTTL").arg(&full)).await;
    assert!(ttl > 0, "on {topology}: the record expires ({ttl} ms)");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_replays_without_running_on_every_topology() {
    for &topology in Topology::ALL {
        run_then_replay(topology).await;
    }
}

/// How many connections are subscribed to `channel`, over every server of `deployment` (a
/// cluster node counts only its own).
async fn subscribers(deployment: &Deployment, channel: &str) -> u64 {
    let mut n = 0;
    for url in deployment.server_urls() {
        let mut conn = raw_connection(&url).await;
        let reply: (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut conn)
            .await
            .expect("PUBSUB NUMSUB");
        n += reply.1;
    }
    n
}

/// A duplicate's re-check and the first call's lease are this far away, so only the
/// completion message can end its wait within [`WOKEN_WITHIN`].
const FAR: Duration = Duration::from_secs(60);
const WOKEN_WITHIN: Duration = Duration::from_secs(10);

async fn a_waiting_duplicate_is_woken(topology: Topology) {
    let deployment = Deployment::start(topology);
    let idem = IdempotencyConfig::default()
        .recheck(FAR)
        .lock_ttl(FAR)
        .wait(2 * FAR);
    let limits = RateLimitConfig::default();
    let (a, b, prefix) = pair(&deployment, "topo_idem_wait", &limits, &idem).await;
    let runs = Runs::new();
    // The first call's body runs until the test opens the gate.
    let (open, gate) = tokio::sync::oneshot::channel::<()>();
    let first = {
        let (idem, started) = (a.idempotency().clone(), runs.body(Duration::ZERO, ()));
        tokio::spawn(async move {
            let body = async move {
                started.await?;
                gate.await.expect("the gate opens");
                Ok::<_, Error>("first".to_owned())
            };
            idem.run("order:9", FP, &IdempotencyOptions::new(), body)
                .await
        })
    };
    let running = eventually(Duration::from_secs(5), Duration::from_millis(5), || {
        let runs = runs.clone();
        async move { runs.count() == 1 }
    })
    .await;
    assert!(running, "on {topology}: the first call runs its body");

    let duplicate = {
        let (idem, body) = (
            b.idempotency().clone(),
            runs.body(Duration::ZERO, "second".to_owned()),
        );
        tokio::spawn(async move {
            idem.run::<String, Error, _>("order:9", FP, &IdempotencyOptions::new(), body)
                .await
        })
    };
    // The duplicate found the key running and its runtime subscribed to the completions.
    let channel = done_channel(&prefix);
    let subscribed = eventually(Duration::from_secs(5), Duration::from_millis(10), || {
        let (deployment, channel) = (&deployment, &channel);
        async move { subscribers(deployment, channel).await >= 1 }
    })
    .await;
    assert!(subscribed, "on {topology}: the completion listener");
    assert!(
        !duplicate.is_finished(),
        "on {topology}: the duplicate waits"
    );

    open.send(()).expect("the body waits at the gate");
    assert_eq!(first.await.unwrap().unwrap(), "first", "on {topology}");
    let got = tokio::time::timeout(WOKEN_WITHIN, duplicate)
        .await
        .unwrap_or_else(|_| panic!("on {topology}: the completion woke the duplicate"))
        .unwrap()
        .unwrap_or_else(|e| panic!("on {topology}: the duplicate's value: {e}"));
    assert_eq!(got, "first", "on {topology}: the first call's value");
    assert_eq!(runs.count(), 1, "on {topology}: the body ran once");
    let s = b.idempotency().stats();
    assert_eq!((s.new, s.replayed, s.takeovers), (0, 1, 0), "on {topology}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_duplicate_is_woken_with_the_value_on_every_topology() {
    for &topology in Topology::ALL {
        a_waiting_duplicate_is_woken(topology).await;
    }
}

async fn another_fingerprint_is_a_mismatch(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = default_pair(&deployment, "topo_idem_mismatch").await;
    let opts = IdempotencyOptions::new();
    let runs = Runs::new();
    let v: u32 = a
        .idempotency()
        .run("order:1", FP, &opts, runs.body(Duration::ZERO, 1))
        .await
        .unwrap();
    assert_eq!(v, 1, "on {topology}");
    let body = runs.body(Duration::ZERO, 2);
    let out = b
        .idempotency()
        .run::<u32, Error, _>("order:1", "other", &opts, body);
    let what = format!("on {topology}: a completed key");
    assert_code(out.await, ErrorCode::IdempotencyFingerprintMismatch, &what);
    assert_eq!(runs.count(), 1, "on {topology}: the body did not run");
    assert_eq!(b.idempotency().stats().mismatches, 1, "on {topology}");
    let rec = a.idempotency().get("order:1").await.unwrap().unwrap();
    let got = (rec.fingerprint(), rec.result());
    assert_eq!(
        got,
        (FP, &b"1"[..]),
        "on {topology}: the first call's record"
    );

    // While the first call runs, too; then its completion stores its value.
    let check = a.idempotency().check_and_lock("order:2", FP, &opts).await;
    let Check::New(claim) = check.unwrap() else {
        panic!("on {topology}: a fresh key is claimed");
    };
    let out = b
        .idempotency()
        .check_and_lock("order:2", "other", &opts)
        .await;
    let what = format!("on {topology}: a running key");
    assert_code(out, ErrorCode::IdempotencyFingerprintMismatch, &what);
    let stored = a.idempotency().complete(claim, b"7").await.unwrap();
    assert!(stored, "on {topology}: the claim was still ours");
    let body = runs.body(Duration::ZERO, 8);
    let v: u32 = b
        .idempotency()
        .run("order:2", FP, &opts, body)
        .await
        .unwrap();
    assert_eq!((v, runs.count()), (7, 1), "on {topology}: replayed");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_fingerprint_is_a_mismatch_on_every_topology() {
    for &topology in Topology::ALL {
        another_fingerprint_is_a_mismatch(topology).await;
    }
}
