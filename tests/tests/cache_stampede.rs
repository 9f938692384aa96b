//! Stampede protection against real Redis: one load per cold key across callers and
//! instances, waiters woken by pub/sub, the lock held and renewed while its load runs, and what a
//! waiter does when its `wait_timeout` passes (the `Error` and `Load` fallbacks). Every test
//! runs on a standalone server and on the 3-master cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redisx::cache::{StampedeConfig, StampedeFallback};
use redisx::testing::{Deployment, Topology};
use redisx::{CacheConfig, CacheMode, Error, ErrorCode, RedisX};
use redisx_tests::cache::{gated_load, is_marker, pair, pttl, raw_get, raw_until};
use redisx_tests::{eventually, runtime, unique_prefix};

/// The number of `command` calls a runtime has sent, read from its Prometheus metrics.
fn commands_sent(rx: &RedisX, command: &str) -> u64 {
    let needle =
        format!("redisx_commands_total{{command=\"{command}\",client=\"default\",status=\"ok\"}} ");
    rx.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn waiting_config(fallback: StampedeFallback) -> CacheConfig {
    CacheConfig::default().stampede(
        StampedeConfig::default()
            .wait_timeout(Duration::from_millis(200))
            .fallback(fallback),
    )
}

/// `fut`'s output, or a panic when it is not ready within 5 s (the leader it would otherwise
/// wait for is only released after it returns: without a deadline the test would hang).
async fn within_5s<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .expect("the caller never returned: it waits for the leader without a deadline")
}

/// `get_or_load` of `key` on `cache` with a loader that answers `value` at once.
async fn load_now(cache: &redisx::cache::Cache, key: &str, value: &str) -> Result<String, Error> {
    let value = value.to_owned();
    cache
        .get_or_load(key, None, || async move { Ok::<_, Error>(value) })
        .await
}

async fn thousand_callers_over_two_runtimes_load_once(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "stampede", CacheConfig::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let rt = if i % 2 == 0 { a.clone() } else { b.clone() };
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            rt.cache()
                .get_or_load("cold", None, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, Error>(String::from("loaded"))
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "loaded");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "exactly one loader call");
    let prevented = a.cache().stats().stampedes_prevented + b.cache().stats().stampedes_prevented;
    assert!(prevented >= 999, "stampedes prevented: {prevented}");
    assert!(
        a.metrics_text()
            .contains("redisx_cache_stampede_prevented_total")
    );
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 4]
    thousand_callers_over_two_runtimes_load_once
);

/// A caller in another instance that waits for a load is woken by the loader's write (the
/// wake-up message), not by its fallback poll. Event-driven: B is known to sleep once its
/// waiter flag is on the lock, and A's load ends only when the test releases it.
async fn waiters_in_other_instances_are_woken_by_pubsub_not_polling(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("wake");
    let key = format!("{prefix}cache:slow");
    let mut conn = deployment.raw_connection().await;
    let a = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;
    let b = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;

    let (release_a, loading) = gated_load(a.cache(), "slow", "from a");
    raw_until(&mut conn, &key, "A's marker", is_marker).await;
    let reads_before = commands_sent(&b, "SET");
    let waiting = tokio::spawn({
        let b = b.clone();
        async move {
            b.cache()
                .get_or_load("slow", None, || async {
                    Ok::<_, Error>("from b".to_owned())
                })
                .await
        }
    });
    // B found the lock and flagged it: from here it sleeps until it is woken, or until its
    // fallback poll (the default lock ttl of 5 s halved, at most 2 s) comes due.
    raw_until(&mut conn, &key, "B's waiter flag", |v| {
        v.len() == 18 && v[0] == 0xFE && v[17] == b'w'
    })
    .await;
    release_a.send(()).unwrap();
    assert_eq!(loading.await.unwrap().unwrap(), "from a");
    let v = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .expect("B was not woken by A's write (it would have slept until its fallback poll)")
        .unwrap()
        .unwrap();
    assert_eq!(
        v, "from a",
        "B waited for A's value instead of loading its own"
    );
    // One read that found the lock, one after the wake-up (a third only if the lock changed
    // hands in between).
    let reads = commands_sent(&b, "SET") - reads_before;
    assert!(reads <= 3, "B read {reads} times while waiting");
    assert_eq!(b.cache().stats().stampedes_prevented, 1);
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    waiters_in_other_instances_are_woken_by_pubsub_not_polling
);

/// After a run of hits the first read is a plain `GET` (no lock); a cold key must still be
/// loaded exactly once.
async fn a_cold_key_after_many_hits_still_loads_once(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = pair(
        &deployment,
        "predicted_hit",
        CacheConfig::default().mode(CacheMode::L2Only),
    )
    .await;
    for rt in [&a, &b] {
        rt.cache().set("warm", &1u32, None).await.unwrap();
        for _ in 0..32 {
            assert_eq!(
                rt.cache()
                    .get_or_load("warm", None, || async { Ok::<_, Error>(0u32) })
                    .await
                    .unwrap(),
                1
            );
        }
    }
    let before = commands_sent(&a, "GET");
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let rt = if i % 2 == 0 { a.clone() } else { b.clone() };
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            rt.cache()
                .get_or_load("cold", None, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, Error>(7u32)
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 7);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "exactly one loader call");
    assert!(
        commands_sent(&a, "GET") > before,
        "the first reads were plain GETs"
    );
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 4]
    a_cold_key_after_many_hits_still_loads_once
);

/// A load slower than the lock ttl keeps its lock (the holder renews it while it loads), so no
/// other instance loads too and the slow load's write lands.
async fn a_load_slower_than_the_lock_ttl_keeps_its_lock_and_is_cached(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("slow_load");
    let key = format!("{prefix}cache:slow");
    let mut conn = deployment.raw_connection().await;
    let cfg = CacheConfig::default()
        .stampede(StampedeConfig::default().lock_ttl(Duration::from_millis(150)));
    let a = runtime(&deployment.url(), &prefix, cfg.clone()).await;
    let b = runtime(&deployment.url(), &prefix, cfg).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let load = |rx: &RedisX, value: &'static str| {
        let (cache, calls) = (rx.cache().clone(), calls.clone());
        tokio::spawn(async move {
            cache
                .get_or_load("slow", None, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // Four lock ttls: without renewal the lock is gone long before this ends.
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    Ok::<_, Error>(value.to_owned())
                })
                .await
        })
    };
    let first = load(&a, "from a");
    raw_until(&mut conn, &key, "A's marker", is_marker).await;
    let second = load(&b, "from b");
    assert_eq!(first.await.unwrap().unwrap(), "from a");
    assert_eq!(
        second.await.unwrap().unwrap(),
        "from a",
        "B loaded for itself: A's lock expired while A was loading"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "exactly one load");
    let stored = raw_get(&mut conn, &key).await.expect("A's write landed");
    assert!(!is_marker(&stored), "the key still holds a lock marker");
    let pttl = pttl(&mut conn, &key).await;
    assert!(
        pttl > 3_000_000,
        "the entry has its own ttl (about 1 h), not a lock's: {pttl} ms"
    );
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_load_slower_than_the_lock_ttl_keeps_its_lock_and_is_cached
);

/// A hung loader keeps its lock renewed only for the stampede `wait_timeout`: then the lock
/// lapses (one lock ttl later), so the key is not blocked for ever; the next caller loads.
async fn a_hung_load_holds_its_lock_for_wait_timeout_at_most(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("hung_load");
    let key = format!("{prefix}cache:k");
    let mut conn = deployment.raw_connection().await;
    let cfg = CacheConfig::default().stampede(
        StampedeConfig::default()
            .lock_ttl(Duration::from_millis(150))
            .wait_timeout(Duration::from_millis(400))
            .fallback(StampedeFallback::Error),
    );
    let a = runtime(&deployment.url(), &prefix, cfg.clone()).await;
    let b = runtime(&deployment.url(), &prefix, cfg).await;
    let (release, hung) = gated_load(a.cache(), "k", "from a");
    raw_until(&mut conn, &key, "A's marker", is_marker).await;
    let lapsed = eventually(Duration::from_secs(5), Duration::from_millis(10), || {
        let (mut conn, key) = (conn.clone(), &key);
        async move { raw_get(&mut conn, key).await.is_none() }
    })
    .await;
    assert!(lapsed, "A's lock was renewed past wait_timeout + lock_ttl");
    assert_eq!(
        within_5s(load_now(b.cache(), "k", "from b")).await.unwrap(),
        "from b",
        "B took over the lapsed lock and loaded"
    );
    release.send(()).unwrap();
    assert_eq!(hung.await.unwrap().unwrap(), "from a");
    assert_eq!(
        b.cache().get::<String>("k").await.unwrap().as_deref(),
        Some("from b"),
        "A's late write does not replace B's value (A's marker is gone)"
    );
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_hung_load_holds_its_lock_for_wait_timeout_at_most
);

/// Callers waiting for a load of the same runtime wait at most `wait_timeout` (a hung loader
/// does not hang them all), then apply the fallback: `Error` fails them with
/// `CACHE_STAMPEDE_TIMEOUT`.
async fn an_in_process_wait_times_out_into_the_error_fallback(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("sf_timeout_error");
    let mut conn = deployment.raw_connection().await;
    let rx = runtime(
        &deployment.url(),
        &prefix,
        waiting_config(StampedeFallback::Error),
    )
    .await;
    let (release, leader) = gated_load(rx.cache(), "k", "from the leader");
    raw_until(
        &mut conn,
        &format!("{prefix}cache:k"),
        "the marker",
        is_marker,
    )
    .await;
    let err = within_5s(load_now(rx.cache(), "k", "from the follower"))
        .await
        .expect_err("the follower waited past wait_timeout for the leader");
    assert_eq!(err.code(), ErrorCode::CacheStampedeTimeout, "{err}");
    release.send(()).unwrap();
    assert_eq!(leader.await.unwrap().unwrap(), "from the leader");
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    an_in_process_wait_times_out_into_the_error_fallback
);

/// With the `Load` fallback, a caller whose in-process wait timed out runs its own loader
/// (and gets its value) while the leader still loads; the leader's write lands.
async fn an_in_process_wait_times_out_into_the_load_fallback(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("sf_timeout_load");
    let key = format!("{prefix}cache:k");
    let mut conn = deployment.raw_connection().await;
    let rx = runtime(
        &deployment.url(),
        &prefix,
        waiting_config(StampedeFallback::Load),
    )
    .await;
    let (release, leader) = gated_load(rx.cache(), "k", "from the leader");
    raw_until(&mut conn, &key, "the marker", is_marker).await;
    assert_eq!(
        within_5s(load_now(rx.cache(), "k", "from the follower"))
            .await
            .unwrap(),
        "from the follower"
    );
    release.send(()).unwrap();
    assert_eq!(leader.await.unwrap().unwrap(), "from the leader");
    let stored = raw_get(&mut conn, &key).await.expect("the leader's write");
    assert!(
        !is_marker(&stored),
        "the key still holds the leader's marker"
    );
    assert_eq!(
        rx.cache().get::<String>("k").await.unwrap().as_deref(),
        Some("from the leader"),
        "the follower's own load is not written over the leader's"
    );
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    an_in_process_wait_times_out_into_the_load_fallback
);

/// A caller of another instance waits at most `wait_timeout` for the lock holder's write,
/// then fails with `CACHE_STAMPEDE_TIMEOUT` under the `Error` fallback.
async fn a_cross_instance_wait_times_out_into_the_error_fallback(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("xi_timeout_error");
    let mut conn = deployment.raw_connection().await;
    let cfg = waiting_config(StampedeFallback::Error);
    let a = runtime(&deployment.url(), &prefix, cfg.clone()).await;
    let b = runtime(&deployment.url(), &prefix, cfg).await;
    let (release, leader) = gated_load(a.cache(), "k", "from a");
    raw_until(
        &mut conn,
        &format!("{prefix}cache:k"),
        "A's marker",
        is_marker,
    )
    .await;
    let err = within_5s(load_now(b.cache(), "k", "from b"))
        .await
        .expect_err("B waited past wait_timeout for A");
    assert_eq!(err.code(), ErrorCode::CacheStampedeTimeout, "{err}");
    assert_eq!(b.cache().stats().loads, 0, "B did not load");
    release.send(()).unwrap();
    assert_eq!(leader.await.unwrap().unwrap(), "from a");
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_cross_instance_wait_times_out_into_the_error_fallback
);

/// Regression: with stampede protection off, a miss read the entry twice (a plain `GET`, then
/// the same `GET` again where a lock would have been taken). It is one `GET` and one write.
async fn without_stampede_protection_a_miss_is_one_read_and_one_write(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(
        &deployment.url(),
        &unique_prefix("no_stampede"),
        CacheConfig::default().stampede(StampedeConfig::default().enabled(false)),
    )
    .await;
    let (gets, sets, scripts) = (
        commands_sent(&rx, "GET"),
        commands_sent(&rx, "SET"),
        commands_sent(&rx, "EVALSHA"),
    );
    assert_eq!(load_now(rx.cache(), "k", "v").await.unwrap(), "v");
    assert_eq!(commands_sent(&rx, "GET") - gets, 1, "reads of the miss");
    assert_eq!(commands_sent(&rx, "SET") - sets, 0, "no lock is taken");
    assert_eq!(commands_sent(&rx, "EVALSHA") - scripts, 1, "one write");
    rx.cache().clear_l1();
    assert_eq!(load_now(rx.cache(), "k", "other").await.unwrap(), "v");
}

redisx_tests::on_topologies!(without_stampede_protection_a_miss_is_one_read_and_one_write);

/// Regression: any value starting with byte 0xFE read as another caller's lock, so a call
/// waited the whole `wait_timeout` for a load that nobody was doing. Only a real marker (17
/// bytes, or 18 with a waiter's flag) is a lock; other bytes are a corrupt entry: a miss.
async fn a_foreign_value_starting_like_a_marker_is_not_waited_for(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("fake_marker");
    let rx = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;
    let mut conn = deployment.raw_connection().await;
    for (i, bytes) in [&b"\xFEnot a lock"[..], &[0xFE; 30][..], &[0xFE; 18][..]]
        .into_iter()
        .enumerate()
    {
        let key = format!("k{i}");
        let () = redis::cmd("SET")
            .arg(rx.cache().full_key(&key))
            .arg(bytes)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            within_5s(load_now(rx.cache(), &key, "loaded"))
                .await
                .unwrap(),
            "loaded"
        );
    }
    assert_eq!(rx.cache().stats().loads, 3);
    assert_eq!(rx.cache().stats().stampedes_prevented, 0);
}

redisx_tests::on_topologies!(a_foreign_value_starting_like_a_marker_is_not_waited_for);
