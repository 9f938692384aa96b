//! The cache when things go wrong, against real Redis: Redis killed (calls answer from the function
//! and caching resumes; a standalone server of the test's own), and, on a standalone server and
//! on the cluster, corrupt entries and foreign keys under the prefix, and a panicking loader.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redisx::cache::StampedeConfig;
use redisx::testing::{Deployment, Topology};
use redisx::{CacheConfig, CacheMode, ConnectionConfig, Error, RedisX};
use redisx_tests::cache::{POLL, pair};
use redisx_tests::{RedisServer, eventually, runtime, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_calls_answer_from_the_function_and_caching_resumes() {
    let mut server = RedisServer::start_owned();
    let rx = RedisX::builder()
        .client(
            "default",
            ConnectionConfig::from_url(&server.url())
                .unwrap()
                .command_timeout(Duration::from_millis(500))
                .reconnect(
                    redisx::ReconnectPolicy::default()
                        .initial(Duration::from_millis(50))
                        .max(Duration::from_millis(200)),
                ),
        )
        .key_prefix(unique_prefix("killed"))
        .cache(CacheConfig::default().mode(CacheMode::L2Only))
        .build()
        .await
        .unwrap();
    let cache = rx.cache();
    let calls = Arc::new(AtomicUsize::new(0));
    let load = |calls: Arc<AtomicUsize>| async move {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Error>(5u32)
    };
    assert_eq!(
        cache
            .get_or_load("k", None, || load(calls.clone()))
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        cache
            .get_or_load("k", None, || load(calls.clone()))
            .await
            .unwrap(),
        5
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    server.kill();
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(
            cache
                .get_or_load("k", None, || load(calls.clone()))
                .await
                .unwrap(),
            5
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        6,
        "every call ran the function"
    );
    assert!(cache.stats().errors > 0);
    // The service API fails open too: reads miss, writes succeed for the caller (logged and
    // counted); a delete reports the failure, since a stale entry may survive it.
    assert_eq!(cache.get::<u32>("k").await.unwrap(), None);
    cache
        .set("k", &9u32, None)
        .await
        .expect("a write never fails the caller");
    let text = rx.metrics_text();
    let write_errors = text
        .lines()
        .find_map(|l| l.strip_prefix("redisx_cache_errors_total{op=\"write\"} "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(matches!(write_errors, Some(n) if n >= 1), "{text}");
    let err = cache.delete("k").await.unwrap_err();
    assert!(err.is_retryable(), "{err}");

    server.start_again();
    // Resumed: a call right after another one is answered from Redis, not the function.
    // (Not "exactly one load per pair": once the value is cached, a pair loads nothing, and
    // a pair that straddles the reconnect loads twice.)
    let resumed = eventually(Duration::from_secs(10), POLL, || async {
        cache
            .get_or_load("k", None, || load(calls.clone()))
            .await
            .unwrap();
        let before = calls.load(Ordering::SeqCst);
        cache
            .get_or_load("k", None, || load(calls.clone()))
            .await
            .unwrap();
        calls.load(Ordering::SeqCst) == before
    })
    .await;
    assert!(resumed, "caching did not resume after the restart");
}

async fn corrupt_bytes_are_a_miss_and_are_replaced(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(
        &deployment.url(),
        &unique_prefix("corrupt"),
        CacheConfig::default(),
    )
    .await;
    let cache = rx.cache();
    let mut conn = deployment.raw_connection().await;
    for garbage in [
        &b"\x01garbage"[..],
        b"",
        b"\xff\xff",
        b"{\"not\":\"an entry\"}",
    ] {
        let () = redis::cmd("SET")
            .arg(cache.full_key("bad"))
            .arg(garbage)
            .query_async(&mut conn)
            .await
            .unwrap();
        cache.clear_l1();
        assert_eq!(cache.get::<String>("bad").await.unwrap(), None);
        let v = cache
            .get_or_load("bad", None, || async { Ok::<_, Error>("fresh".to_owned()) })
            .await
            .unwrap();
        assert_eq!(v, "fresh");
        cache.clear_l1();
        assert_eq!(
            cache.get::<String>("bad").await.unwrap().as_deref(),
            Some("fresh")
        );
    }
    assert!(cache.stats().corrupt_entries >= 4);
    let text = rx.metrics_text();
    let exported = text
        .lines()
        .find_map(|l| l.strip_prefix("redisx_cache_corrupt_entries_total "))
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(exported, Some(cache.stats().corrupt_entries), "{text}");
    // A value of another type under the same key is also a miss, not a panic (bincode is not
    // self-describing, so this holds where the bytes cannot be read as the other type).
    cache.set("typed", &"text".to_owned(), None).await.unwrap();
    cache.clear_l1();
    assert_eq!(cache.get::<Vec<String>>("typed").await.unwrap(), None);
}

redisx_tests::on_topologies!(corrupt_bytes_are_a_miss_and_are_replaced);

/// Regression: on the miss and stampede path (`get_or_load`), a corrupt entry counted two L2
/// misses: one when read, one when read again after its removal. Reading a corrupt entry is
/// one L2 miss, through `get_or_load` and `get` alike.
async fn a_corrupt_entry_counts_one_l2_miss(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(
        &deployment.url(),
        &unique_prefix("corrupt_stats"),
        CacheConfig::default(),
    )
    .await;
    let cache = rx.cache();
    let mut conn = deployment.raw_connection().await;
    let mut corrupt = async |key: &str| {
        let () = redis::cmd("SET")
            .arg(cache.full_key(key))
            .arg(&b"\x01garbage"[..])
            .query_async(&mut conn)
            .await
            .unwrap();
    };
    // (L2 misses, L2 hits, corrupt entries, loads) since `before`.
    let delta = |before: redisx::CacheStats| {
        let now = cache.stats();
        (
            now.l2_misses - before.l2_misses,
            now.l2_hits - before.l2_hits,
            now.corrupt_entries - before.corrupt_entries,
            now.loads - before.loads,
        )
    };

    corrupt("loaded").await;
    let before = cache.stats();
    let v = cache
        .get_or_load("loaded", None, || async {
            Ok::<_, Error>("fresh".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(v, "fresh");
    assert_eq!(delta(before), (1, 0, 1, 1), "{:?}", cache.stats());

    corrupt("read").await;
    let before = cache.stats();
    assert_eq!(cache.get::<String>("read").await.unwrap(), None);
    assert_eq!(delta(before), (1, 0, 1, 0), "{:?}", cache.stats());
}

redisx_tests::on_topologies!(a_corrupt_entry_counts_one_l2_miss);

/// Regression: one key under the cache's prefix that is not UTF-8 (another program's) made
/// `SCAN` fail to decode, so `clear` and `invalidate_pattern` failed altogether.
async fn clear_and_pattern_invalidation_handle_keys_that_are_not_utf8(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("binary_keys");
    let rx = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;
    let mut conn = deployment.raw_connection().await;
    let mut binary = rx.cache().full_key("user:").into_bytes();
    binary.extend_from_slice(&[0xFF, 0xFE]);
    let set_binary = || redis::cmd("SET").arg(&binary).arg("x").clone();
    let () = set_binary().query_async(&mut conn).await.unwrap();
    rx.cache().set("user:1", &1u8, None).await.unwrap();
    rx.cache().set("team:1", &1u8, None).await.unwrap();
    assert_eq!(rx.cache().invalidate_pattern("user:*").await.unwrap(), 2);
    assert_eq!(rx.cache().get::<u8>("team:1").await.unwrap(), Some(1));
    let () = set_binary().query_async(&mut conn).await.unwrap();
    assert_eq!(rx.cache().clear().await.unwrap(), 2);
    let left: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "left under the prefix: {left:?}");
}

redisx_tests::on_topologies!(clear_and_pattern_invalidation_handle_keys_that_are_not_utf8);

async fn a_panicking_loader_does_not_poison_its_waiters(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = pair(
        &deployment,
        "panic",
        CacheConfig::default()
            .stampede(StampedeConfig::default().lock_ttl(Duration::from_secs(30))),
    )
    .await;
    let leader = {
        let a = a.clone();
        tokio::spawn(async move {
            a.cache()
                .get_or_load("p", None, || async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    panic!("loader exploded");
                    #[allow(unreachable_code)]
                    Ok::<u32, Error>(0)
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let same_instance = {
        let a = a.clone();
        tokio::spawn(async move {
            a.cache()
                .get_or_load("p", None, || async { Ok::<_, Error>(1u32) })
                .await
        })
    };
    let other_instance = tokio::spawn(async move {
        let started = Instant::now();
        let v = b
            .cache()
            .get_or_load("p", None, || async { Ok::<_, Error>(2u32) })
            .await;
        (v, started.elapsed())
    });
    let err = leader.await.unwrap_err();
    assert!(err.is_panic(), "the panic reaches its own caller");
    assert!(same_instance.await.unwrap().is_ok());
    let (v, took) = other_instance.await.unwrap();
    assert!(v.is_ok());
    // The lock was released when the loader panicked, long before its 30 s ttl.
    assert!(
        took < Duration::from_secs(5),
        "the other instance waited {took:?}"
    );
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_panicking_loader_does_not_poison_its_waiters
);
