//! The limits `#[cached]` leaves to the runtime, against real Redis: a `ttl` over the cache's
//! `max_ttl` and more tags than its `max_tags_per_key` compile, and such a call runs uncached
//! (the function runs on every call, nothing is written) until the runtime's config allows it;
//! an `l1_ttl` longer than the config's compiles, and the config's `l1_ttl` bounds the L1 copy.
//!
//! Each function is a method whose `runtime = &self.rx`, so one function is called through
//! runtimes of different configs; each receiver counts the runs of the function's body. Every
//! test runs on a standalone server and on the 3-master cluster.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redisx::testing::{Deployment, Topology};
use redisx::{CacheConfig, RedisX, cached};
use redisx_tests::cache::pttl;
use redisx_tests::{runtime, unique_prefix};

/// A service on one runtime, counting the runs of its functions' bodies.
struct Service {
    rx: RedisX,
    runs: AtomicUsize,
}

impl Service {
    async fn new(deployment: &Deployment, test: &str, cache: CacheConfig) -> Self {
        Self {
            rx: runtime(&deployment.url(), &unique_prefix(test), cache).await,
            runs: AtomicUsize::new(0),
        }
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    /// A ttl of two days: over the default `max_ttl` (24 h).
    #[cached(key = "archive:{id}", ttl = "2d", runtime = &self.rx)]
    async fn archive(&self, id: u64) -> u64 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        id * 2
    }

    /// Eleven tags: over the default `max_tags_per_key` (10).
    #[cached(
        key = "report:{id}",
        ttl = "1m",
        tags = ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "t10"],
        runtime = &self.rx
    )]
    async fn report(&self, id: u64) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        format!("report-{id}")
    }

    /// An L1 ttl of two days (no `ttl`: the config's default, 1 h).
    #[cached(key = "profile:{id}", l1_ttl = "2d", runtime = &self.rx)]
    async fn profile(&self, id: u64) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        format!("profile-{id}")
    }
}

/// The remaining Redis ttl of the cache entry of `key` in ms (-2: no such entry).
async fn entry_pttl(deployment: &Deployment, rx: &RedisX, key: &str) -> i64 {
    pttl(
        &mut deployment.raw_connection().await,
        &rx.cache().full_key(key),
    )
    .await
}

async fn a_ttl_over_the_default_max_ttl_runs_uncached_and_a_larger_max_ttl_caches_it(
    topology: Topology,
) {
    let deployment = Deployment::start(topology);
    let default = Service::new(&deployment, "limits_ttl_default", CacheConfig::default()).await;
    for _ in 0..3 {
        assert_eq!(default.archive(4).await, 8);
    }
    assert_eq!(default.runs(), 3, "every call ran the function");
    assert_eq!(
        entry_pttl(&deployment, &default.rx, "archive:4").await,
        -2,
        "nothing was written"
    );

    let three_days = Duration::from_secs(3 * 86_400);
    let allowed = Service::new(
        &deployment,
        "limits_ttl_allowed",
        CacheConfig::default().max_ttl(three_days),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(allowed.archive(4).await, 8);
    }
    assert_eq!(allowed.runs(), 1, "the calls after the first were hits");
    let left = entry_pttl(&deployment, &allowed.rx, "archive:4").await;
    assert!(
        left > 86_400_000 && left <= 2 * 86_400_000,
        "the entry lives its two days in Redis: {left} ms"
    );
}

redisx_tests::on_topologies!(
    a_ttl_over_the_default_max_ttl_runs_uncached_and_a_larger_max_ttl_caches_it
);

async fn more_tags_than_max_tags_per_key_run_uncached_and_a_larger_limit_caches_them(
    topology: Topology,
) {
    let deployment = Deployment::start(topology);
    let default = Service::new(&deployment, "limits_tags_default", CacheConfig::default()).await;
    for _ in 0..3 {
        assert_eq!(default.report(1).await, "report-1");
    }
    assert_eq!(default.runs(), 3, "every call ran the function");
    assert_eq!(
        entry_pttl(&deployment, &default.rx, "report:1").await,
        -2,
        "nothing was written"
    );

    let allowed = Service::new(
        &deployment,
        "limits_tags_allowed",
        CacheConfig::default().max_tags_per_key(20),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(allowed.report(1).await, "report-1");
    }
    assert_eq!(allowed.runs(), 1, "the calls after the first were hits");
    // The eleventh tag was indexed: invalidating it alone removes the entry.
    assert_eq!(
        allowed.rx.cache().invalidate_tags(&["t10"]).await.unwrap(),
        1
    );
    assert_eq!(allowed.report(1).await, "report-1");
    assert_eq!(
        allowed.runs(),
        2,
        "the call after the invalidation ran the function"
    );
}

redisx_tests::on_topologies!(
    more_tags_than_max_tags_per_key_run_uncached_and_a_larger_limit_caches_them
);

async fn the_configs_l1_ttl_bounds_a_longer_l1_ttl_of_the_attribute(topology: Topology) {
    let deployment = Deployment::start(topology);
    let svc = Service::new(
        &deployment,
        "limits_l1_ttl",
        CacheConfig::default().l1_ttl(Duration::from_millis(200)),
    )
    .await;
    assert_eq!(svc.profile(1).await, "profile-1");
    assert_eq!(
        svc.rx.cache().l1_len(),
        1,
        "the value sits in L1 after the call"
    );

    tokio::time::sleep(Duration::from_millis(500)).await; // past the config's 200 ms L1 ttl
    let before = svc.rx.cache().stats();
    assert_eq!(svc.profile(1).await, "profile-1");
    let after = svc.rx.cache().stats();
    assert_eq!(svc.runs(), 1, "answered from the cache");
    // With the attribute's 2 d in force, L1 would still hold the value: an L1 hit, no L2 read.
    assert_eq!(
        after.l2_hits,
        before.l2_hits + 1,
        "the call was answered by L2: {before:?} -> {after:?}"
    );
    assert_eq!(
        after.l1_hits, before.l1_hits,
        "the call was not answered by L1: {before:?} -> {after:?}"
    );
}

redisx_tests::on_topologies!(the_configs_l1_ttl_bounds_a_longer_l1_ttl_of_the_attribute);
