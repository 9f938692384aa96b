//! `#[cached]` and the two tiers against real Redis: stale values (`swr`, `stale_if_error`),
//! the L1 options (`l1_ttl`, `mode = "l1_only"`), L1 invalidation between runtimes, and calls
//! while Redis is down.
//!
//! The tests run on a standalone server and on the 3-master cluster, but for the one that kills
//! its server (standalone only: the cluster's failover tests cover a node going away). The
//! functions name no runtime: each test runs them in its own runtime's scope, what
//! `#[redisx::test]` gives (on the test's topology), or `rx.scope(..)` where it needs a server
//! of its own. What landed in Redis is read with a raw connection. Loader calls are counted
//! with an `AtomicUsize` per function; the standalone and cluster tests of a body take turns
//! with them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redisx::testing::{self, Deployment, RedisServer, TestOptions, Topology, eventually};
use redisx::{CacheConfig, RedisX, cached};
use redisx_tests::Turn;
use redisx_tests::cache::in_redis;

fn loads(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

mod swr_attr {
    use super::*;
    use std::sync::atomic::AtomicU32;

    static LOADS: AtomicUsize = AtomicUsize::new(0);
    /// What the function returns; the test bumps it to see the refresh land.
    static VALUE: AtomicU32 = AtomicU32::new(1);
    static TURN: Turn = Turn::new();

    /// How long every run after the first (a refresh) takes.
    const REFRESH_DELAY: Duration = Duration::from_secs(1);

    #[cached(key = "swr:{id}", ttl = "300ms", swr = "30s")]
    async fn setting(id: u64) -> Result<u32, String> {
        let _ = id;
        let n = LOADS.fetch_add(1, Ordering::SeqCst) + 1;
        if n > 1 {
            // A slow refresh, so that a caller waiting for it would be seen waiting.
            tokio::time::sleep(REFRESH_DELAY).await;
        }
        Ok(VALUE.load(Ordering::SeqCst))
    }

    async fn a_stale_value_is_served_at_once_and_refreshed_once_in_the_background(
        topology: Topology,
    ) {
        let _turn = TURN.take(&[&LOADS]).await;
        VALUE.store(1, Ordering::SeqCst);
        let deployment = &Deployment::start(topology);
        testing::run_on(deployment, TestOptions::new("swr_attr"), |rx| async move {
            assert_eq!(setting(1).await, Ok(1));
            assert_eq!(loads(&LOADS), 1, "a miss runs the function");

            VALUE.store(2, Ordering::SeqCst);
            // Past the 300 ms ttl, well inside the 30 s SWR window.
            tokio::time::sleep(Duration::from_millis(500)).await;

            // Several callers hit the stale entry at the same time (`redisx::spawn`: in the
            // test's scope).
            let tasks: Vec<_> = (0..5)
                .map(|_| {
                    redisx::spawn(async {
                        let started = Instant::now();
                        let v = setting(1).await;
                        (v, started.elapsed())
                    })
                })
                .collect();
            for t in tasks {
                let (v, took) = t.await.unwrap();
                // Ignoring `swr`: the entry would be gone (or reloaded in the foreground) after
                // the ttl, so the caller would get the new value 2, not the stale 1.
                assert_eq!(v, Ok(1), "the stale value is served during the SWR window");
                // Ignoring `swr`: the caller would wait for the (1 s) reload itself.
                assert!(
                    took < REFRESH_DELAY,
                    "a stale hit waited for the refresh ({took:?})"
                );
            }

            // The background refresh lands: a later call returns the new value. (This checks
            // the refresh part of SWR: a stale value served with no refresh would stay 1 for
            // ever.)
            let refreshed = eventually(
                Duration::from_secs(5),
                Duration::from_millis(20),
                || async { setting(1).await == Ok(2) },
            )
            .await;
            assert!(refreshed, "the refreshed value never arrived");
            // This guards the *single* refresh: a refresh per stale caller (the leading spawned
            // caller, the polls above) would make this well over 2. Ignoring `swr` alone would
            // not show here (a foreground reload under stampede protection also runs the
            // function twice); the stale-value and timing assertions above catch that.
            assert_eq!(
                loads(&LOADS),
                2,
                "the function ran once for the miss and once for one refresh"
            );
            // A late duplicate refresh would show up here (same reason as above).
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(loads(&LOADS), 2, "no second refresh ran later");
            let stats = rx.cache().stats();
            // Ignoring `swr`: no background refresh would start (refreshes 0).
            assert_eq!(stats.refreshes, 1, "{stats:?}");
            // Ignoring `swr`: no stale value would be served (stale_served 0).
            assert!(stats.stale_served >= 1, "{stats:?}");
        })
        .await;
    }

    redisx_tests::on_topologies!(
        [flavor = "multi_thread", worker_threads = 2]
        a_stale_value_is_served_at_once_and_refreshed_once_in_the_background
    );
}

mod stale_if_error_attr {
    use super::*;
    use std::sync::atomic::AtomicBool;

    static LOADS: AtomicUsize = AtomicUsize::new(0);
    /// When set, the function fails.
    static FAILING: AtomicBool = AtomicBool::new(false);
    static TURN: Turn = Turn::new();

    #[cached(key = "quote:{id}", ttl = "200ms", stale_if_error = "2s")]
    async fn quote(id: u64) -> Result<u32, String> {
        LOADS.fetch_add(1, Ordering::SeqCst);
        if FAILING.load(Ordering::SeqCst) {
            return Err(format!("quote {id}: backend down"));
        }
        Ok(42)
    }

    async fn a_failure_after_the_ttl_serves_the_stale_value_until_the_window_ends(
        topology: Topology,
    ) {
        let _turn = TURN.take(&[&LOADS]).await;
        FAILING.store(false, Ordering::SeqCst);
        let deployment = &Deployment::start(topology);
        testing::run_on(
            deployment,
            TestOptions::new("stale_if_error_attr"),
            |rx| async move {
                assert_eq!(quote(1).await, Ok(42));
                // The entry was written before this instant: it is stale 200 ms after it at the
                // latest, and gone from Redis 200 ms + 2 s after it at the latest.
                let written = Instant::now();
                assert_eq!(loads(&LOADS), 1);

                FAILING.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(400)).await; // past the ttl, inside the window
                // Ignoring `stale_if_error`: the entry would have left Redis with the 200 ms ttl, so
                // the call would be a miss and return the function's Err.
                assert_eq!(
                    quote(1).await,
                    Ok(42),
                    "the stale value is served while the function fails"
                );
                // Holds with or without the option: stale-if-error serves the old value only after
                // the function really ran and failed (it is not a plain cache hit).
                assert_eq!(loads(&LOADS), 2, "the function ran (and failed)");
                // Ignoring `stale_if_error`: nothing stale would be served (stale_served 0).
                assert_eq!(rx.cache().stats().stale_served, 1);

                // Past ttl + 2 s, with a margin.
                let past = written + Duration::from_millis(200 + 2000 + 600);
                tokio::time::sleep(past.saturating_duration_since(Instant::now())).await;
                // A window taken as unbounded (or much longer than 2 s) would still answer Ok(42).
                assert_eq!(
                    quote(1).await,
                    Err("quote 1: backend down".to_owned()),
                    "past the window the error passes through"
                );
                // The failing function ran again (the stale value was not kept as a fresh entry).
                assert_eq!(loads(&LOADS), 3);
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(
        a_failure_after_the_ttl_serves_the_stale_value_until_the_window_ends
    );
}

mod l1_ttl_attr {
    use super::*;

    static LOADS: AtomicUsize = AtomicUsize::new(0);
    static TURN: Turn = Turn::new();

    #[cached(key = "profile:{id}", ttl = "1m", l1_ttl = "200ms")]
    async fn profile(id: u64) -> String {
        LOADS.fetch_add(1, Ordering::SeqCst);
        format!("profile-{id}")
    }

    async fn after_the_l1_ttl_the_value_comes_from_redis_without_running_the_function(
        topology: Topology,
    ) {
        let _turn = TURN.take(&[&LOADS]).await;
        let deployment = &Deployment::start(topology);
        testing::run_on(
            deployment,
            TestOptions::new("l1_ttl_attr"),
            |rx| async move {
                assert_eq!(profile(1).await, "profile-1");
                assert_eq!(loads(&LOADS), 1);
                assert_eq!(
                    rx.cache().l1_len(),
                    1,
                    "the value sits in L1 after the call"
                );

                tokio::time::sleep(Duration::from_millis(500)).await; // past the 200 ms L1 ttl
                let before = rx.cache().stats();
                assert_eq!(profile(1).await, "profile-1");
                let after = rx.cache().stats();
                // The 1 m ttl holds in Redis: whatever L1 does, the function does not run again.
                assert_eq!(loads(&LOADS), 1, "answered from the cache");
                // Ignoring `l1_ttl`: L1 would keep the entry for CacheConfig's 60 s, so this call would
                // be an L1 hit (l1_hits + 1) and Redis would not be read (l2_hits + 0).
                assert_eq!(
                    after.l2_hits,
                    before.l2_hits + 1,
                    "the call was answered by L2: {before:?} -> {after:?}"
                );
                assert_eq!(
                    after.l1_hits, before.l1_hits,
                    "the call was not answered by L1: {before:?} -> {after:?}"
                );
                assert!(in_redis(deployment, &rx, "profile:1").await);
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(
        after_the_l1_ttl_the_value_comes_from_redis_without_running_the_function
    );
}

mod l1_only_attr {
    use super::*;

    static LOADS: AtomicUsize = AtomicUsize::new(0);
    static TURN: Turn = Turn::new();

    #[cached(key = "local:{id}", ttl = "1m", mode = "l1_only")]
    async fn local_only(id: u64) -> u64 {
        LOADS.fetch_add(1, Ordering::SeqCst);
        id * 10
    }

    /// The test's runtime has Redis: only the call site's `mode` keeps the entry out of it.
    async fn an_l1_only_call_site_caches_in_process_and_writes_nothing_to_redis(
        topology: Topology,
    ) {
        let _turn = TURN.take(&[&LOADS]).await;
        let deployment = &Deployment::start(topology);
        testing::run_on(
            deployment,
            TestOptions::new("l1_only_attr"),
            |rx| async move {
                assert_eq!(local_only(3).await, 30);
                assert_eq!(local_only(3).await, 30);
                assert_eq!(loads(&LOADS), 1, "the second call was a hit");
                assert_eq!(rx.cache().l1_len(), 1, "the entry lives in L1");
                // Ignoring `mode`: the default L1 + L2 would write the entry to Redis.
                assert!(
                    !in_redis(deployment, &rx, "local:3").await,
                    "nothing was written to Redis"
                );
                // Ignoring `mode`: the first call's miss would have read Redis (l2_misses 1).
                let stats = rx.cache().stats();
                assert_eq!(
                    stats.l2_hits + stats.l2_misses,
                    0,
                    "Redis was not consulted: {stats:?}"
                );
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(
        an_l1_only_call_site_caches_in_process_and_writes_nothing_to_redis
    );
}

mod invalidation_off {
    use super::*;
    use redisx::testing::{runtime, unique_prefix};

    /// Reads `key` through `rx` until it answers `want` from its L1.
    async fn serves_from_l1(rx: &RedisX, key: &str, want: &str) -> bool {
        eventually(Duration::from_secs(2), Duration::from_millis(5), || async {
            let before = rx.cache().stats().l1_hits;
            let v = rx.cache().get::<String>(key).await.unwrap();
            v.as_deref() == Some(want) && rx.cache().stats().l1_hits > before
        })
        .await
    }

    /// Two runtimes A and B on one prefix (not a test runtime: `#[redisx::test]` gives one
    /// runtime on a prefix of its own).
    async fn without_invalidation_b_keeps_its_l1_copy_and_with_it_b_sees_the_update(
        topology: Topology,
    ) {
        let deployment = Deployment::start(topology);

        // Invalidation off.
        let prefix = unique_prefix("attr_invalidation_off");
        let cfg = CacheConfig::default().invalidation(false);
        let a = runtime(&deployment.url(), &prefix, cfg.clone()).await;
        let b = runtime(&deployment.url(), &prefix, cfg).await;
        a.cache()
            .set("cfg:1", &"v1".to_owned(), None)
            .await
            .unwrap();
        assert!(
            serves_from_l1(&b, "cfg:1", "v1").await,
            "B never answered from its L1"
        );
        a.cache()
            .set("cfg:1", &"v2".to_owned(), None)
            .await
            .unwrap();
        let overwritten = Instant::now();
        for i in 0..8 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            // Ignoring `invalidation(false)`: A's pub/sub message would evict B's copy within
            // about 100 ms, and B would read v2 from Redis.
            assert_eq!(
                b.cache().get::<String>("cfg:1").await.unwrap().as_deref(),
                Some("v1"),
                "check {i}, {:?} after A's write: B dropped its L1 copy",
                overwritten.elapsed()
            );
        }
        assert!(overwritten.elapsed() >= Duration::from_millis(300));
        // Redis holds v2 all along: the v1 above came from B's L1.
        b.cache().clear_l1();
        assert_eq!(
            b.cache().get::<String>("cfg:1").await.unwrap().as_deref(),
            Some("v2")
        );

        // Control: the same with invalidation on.
        let prefix = unique_prefix("attr_invalidation_on");
        let cfg = CacheConfig::default().invalidation(true);
        let a = runtime(&deployment.url(), &prefix, cfg.clone()).await;
        let b = runtime(&deployment.url(), &prefix, cfg).await;
        a.cache()
            .set("cfg:1", &"v1".to_owned(), None)
            .await
            .unwrap();
        // A's message about this first write may reach B after B's first read and evict what
        // it filled: read until B answers from L1.
        assert!(
            serves_from_l1(&b, "cfg:1", "v1").await,
            "B never answered from its L1"
        );
        a.cache()
            .set("cfg:1", &"v2".to_owned(), None)
            .await
            .unwrap();
        // If invalidation never reached B (e.g. the flag were read inverted or ignored as
        // off), B would keep v1 from L1 here just like above.
        let seen = eventually(
            Duration::from_millis(100),
            Duration::from_millis(2),
            || async { b.cache().get::<String>("cfg:1").await.unwrap().as_deref() == Some("v2") },
        )
        .await;
        assert!(seen, "with invalidation on, B still serves v1 after 100 ms");
    }

    redisx_tests::on_topologies!(
        [flavor = "multi_thread", worker_threads = 2]
        without_invalidation_b_keeps_its_l1_copy_and_with_it_b_sees_the_update
    );
}

mod redis_killed {
    use super::*;
    use redisx::testing::unique_prefix;
    use redisx::{ConnectionConfig, ReconnectPolicy};

    static LOADS: AtomicUsize = AtomicUsize::new(0);

    /// L2 only, so that every hit comes from Redis.
    #[cached(key = "k:{id}", ttl = "1m", mode = "l2_only")]
    async fn value(id: u64) -> u64 {
        LOADS.fetch_add(1, Ordering::SeqCst);
        id + 100
    }

    /// A server of its own (this test kills it), and a runtime with short timeouts on it, in
    /// scope for the calls.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_keep_answering_and_caching_resumes_after_restart() {
        let mut server = RedisServer::start_owned();
        let cfg = ConnectionConfig::from_url(&server.url())
            .unwrap()
            .connect_timeout(Duration::from_millis(500))
            .command_timeout(Duration::from_millis(500))
            .reconnect(
                ReconnectPolicy::default()
                    .initial(Duration::from_millis(50))
                    .max(Duration::from_millis(200)),
            );
        let rx = RedisX::builder()
            .client("default", cfg)
            .key_prefix(unique_prefix("attr_killed"))
            .cache(CacheConfig::default())
            .build()
            .await
            .unwrap();
        rx.scope(async {
            assert_eq!(value(1).await, 101);
            assert_eq!(value(1).await, 101);
            assert_eq!(loads(&LOADS), 1);

            server.kill();
            for i in 1..=5 {
                let started = Instant::now();
                assert_eq!(value(1).await, 101);
                let took = started.elapsed();
                assert!(took < Duration::from_secs(2), "call {i} took {took:?}");
                assert_eq!(loads(&LOADS), 1 + i, "call {i} ran the function");
            }

            server.start_again();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let before = loads(&LOADS);
                assert_eq!(value(1).await, 101);
                assert_eq!(value(1).await, 101);
                if loads(&LOADS) == before + 1 {
                    break; // the second call was a hit again
                }
                assert!(
                    Instant::now() < deadline,
                    "caching did not resume within 10 s of the restart"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
}
