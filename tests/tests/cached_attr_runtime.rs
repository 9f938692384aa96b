//! Which runtime a `#[cached]` call uses, against real Redis: the one its `runtime = ...`
//! names wins over the task's scope; the scope's cache config applies (a ttl above its
//! `max_ttl` runs uncached); with neither a scope nor an installed runtime the function runs
//! uncached.
//!
//! The tests with Redis run on a standalone server and on the 3-master cluster, with what
//! `#[redisx::test]` gives (`testing::run_on`): a fresh runtime on a key prefix of its own set
//! as the task's scope. Loader calls are counted with an `AtomicUsize` per function; the
//! standalone and cluster tests of a body take turns with them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redisx::testing::{self, Deployment, TestOptions, Topology};
use redisx::{CacheConfig, RedisX, RedisXBuilder, cached};
use redisx_tests::Turn;
use redisx_tests::cache::{in_redis, runtime_under};

fn loads(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

mod explicit_runtime {
    use super::*;

    static PINNED_LOADS: AtomicUsize = AtomicUsize::new(0);
    static SCOPED_LOADS: AtomicUsize = AtomicUsize::new(0);
    static TURN: Turn = Turn::new();

    /// Names its runtime.
    #[cached(key = "pinned:{id}", ttl = "1m", runtime = rx)]
    async fn pinned(rx: &RedisX, id: u64) -> u64 {
        let _ = rx;
        PINNED_LOADS.fetch_add(1, Ordering::SeqCst);
        id
    }

    /// Uses the runtime of its scope.
    #[cached(key = "scoped:{id}", ttl = "1m")]
    async fn scoped(id: u64) -> u64 {
        SCOPED_LOADS.fetch_add(1, Ordering::SeqCst);
        id
    }

    async fn runtime_expr_wins_over_the_scope(topology: Topology) {
        let _turn = TURN.take(&[&PINNED_LOADS, &SCOPED_LOADS]).await;
        let deployment = &Deployment::start(topology);
        testing::run_on(
            deployment,
            TestOptions::new("explicit_runtime"),
            |scope| async move {
                let named = runtime_under(deployment, &scope, "named").await;
                assert_eq!(pinned(&named, 1).await, 1);
                assert_eq!(pinned(&named, 1).await, 1);
                assert_eq!(loads(&PINNED_LOADS), 1, "the second call is a hit");
                assert_eq!(named.cache().stats().l1_hits, 1, "in the named runtime");
                assert!(in_redis(deployment, &named, "pinned:1").await);
                // Were the scope to win, the entry would be here and the hit in its stats.
                assert!(!in_redis(deployment, &scope, "pinned:1").await);
                assert_eq!(scope.cache().stats().l1_hits, 0);

                // Control: the scope is in force for a function that names no runtime.
                assert_eq!(scoped(1).await, 1);
                assert_eq!(scoped(1).await, 1);
                assert_eq!(loads(&SCOPED_LOADS), 1);
                assert!(in_redis(deployment, &scope, "scoped:1").await);
                assert!(!in_redis(deployment, &named, "scoped:1").await);
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(runtime_expr_wins_over_the_scope);
}

mod ttl_over_configured_max {
    use super::*;

    static LOADS: AtomicUsize = AtomicUsize::new(0);
    static TURN: Turn = Turn::new();

    #[cached(key = "long:{id}", ttl = "1h")]
    async fn long_lived(id: u64) -> u64 {
        LOADS.fetch_add(1, Ordering::SeqCst);
        id
    }

    /// A cache whose ttls may not exceed a minute.
    fn max_ttl_one_minute(builder: RedisXBuilder) -> RedisXBuilder {
        builder.cache(
            CacheConfig::default()
                .default_ttl(Duration::from_secs(60))
                .max_ttl(Duration::from_secs(60)),
        )
    }

    /// The macro accepts up to 24 h; a cache configured with a smaller `max_ttl` rejects the
    /// call site at run time: it runs uncached (never with a clamped ttl), warning once.
    async fn a_ttl_above_the_configured_max_runs_uncached(topology: Topology) {
        let _turn = TURN.take(&[&LOADS]).await;
        let deployment = &Deployment::start(topology);
        testing::run_on(
            deployment,
            TestOptions::new("ttl_over_configured_max").config(max_ttl_one_minute),
            |rx| async move {
                for _ in 0..3 {
                    assert_eq!(long_lived(5).await, 5);
                }
                assert_eq!(loads(&LOADS), 3, "every call ran the function");
                assert!(
                    !in_redis(deployment, &rx, "long:5").await,
                    "nothing was cached"
                );
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(a_ttl_above_the_configured_max_runs_uncached);
}

mod no_runtime {
    use super::*;

    static LOADS: AtomicUsize = AtomicUsize::new(0);

    /// No `runtime`; this test sets no scope, and this test binary installs no runtime.
    #[cached(key = "none:{id}", ttl = "1m")]
    async fn uncached(id: u64) -> u64 {
        LOADS.fetch_add(1, Ordering::SeqCst);
        id
    }

    #[tokio::test]
    async fn without_a_scope_or_an_installed_runtime_the_function_runs_uncached() {
        assert!(RedisX::global().is_none());
        assert!(RedisX::current().is_none());
        assert_eq!(uncached(1).await, 1);
        assert_eq!(uncached(1).await, 1);
        assert_eq!(loads(&LOADS), 2);
    }
}
