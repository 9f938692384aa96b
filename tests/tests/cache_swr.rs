//! Stale-while-revalidate and stale-if-error against real Redis, on a standalone server and on
//! the cluster: a stale value served at once with one background refresh across instances, a
//! refresh that must not resurrect a deleted entry, and a stale value served while the loader
//! fails, within its window only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redisx::cache::EntryOptions;
use redisx::testing::{Deployment, Topology};
use redisx::{CacheConfig, Error};
use redisx_tests::cache::{POLL, pair};
use redisx_tests::{eventually, runtime, unique_prefix};

async fn swr_serves_stale_at_once_and_refreshes_once_across_instances(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "swr", CacheConfig::default()).await;
    let opts = EntryOptions::new()
        .ttl(Duration::from_millis(300))
        .swr(Duration::from_secs(30));
    let v1 = a
        .cache()
        .get_or_load_with("cfg", &opts, || async { Ok::<_, Error>(1u32) })
        .await
        .unwrap();
    assert_eq!(v1, 1);
    tokio::time::sleep(Duration::from_millis(400)).await; // now stale, inside the SWR window

    let refreshes = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let rt = if i % 2 == 0 { a.clone() } else { b.clone() };
        let opts = opts.clone();
        let refreshes = refreshes.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let v = rt
                .cache()
                .get_or_load_with("cfg", &opts, move || async move {
                    refreshes.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, Error>(2u32)
                })
                .await
                .unwrap();
            (v, started.elapsed())
        }));
    }
    for t in tasks {
        let (v, took) = t.await.unwrap();
        assert_eq!(v, 1, "the stale value is served");
        assert!(
            took < Duration::from_millis(200),
            "a stale hit waited for the refresh ({took:?})"
        );
    }
    for rt in [&a, &b] {
        // A stale value served from Redis is an L2 hit (it was counted as neither).
        let s = rt.cache().stats();
        assert!(s.stale_served >= 1, "{s:?}");
        assert_eq!(s.l2_hits, s.stale_served, "{s:?}");
    }
    let fresh = eventually(Duration::from_secs(3), POLL, || async {
        a.cache().get::<u32>("cfg").await.unwrap() == Some(2)
            && b.cache().get::<u32>("cfg").await.unwrap() == Some(2)
    })
    .await;
    assert!(fresh, "the refreshed value never arrived");
    assert_eq!(
        refreshes.load(Ordering::SeqCst),
        1,
        "exactly one refresh across both runtimes"
    );
    let stats = a.cache().stats();
    assert!(stats.stale_served >= 1);
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    swr_serves_stale_at_once_and_refreshes_once_across_instances
);

/// Regression: a stale-while-revalidate refresh that was loading while the entry was deleted
/// must not write its value back (it compares the entry header it read).
async fn a_refresh_does_not_resurrect_a_deleted_entry(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(
        &deployment.url(),
        &unique_prefix("swr_delete"),
        CacheConfig::default(),
    )
    .await;
    let cache = rx.cache();
    let opts = EntryOptions::new()
        .ttl(Duration::from_millis(200))
        .swr(Duration::from_secs(30));
    cache
        .get_or_load_with("doc", &opts, || async { Ok::<_, Error>(1u32) })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // stale now
    let v = cache
        .get_or_load_with("doc", &opts, || async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, Error>(2u32)
        })
        .await
        .unwrap();
    assert_eq!(v, 1, "the stale value is served while the refresh loads");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        cache.delete("doc").await.unwrap(),
        "deleted while the refresh loads"
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // the refresh has finished
    let mut conn = deployment.raw_connection().await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(cache.full_key("doc"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists, "the refresh wrote its value back after the delete");
    assert_eq!(cache.get::<u32>("doc").await.unwrap(), None);
}

redisx_tests::on_topologies!(a_refresh_does_not_resurrect_a_deleted_entry);

#[derive(Debug)]
struct Flaky;

impl From<Error> for Flaky {
    fn from(_: Error) -> Self {
        Flaky
    }
}

async fn stale_if_error_serves_within_the_window_and_errors_after_it(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(
        &deployment.url(),
        &unique_prefix("sie"),
        CacheConfig::default(),
    )
    .await;
    let opts = EntryOptions::new()
        .ttl(Duration::from_millis(200))
        .stale_if_error(Duration::from_millis(800));
    let cache = rx.cache();
    let v = cache
        .get_or_load_with("rate", &opts, || async { Ok::<_, Flaky>(7u8) })
        .await
        .unwrap();
    assert_eq!(v, 7);
    tokio::time::sleep(Duration::from_millis(300)).await; // expired, inside the window
    let v = cache
        .get_or_load_with("rate", &opts, || async { Err::<u8, _>(Flaky) })
        .await
        .expect("the stale value is served while the loader fails");
    assert_eq!(v, 7);
    assert_eq!(cache.stats().stale_served, 1);
    assert!(
        rx.metrics_text()
            .contains("redisx_cache_stale_served_total 1")
    );
    tokio::time::sleep(Duration::from_millis(900)).await; // past the window
    let r = cache
        .get_or_load_with("rate", &opts, || async { Err::<u8, _>(Flaky) })
        .await;
    assert!(
        r.is_err(),
        "past the window the loader's error passes through"
    );
    // A predicate can refuse to serve stale values.
    let picky = runtime(
        &deployment.url(),
        &unique_prefix("sie_pred"),
        CacheConfig::default().stale_if_error_when(|e| e.downcast_ref::<Flaky>().is_none()),
    )
    .await;
    picky
        .cache()
        .get_or_load_with("k", &opts, || async { Ok::<_, Flaky>(1u8) })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = picky
        .cache()
        .get_or_load_with("k", &opts, || async { Err::<u8, _>(Flaky) })
        .await;
    assert!(r.is_err(), "the predicate refused this error");
}

redisx_tests::on_topologies!(stale_if_error_serves_within_the_window_and_errors_after_it);
