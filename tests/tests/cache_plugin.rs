//! The full cache plugin against real Redis. Two `RedisX` runtimes on one server stand for two
//! instances of a service.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redisx::cache::{EntryOptions, StampedeConfig, StampedeFallback};
use redisx::{CacheConfig, CacheMode, ConnectionConfig, Error, ErrorCode, RedisX};
use redisx_tests::{RedisServer, eventually, raw_connection, unique_prefix};

async fn runtime(url: &str, prefix: &str, cache: CacheConfig) -> RedisX {
    RedisX::builder()
        .client("default", ConnectionConfig::from_url(url).expect("url"))
        .key_prefix(prefix)
        .cache(cache)
        .build()
        .await
        .expect("runtime builds")
}

async fn pair(server: &RedisServer, test: &str, cache: CacheConfig) -> (RedisX, RedisX) {
    let prefix = unique_prefix(test);
    let a = runtime(&server.url(), &prefix, cache.clone()).await;
    let b = runtime(&server.url(), &prefix, cache).await;
    (a, b)
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    raw_connection(&server.url()).await
}

/// How often `eventually` checks here.
const POLL: Duration = Duration::from_millis(2);

/// Whether `key` reads as absent through `rx` within 100 ms (the cross-instance bound).
async fn gone_within_100ms<T>(rx: &RedisX, key: &str) -> bool
where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    eventually(Duration::from_millis(100), POLL, || async {
        rx.cache().get::<T>(key).await.unwrap().is_none()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_callers_over_two_runtimes_load_once() {
    let server = RedisServer::start();
    let (a, b) = pair(&server, "stampede", CacheConfig::default()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_through_a_reaches_b_l1_within_100ms() {
    let server = RedisServer::start();
    let (a, b) = pair(&server, "l1_update", CacheConfig::default()).await;
    a.cache()
        .set("user:1", &"v1".to_owned(), None)
        .await
        .unwrap();
    // B reads it until it answers from its L1 (A's notification of that first set may reach
    // B after B's first read and evict what it filled: that is the mechanism under test).
    let in_l1 = eventually(Duration::from_secs(2), POLL, || async {
        let before = b.cache().stats().l1_hits;
        let v = b.cache().get::<String>("user:1").await.unwrap();
        v.as_deref() == Some("v1") && b.cache().stats().l1_hits > before
    })
    .await;
    assert!(in_l1, "B never answered from its L1");

    a.cache()
        .set("user:1", &"v2".to_owned(), None)
        .await
        .unwrap();
    let seen = eventually(Duration::from_millis(100), POLL, || async {
        b.cache().get::<String>("user:1").await.unwrap().as_deref() == Some("v2")
    })
    .await;
    assert!(seen, "B still serves the old value from L1 after 100 ms");

    // Delete too.
    assert!(b.cache().get::<String>("user:1").await.unwrap().is_some());
    assert!(a.cache().delete("user:1").await.unwrap());
    let gone = gone_within_100ms::<String>(&b, "user:1").await;
    assert!(gone, "B still serves a deleted value after 100 ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_invalidation_through_a_reaches_b_l1_within_100ms() {
    let server = RedisServer::start();
    let (a, b) = pair(&server, "l1_tags", CacheConfig::default()).await;
    let opts = EntryOptions::new().tags(["users"]);
    for i in 0..5 {
        a.cache()
            .set_with(&format!("u:{i}"), &i, &opts)
            .await
            .unwrap();
    }
    // B reads them until all five sit in its L1 (A's notifications of those sets may evict
    // B's first fills).
    let filled = eventually(Duration::from_secs(2), POLL, || async {
        for i in 0..5 {
            assert_eq!(
                b.cache().get::<i32>(&format!("u:{i}")).await.unwrap(),
                Some(i)
            );
        }
        b.cache().l1_len() == 5
    })
    .await;
    assert!(filled, "B's L1 never held the five entries");
    assert_eq!(a.cache().invalidate_tags(&["users"]).await.unwrap(), 5);
    let evicted = eventually(Duration::from_millis(100), POLL, || async {
        b.cache().l1_len() == 0
    })
    .await;
    assert!(
        evicted,
        "B's L1 still holds {} tagged entries",
        b.cache().l1_len()
    );
    for i in 0..5 {
        assert_eq!(b.cache().get::<i32>(&format!("u:{i}")).await.unwrap(), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swr_serves_stale_at_once_and_refreshes_once_across_instances() {
    let server = RedisServer::start();
    let (a, b) = pair(&server, "swr", CacheConfig::default()).await;
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

#[derive(Debug)]
struct Flaky;

impl From<Error> for Flaky {
    fn from(_: Error) -> Self {
        Flaky
    }
}

#[tokio::test]
async fn stale_if_error_serves_within_the_window_and_errors_after_it() {
    let server = RedisServer::start();
    let rx = runtime(&server.url(), &unique_prefix("sie"), CacheConfig::default()).await;
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
        &server.url(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_invalidation_removes_every_tagged_key_and_nothing_else() {
    let server = RedisServer::start();
    let prefix = unique_prefix("tags10k");
    let rx = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let cache = rx.cache();
    let tagged: Vec<(String, u32)> = (0..10_000).map(|i| (format!("item:{i}"), i)).collect();
    cache
        .set_many(tagged.clone(), &EntryOptions::new().tags(["bulk"]))
        .await
        .unwrap();
    let others: Vec<(String, u32)> = (0..200).map(|i| (format!("other:{i}"), i)).collect();
    cache
        .set_many(others.clone(), &EntryOptions::new().tags(["keep"]))
        .await
        .unwrap();
    cache.set("plain", &1u32, None).await.unwrap();

    let deleted = cache.invalidate_tags(&["bulk"]).await.unwrap();
    assert_eq!(deleted, 10_000);

    let mut conn = raw(&server).await;
    let keys: Vec<String> = tagged.iter().map(|(k, _)| cache.full_key(k)).collect();
    for chunk in keys.chunks(1000) {
        let n: u64 = redis::cmd("EXISTS")
            .arg(chunk)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, 0, "a tagged key survived");
    }
    let other_keys: Vec<String> = others.iter().map(|(k, _)| cache.full_key(k)).collect();
    let n: u64 = redis::cmd("EXISTS")
        .arg(&other_keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 200, "an untagged key was deleted");
    assert_eq!(cache.get::<u32>("plain").await.unwrap(), Some(1));
    let got: Vec<Option<u32>> = cache
        .get_many(&["other:0", "other:199", "item:5"])
        .await
        .unwrap();
    assert_eq!(got, [Some(0), Some(199), None]);
    // The index itself is gone; the other tag's index is intact.
    let tag_index: bool = redis::cmd("EXISTS")
        .arg(format!("{prefix}cache:_tag:bulk"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!tag_index);
    assert_eq!(cache.invalidate_tags(&["keep"]).await.unwrap(), 200);
}

#[tokio::test]
async fn corrupt_bytes_are_a_miss_and_are_replaced() {
    let server = RedisServer::start();
    let rx = runtime(
        &server.url(),
        &unique_prefix("corrupt"),
        CacheConfig::default(),
    )
    .await;
    let cache = rx.cache();
    let mut conn = raw(&server).await;
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
    // A value of another type under the same key is also a miss, not a panic (bincode is not
    // self-describing, so this holds where the bytes cannot be read as the other type).
    cache.set("typed", &"text".to_owned(), None).await.unwrap();
    cache.clear_l1();
    assert_eq!(cache.get::<Vec<String>>("typed").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_calls_answer_from_the_function_and_caching_resumes() {
    let mut server = RedisServer::start_owned();
    let rx = RedisX::builder()
        .client(
            "default",
            ConnectionConfig::from_url(&server.url())
                .unwrap()
                .command_timeout(Duration::from_millis(500))
                .reconnect(redisx::ReconnectPolicy {
                    initial: Duration::from_millis(50),
                    max: Duration::from_millis(200),
                    ..redisx::ReconnectPolicy::default()
                }),
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
    assert!(
        rx.metrics_text()
            .contains("redisx_cache_write_errors_total")
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_loader_does_not_poison_its_waiters() {
    let server = RedisServer::start();
    let (a, b) = pair(
        &server,
        "panic",
        CacheConfig::default().stampede(StampedeConfig {
            lock_ttl: Duration::from_secs(30),
            ..StampedeConfig::default()
        }),
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

#[tokio::test]
async fn invalidation_during_a_load_wins() {
    let server = RedisServer::start();
    let rx = runtime(
        &server.url(),
        &unique_prefix("inval_load"),
        CacheConfig::default(),
    )
    .await;
    let cache = rx.cache().clone();
    let c2 = cache.clone();
    let load = tokio::spawn(async move {
        c2.get_or_load("race", None, || async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok::<_, Error>("old".to_owned())
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    cache.delete("race").await.unwrap();
    assert_eq!(
        load.await.unwrap().unwrap(),
        "old",
        "the caller still gets its value"
    );
    cache.clear_l1();
    assert_eq!(
        cache.get::<String>("race").await.unwrap(),
        None,
        "a value loaded before an invalidation must not be written back"
    );
}

/// Reads the raw bytes under `key` until `done` accepts them (or 10 s pass: then panics).
async fn raw_until(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    what: &str,
    done: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = raw_get(conn, key).await
            && done(&v)
        {
            return v;
        }
        assert!(Instant::now() < deadline, "{key} never held {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn raw_get(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

/// Starts `get_or_load(key)` on `cache` with a loader that returns `value` once the returned
/// sender fires (if the sender is dropped instead, the loader fails).
fn gated_load(
    cache: &redisx::cache::Cache,
    key: &'static str,
    value: &'static str,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<String, Error>>,
) {
    let (release, go) = tokio::sync::oneshot::channel::<()>();
    let cache = cache.clone();
    let task = tokio::spawn(async move {
        cache
            .get_or_load(key, None, || async move {
                go.await
                    .map_err(|_| Error::new(ErrorCode::Internal, "the test dropped the gate"))?;
                Ok::<_, Error>(value.to_owned())
            })
            .await
    });
    (release, task)
}

async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

/// A lock marker: 0xFE and a 16-byte token (17 bytes), plus "w" once a waiter flagged it.
fn is_marker(v: &[u8]) -> bool {
    v.first() == Some(&0xFE) && v.len() == 17
}

/// A load that outlives an invalidation must not touch the lock of the caller that loads
/// after it: that caller's marker (with its waiter flag, and its ttl) stays exactly as it
/// was, its write lands, and its waiter is woken by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_load_leaves_the_next_loaders_lock_intact() {
    let server = RedisServer::start();
    let prefix = unique_prefix("relock");
    let key = format!("{prefix}cache:k");
    let mut conn = raw(&server).await;
    let a = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let b = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let c = runtime(&server.url(), &prefix, CacheConfig::default()).await;

    // A locks and loads until released.
    let (release_a, first) = gated_load(a.cache(), "k", "old");
    let a_marker = raw_until(&mut conn, &key, "A's marker", is_marker).await;
    // An invalidation removes A's lock; B misses and takes its own.
    a.cache().delete("k").await.unwrap();
    let (release_b, second) = gated_load(b.cache(), "k", "new");
    let b_marker = raw_until(&mut conn, &key, "B's marker", |v| {
        is_marker(v) && v != a_marker.as_slice()
    })
    .await;
    // C finds B's lock, flags it and waits for B's write.
    let c_loads = Arc::new(AtomicUsize::new(0));
    let waiter = {
        let (c, c_loads) = (c.cache().clone(), Arc::clone(&c_loads));
        tokio::spawn(async move {
            c.get_or_load("k", None, || async move {
                c_loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>("c".to_owned())
            })
            .await
        })
    };
    let mut flagged = b_marker.clone();
    flagged.push(b'w');
    raw_until(&mut conn, &key, "B's flagged marker", |v| v == flagged).await;
    let ttl_before = pttl(&mut conn, &key).await;

    release_a.send(()).unwrap();
    assert_eq!(
        first.await.unwrap().unwrap(),
        "old",
        "A's caller gets its value"
    );
    assert_eq!(
        raw_get(&mut conn, &key).await.as_ref(),
        Some(&flagged),
        "B's flagged marker is untouched by A's write"
    );
    let ttl_after = pttl(&mut conn, &key).await;
    assert!(
        ttl_after > 0 && ttl_after <= ttl_before,
        "B's lock keeps its own ttl: {ttl_before} ms before A's write, {ttl_after} ms after"
    );

    release_b.send(()).unwrap();
    assert_eq!(second.await.unwrap().unwrap(), "new");
    assert_eq!(waiter.await.unwrap().unwrap(), "new", "C got B's value");
    assert_eq!(c_loads.load(Ordering::SeqCst), 0, "C did not load");
    a.cache().clear_l1();
    assert_eq!(
        a.cache().get::<String>("k").await.unwrap().as_deref(),
        Some("new")
    );
}

/// An explicit `set` while a load runs wins over the load: the loaded value is never stored,
/// and the set's entry keeps its value and its Redis expiry.
#[tokio::test]
async fn an_explicit_set_during_a_load_is_not_overwritten_by_it() {
    let server = RedisServer::start();
    let prefix = unique_prefix("set_load");
    let key = format!("{prefix}cache:k");
    let mut conn = raw(&server).await;
    let rx = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let cache = rx.cache().clone();
    let (release, load) = gated_load(&cache, "k", "loaded");
    raw_until(&mut conn, &key, "the loader's marker", is_marker).await;
    cache
        .set("k", &"explicit".to_owned(), Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let set_bytes = raw_until(&mut conn, &key, "the set's entry", |v| !is_marker(v)).await;
    release.send(()).unwrap();
    assert_eq!(
        load.await.unwrap().unwrap(),
        "loaded",
        "the caller gets its value"
    );
    assert_eq!(
        raw_get(&mut conn, &key).await.as_ref(),
        Some(&set_bytes),
        "the set's entry is untouched by the load's write"
    );
    let ttl = pttl(&mut conn, &key).await;
    assert!(
        ttl > 55_000 && ttl <= 60_000,
        "the set's Redis expiry is kept: {ttl} ms"
    );
    cache.clear_l1();
    assert_eq!(
        cache.get::<String>("k").await.unwrap().as_deref(),
        Some("explicit")
    );
}

#[tokio::test]
async fn service_api_round_trip() {
    let server = RedisServer::start();
    let rx = runtime(&server.url(), &unique_prefix("api"), CacheConfig::default()).await;
    let cache = rx.cache();
    assert!(!cache.has("a").await);
    cache
        .set("a", &1u64, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(cache.has("a").await);
    let ttl = cache.ttl("a").await.unwrap();
    assert!(
        ttl > Duration::from_secs(58) && ttl <= Duration::from_secs(60),
        "{ttl:?}"
    );
    cache
        .set_many([("b", 2u64), ("c", 3u64)], &EntryOptions::new())
        .await
        .unwrap();
    cache.clear_l1();
    assert_eq!(
        cache
            .get_many::<u64, _>(&["a", "b", "c", "d"])
            .await
            .unwrap(),
        [Some(1), Some(2), Some(3), None]
    );
    assert_eq!(cache.delete_many(&["a", "b", "zzz"]).await.unwrap(), 2);
    cache.set("user:1", &1u64, None).await.unwrap();
    cache.set("user:2", &2u64, None).await.unwrap();
    cache.set("order:1", &3u64, None).await.unwrap();
    assert_eq!(cache.invalidate_pattern("user:*").await.unwrap(), 2);
    assert_eq!(cache.get::<u64>("order:1").await.unwrap(), Some(3));

    let report = cache
        .warmup(
            (0..50).map(|i| (format!("w:{i}"), move || async move { Ok::<_, Error>(i) })),
            &EntryOptions::new(),
            8,
        )
        .await;
    assert_eq!(report.warmed, 50);
    assert_eq!(cache.get::<i32>("w:49").await.unwrap(), Some(49));

    // clear() removes only this prefix.
    let other = runtime(
        &server.url(),
        &unique_prefix("api_other"),
        CacheConfig::default(),
    )
    .await;
    other.cache().set("x", &1u8, None).await.unwrap();
    assert!(cache.clear().await.unwrap() >= 51);
    assert_eq!(cache.get::<u64>("order:1").await.unwrap(), None);
    other.cache().clear_l1();
    assert_eq!(other.cache().get::<u8>("x").await.unwrap(), Some(1));

    // Bad input: clear errors, nothing written.
    let err = cache.set("bad\nkey", &1u8, None).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::CacheKeyInvalid);
    let err = cache.set("_tag:x", &1u8, None).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::CacheKeyInvalid);
    let err = cache
        .set("k", &1u8, Some(Duration::from_secs(2 * 86_400)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid);
    let too_many = EntryOptions::new().tags((0..11).map(|i| format!("t{i}")));
    let err = cache.set_with("k", &1u8, &too_many).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::CacheKeyInvalid);
    let err = cache.keys_by_tag("bad tag").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::CacheKeyInvalid, "{err}");
}

#[tokio::test]
async fn keys_by_tag_lists_the_indexed_keys() {
    let server = RedisServer::start();
    let rx = runtime(
        &server.url(),
        &unique_prefix("keys_by_tag"),
        CacheConfig::default(),
    )
    .await;
    let cache = rx.cache();
    let users = EntryOptions::new().tags(["users"]);
    // More than one SSCAN page.
    let many: Vec<(String, u32)> = (0..2500).map(|i| (format!("user:{i}"), i)).collect();
    cache.set_many(many, &users).await.unwrap();
    cache
        .set_with("team:1", &1u32, &EntryOptions::new().tags(["teams"]))
        .await
        .unwrap();
    // An L1-only call's tags are in the in-process index.
    cache
        .set_with("user:local", &1u32, &users.clone().mode(CacheMode::L1Only))
        .await
        .unwrap();
    let keys = cache.keys_by_tag("users").await.unwrap();
    assert_eq!(keys.len(), 2501);
    assert!(keys.contains(&"user:2499".to_owned()) && keys.contains(&"user:local".to_owned()));
    assert!(!keys.contains(&"team:1".to_owned()));
    assert_eq!(cache.keys_by_tag("teams").await.unwrap(), ["team:1"]);
    assert!(cache.keys_by_tag("nobody").await.unwrap().is_empty());
    cache.invalidate_tags(&["users"]).await.unwrap();
    assert!(cache.keys_by_tag("users").await.unwrap().is_empty());
}

#[tokio::test]
async fn l1_only_needs_no_redis() {
    let rx = RedisX::builder()
        .cache(CacheConfig::default().mode(CacheMode::L1Only))
        .build()
        .await
        .expect("an L1-only runtime builds without any Redis client");
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        let v = rx
            .cache()
            .get_or_load("k", None, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(9u8)
            })
            .await
            .unwrap();
        assert_eq!(v, 9);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(rx.cache().delete("k").await.unwrap());
    // Tags work without Redis too: the index lives in process.
    let tagged = EntryOptions::new().tags(["users"]);
    for i in 0..3u8 {
        rx.cache()
            .set_with(&format!("u:{i}"), &i, &tagged)
            .await
            .unwrap();
    }
    rx.cache().set("other", &9u8, None).await.unwrap();
    // Without Redis, `ttl` answers from L1 (it answered `None` for every key).
    let left = rx
        .cache()
        .ttl("other")
        .await
        .expect("a ttl for an L1 entry");
    assert!(
        left > Duration::from_secs(50) && left <= Duration::from_secs(60),
        "the L1 ttl (60 s by default): {left:?}"
    );
    assert_eq!(rx.cache().ttl("missing").await, None);
    assert_eq!(rx.cache().invalidate_tags(&["users"]).await.unwrap(), 3);
    assert_eq!(rx.cache().get::<u8>("u:1").await.unwrap(), None);
    assert_eq!(rx.cache().get::<u8>("other").await.unwrap(), Some(9));
    let err = RedisX::builder().build().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{err}");
}

/// The number of `command` calls a runtime has sent, read from its Prometheus metrics.
fn commands_sent(rx: &RedisX, command: &str) -> u64 {
    let needle =
        format!("redisx_commands_total{{command=\"{command}\",client=\"default\",status=\"ok\"}} ");
    rx.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// An entry rewritten without a tag it had is not deleted by that tag's invalidation, in
/// Redis or in another instance's L1; an entry that still carries the tag is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retagged_entry_survives_the_invalidation_of_its_old_tag() {
    let server = RedisServer::start();
    let (a, b) = pair(&server, "retag", CacheConfig::default()).await;
    let tagged = |t: &str| EntryOptions::new().tags([t.to_owned()]);
    a.cache()
        .set_with("moved", &1u32, &tagged("old"))
        .await
        .unwrap();
    a.cache()
        .set_with("stays", &2u32, &tagged("old"))
        .await
        .unwrap();
    a.cache()
        .set_with("untagged", &3u32, &tagged("old"))
        .await
        .unwrap();
    // B holds L1 copies of all three.
    for (k, v) in [("moved", 1u32), ("stays", 2), ("untagged", 3)] {
        assert_eq!(b.cache().get::<u32>(k).await.unwrap(), Some(v));
    }
    // Rewritten: one with another tag, one with none (through the load path).
    a.cache()
        .set_with("moved", &10u32, &tagged("new"))
        .await
        .unwrap();
    a.cache().delete("untagged").await.unwrap();
    let loaded: u32 = a
        .cache()
        .get_or_load("untagged", None, || async { Ok::<_, Error>(30) })
        .await
        .unwrap();
    assert_eq!(loaded, 30);
    assert!(
        eventually(Duration::from_secs(5), POLL, || async {
            b.cache().get::<u32>("moved").await.unwrap() == Some(10)
                && b.cache().get::<u32>("untagged").await.unwrap() == Some(30)
        })
        .await,
        "B never saw the rewrites"
    );

    assert_eq!(a.cache().invalidate_tags(&["old"]).await.unwrap(), 1);
    for rt in [&a, &b] {
        assert_eq!(rt.cache().get::<u32>("moved").await.unwrap(), Some(10));
        assert_eq!(rt.cache().get::<u32>("untagged").await.unwrap(), Some(30));
    }
    assert!(
        eventually(Duration::from_secs(5), POLL, || async {
            b.cache().get::<u32>("stays").await.unwrap().is_none()
        })
        .await,
        "the entry still tagged `old` survived in B"
    );
    assert_eq!(a.cache().get::<u32>("stays").await.unwrap(), None);
    // The new tag still reaches the moved entry.
    assert_eq!(a.cache().invalidate_tags(&["new"]).await.unwrap(), 1);
    assert_eq!(a.cache().get::<u32>("moved").await.unwrap(), None);
}

/// An entry in the format before tag sections (no 0x40 bit) cannot say which tags it carries:
/// a tag invalidation that indexed it deletes it, as it always did.
#[tokio::test]
async fn an_entry_without_a_tag_section_is_deleted_by_its_tag() {
    let server = RedisServer::start();
    let prefix = unique_prefix("oldformat");
    let rx = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let mut conn = raw(&server).await;
    let later = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
        + 3_600_000;
    let mut old = vec![0x01_u8];
    old.extend_from_slice(&later.to_le_bytes());
    old.extend_from_slice(&later.to_le_bytes());
    old.push(5); // bincode of 5u32
    let full = rx.cache().full_key("legacy");
    let () = redis::cmd("SET")
        .arg(&full)
        .arg(&old)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: u64 = redis::cmd("SADD")
        .arg(format!("{prefix}cache:_tag:old"))
        .arg("legacy")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(rx.cache().get::<u32>("legacy").await.unwrap(), Some(5));
    assert_eq!(rx.cache().invalidate_tags(&["old"]).await.unwrap(), 1);
    assert_eq!(raw_get(&mut conn, &full).await, None);
    assert_eq!(rx.cache().get::<u32>("legacy").await.unwrap(), None);
}

/// The same without Redis: the in-process tag index follows rewrites.
#[tokio::test]
async fn a_retagged_entry_survives_in_an_l1_only_cache() {
    let rx = RedisX::builder()
        .cache(CacheConfig::default().mode(CacheMode::L1Only))
        .build()
        .await
        .unwrap();
    let cache = rx.cache();
    let tagged = |t: &[&str]| EntryOptions::new().tags(t.iter().map(|t| (*t).to_owned()));
    cache
        .set_with("moved", &1u32, &tagged(&["old", "both"]))
        .await
        .unwrap();
    cache
        .set_with("stays", &2u32, &tagged(&["old"]))
        .await
        .unwrap();
    cache
        .set_with("untagged", &3u32, &tagged(&["old"]))
        .await
        .unwrap();
    cache
        .set_with("moved", &10u32, &tagged(&["new", "both"]))
        .await
        .unwrap();
    cache.set("untagged", &30u32, None).await.unwrap();

    assert_eq!(cache.invalidate_tags(&["old"]).await.unwrap(), 1);
    assert_eq!(cache.get::<u32>("stays").await.unwrap(), None);
    assert_eq!(cache.get::<u32>("moved").await.unwrap(), Some(10));
    assert_eq!(cache.get::<u32>("untagged").await.unwrap(), Some(30));
    assert_eq!(cache.invalidate_tags(&["both"]).await.unwrap(), 1);
    assert_eq!(cache.get::<u32>("moved").await.unwrap(), None);
    // Invalidated keys left every index: `new` has nothing left to delete.
    assert_eq!(cache.invalidate_tags(&["new"]).await.unwrap(), 0);
}

/// Entries written with `mode = L1Only` in a cache with Redis live only in each instance's
/// L1, where Redis's tag index never sees them: a tag invalidation still reaches them, in the
/// invalidating instance (counted) and, by its message, in the others, and leaves entries of
/// other tags alone.
#[tokio::test]
async fn a_tag_invalidation_reaches_l1_only_entries_in_every_instance() {
    let server = RedisServer::start();
    let prefix = unique_prefix("l1only_tags");
    let a = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let b = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let local = |t: &str| {
        EntryOptions::new()
            .mode(CacheMode::L1Only)
            .tags([t.to_owned()])
    };
    a.cache().set_with("a:t", &1u32, &local("t")).await.unwrap();
    a.cache()
        .set_with("a:other", &2u32, &local("other"))
        .await
        .unwrap();
    // B's through the load path (a `#[cached(mode = "l1_only", tags = ..)]` call).
    let loaded: Result<u32, Error> = b
        .cache()
        .get_or_load_with("b:t", &local("t"), || async { Ok(3) })
        .await;
    assert_eq!(loaded.unwrap(), 3);
    b.cache()
        .set_with("b:other", &4u32, &local("other"))
        .await
        .unwrap();
    let in_redis = EntryOptions::new().tags(["t".to_owned()]);
    a.cache()
        .set_with("shared", &5u32, &in_redis)
        .await
        .unwrap();
    // Written L1-only with the tag, then rewritten into Redis without it: it stays.
    a.cache()
        .set_with("moved", &6u32, &local("t"))
        .await
        .unwrap();
    a.cache().set("moved", &7u32, None).await.unwrap();
    assert_eq!(
        b.cache().get::<u32>("b:t").await.unwrap(),
        Some(3),
        "B holds its L1-only entry before the invalidation"
    );

    assert_eq!(
        a.cache().invalidate_tags(&["t"]).await.unwrap(),
        2,
        "A's L1-only entry and the entry in Redis"
    );
    assert_eq!(a.cache().get::<u32>("a:t").await.unwrap(), None);
    assert_eq!(a.cache().get::<u32>("shared").await.unwrap(), None);
    assert_eq!(a.cache().get::<u32>("a:other").await.unwrap(), Some(2));
    assert_eq!(a.cache().get::<u32>("moved").await.unwrap(), Some(7));
    let gone = gone_within_100ms::<u32>(&b, "b:t").await;
    assert!(
        gone,
        "B's L1-only entry of the tag is evicted within 100 ms"
    );
    assert_eq!(b.cache().get::<u32>("b:other").await.unwrap(), Some(4));
    // Evicted entries left B's index too: invalidating again finds nothing anywhere.
    assert_eq!(b.cache().invalidate_tags(&["t"]).await.unwrap(), 0);
    assert_eq!(a.cache().get::<u32>("a:other").await.unwrap(), Some(2));
}

/// A pattern invalidation in a cache with Redis reaches the entries that live only in L1
/// (`mode = L1Only`) too, in this instance (counted) and in the others, and nothing outside
/// the pattern.
#[tokio::test]
async fn a_pattern_invalidation_reaches_l1_only_entries_in_every_instance() {
    let server = RedisServer::start();
    let prefix = unique_prefix("l1only_pattern");
    let a = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let b = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let local = EntryOptions::new().mode(CacheMode::L1Only);
    for (k, v) in [("user:1", 1u32), ("user:2", 2), ("team:1", 3)] {
        a.cache().set_with(k, &v, &local).await.unwrap();
    }
    b.cache().set_with("user:3", &4u32, &local).await.unwrap();
    b.cache().set_with("team:2", &5u32, &local).await.unwrap();
    a.cache().set("user:4", &6u32, None).await.unwrap();
    // An L1 copy of an entry in Redis is counted once, where Redis deletes it; one whose
    // entry Redis no longer holds is evicted and not counted.
    a.cache().set("user:5", &7u32, None).await.unwrap();
    assert_eq!(a.cache().get::<u32>("user:5").await.unwrap(), Some(7));
    a.cache().set("user:6", &8u32, None).await.unwrap();
    let mut conn = raw(&server).await;
    let _: u64 = redis::cmd("DEL")
        .arg(format!("{prefix}cache:user:6"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        a.cache().l1_len(),
        6,
        "A's L1 holds its five keys and user:6's copy"
    );
    assert_eq!(
        b.cache().get::<u32>("user:3").await.unwrap(),
        Some(4),
        "B holds its L1-only entry before the invalidation"
    );

    assert_eq!(
        a.cache().invalidate_pattern("user:*").await.unwrap(),
        4,
        "A's two L1-only entries and the two entries in Redis"
    );
    for k in ["user:1", "user:2", "user:4", "user:5", "user:6"] {
        assert_eq!(a.cache().get::<u32>(k).await.unwrap(), None, "{k}");
    }
    assert_eq!(a.cache().get::<u32>("team:1").await.unwrap(), Some(3));
    let gone = gone_within_100ms::<u32>(&b, "user:3").await;
    assert!(
        gone,
        "B's L1-only entry under the pattern is evicted within 100 ms"
    );
    assert_eq!(b.cache().get::<u32>("team:2").await.unwrap(), Some(5));
}

/// A caller in another instance that waits for a load is woken by the loader's write (the
/// wake-up message), not by its fallback poll. Event-driven: B is known to sleep once its
/// waiter flag is on the lock, and A's load ends only when the test releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_in_other_instances_are_woken_by_pubsub_not_polling() {
    let server = RedisServer::start();
    let prefix = unique_prefix("wake");
    let key = format!("{prefix}cache:slow");
    let mut conn = raw(&server).await;
    let a = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let b = runtime(&server.url(), &prefix, CacheConfig::default()).await;

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

/// After a run of hits the first read is a plain `GET` (no lock); a cold key must still be
/// loaded exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cold_key_after_many_hits_still_loads_once() {
    let server = RedisServer::start();
    let (a, b) = pair(
        &server,
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

#[tokio::test]
async fn the_l1_size_gauge_is_read_at_scrape_time() {
    let rx = RedisX::builder()
        .cache(CacheConfig::default().mode(CacheMode::L1Only))
        .build()
        .await
        .unwrap();
    for i in 0..7u8 {
        rx.cache().set(&format!("k{i}"), &i, None).await.unwrap();
    }
    assert!(
        rx.metrics_text().contains("redisx_cache_l1_entries 7"),
        "{}",
        rx.metrics_text()
    );
    rx.cache().delete("k0").await.unwrap();
    assert!(rx.metrics_text().contains("redisx_cache_l1_entries 6"));
}

/// Regression: a stale-while-revalidate refresh that was loading while the entry was deleted
/// must not write its value back (it compares the entry header it read).
#[tokio::test]
async fn a_refresh_does_not_resurrect_a_deleted_entry() {
    let server = RedisServer::start();
    let rx = runtime(
        &server.url(),
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
    let mut conn = raw(&server).await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(cache.full_key("doc"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists, "the refresh wrote its value back after the delete");
    assert_eq!(cache.get::<u32>("doc").await.unwrap(), None);
}

/// Regression: a load slower than the lock ttl lost its lock half-way, so another instance
/// loaded too and the first load's write never landed (a slow query was never cached). The
/// holder now renews its lock while it loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_slower_than_the_lock_ttl_keeps_its_lock_and_is_cached() {
    let server = RedisServer::start();
    let prefix = unique_prefix("slow_load");
    let key = format!("{prefix}cache:slow");
    let mut conn = raw(&server).await;
    let cfg = CacheConfig::default().stampede(StampedeConfig {
        lock_ttl: Duration::from_millis(150),
        ..StampedeConfig::default()
    });
    let a = runtime(&server.url(), &prefix, cfg.clone()).await;
    let b = runtime(&server.url(), &prefix, cfg).await;
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

fn waiting_config(fallback: StampedeFallback) -> CacheConfig {
    CacheConfig::default().stampede(StampedeConfig {
        wait_timeout: Duration::from_millis(200),
        fallback,
        ..StampedeConfig::default()
    })
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

/// Regression: callers waiting for a load of the same runtime waited without a deadline (a
/// hung loader hung them all). They now wait at most `wait_timeout`, then apply the fallback:
/// `Error` fails them with `CACHE_STAMPEDE_TIMEOUT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_wait_times_out_into_the_error_fallback() {
    let server = RedisServer::start();
    let prefix = unique_prefix("sf_timeout_error");
    let mut conn = raw(&server).await;
    let rx = runtime(
        &server.url(),
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

/// With the `Load` fallback, a caller whose in-process wait timed out runs its own loader
/// (and gets its value) while the leader still loads; the leader's write lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_wait_times_out_into_the_load_fallback() {
    let server = RedisServer::start();
    let prefix = unique_prefix("sf_timeout_load");
    let key = format!("{prefix}cache:k");
    let mut conn = raw(&server).await;
    let rx = runtime(
        &server.url(),
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

/// A caller of another instance waits at most `wait_timeout` for the lock holder's write,
/// then fails with `CACHE_STAMPEDE_TIMEOUT` under the `Error` fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_instance_wait_times_out_into_the_error_fallback() {
    let server = RedisServer::start();
    let prefix = unique_prefix("xi_timeout_error");
    let mut conn = raw(&server).await;
    let cfg = waiting_config(StampedeFallback::Error);
    let a = runtime(&server.url(), &prefix, cfg.clone()).await;
    let b = runtime(&server.url(), &prefix, cfg).await;
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

/// Regression: with stampede protection off, a miss read the entry twice (a plain `GET`, then
/// the same `GET` again where a lock would have been taken). It is one `GET` and one write.
#[tokio::test]
async fn without_stampede_protection_a_miss_is_one_read_and_one_write() {
    let server = RedisServer::start();
    let rx = runtime(
        &server.url(),
        &unique_prefix("no_stampede"),
        CacheConfig::default().stampede(StampedeConfig {
            enabled: false,
            ..StampedeConfig::default()
        }),
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

/// Regression: under `l1_max_bytes`, entries filled from an L2 hit, by `set_many` or in an
/// L1-only cache weighed only their key (their size was passed as 0), so the byte budget
/// did not bound memory. Every fill path now weighs the value.
#[tokio::test]
async fn the_l1_byte_budget_bounds_every_fill_path() {
    let server = RedisServer::start();
    let prefix = unique_prefix("l1_bytes");
    let budget = CacheConfig::default().l1_max_bytes(100_000);
    let big = |i: u32| vec![u8::try_from(i % 251).unwrap(); 2_000];
    // At about 2 kB each, 100 kB hold about 50 entries, whatever their number.
    let bound = 60;

    // L1-only: writes and loads.
    let local = RedisX::builder()
        .cache(budget.clone().mode(CacheMode::L1Only))
        .build()
        .await
        .unwrap();
    for i in 0..300 {
        local
            .cache()
            .set(&format!("s{i}"), &big(i), None)
            .await
            .unwrap();
        local
            .cache()
            .get_or_load(
                &format!("l{i}"),
                None,
                || async move { Ok::<_, Error>(big(i)) },
            )
            .await
            .unwrap();
    }
    assert!(
        local.cache().l1_len() <= bound,
        "an L1-only cache holds {} entries of 2 kB in a 100 kB budget",
        local.cache().l1_len()
    );
    let many: Vec<(String, Vec<u8>)> = (0..300).map(|i| (format!("m{i}"), big(i))).collect();
    local
        .cache()
        .set_many(many.clone(), &EntryOptions::new())
        .await
        .unwrap();
    assert!(
        local.cache().l1_len() <= bound,
        "set_many left {} entries",
        local.cache().l1_len()
    );

    // With Redis: entries written by one instance fill the other's L1 from L2 hits.
    let writer = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let reader = runtime(&server.url(), &prefix, budget).await;
    writer
        .cache()
        .set_many(many.clone(), &EntryOptions::new())
        .await
        .unwrap();
    for (k, v) in &many {
        assert_eq!(
            reader.cache().get::<Vec<u8>>(k).await.unwrap().as_ref(),
            Some(v)
        );
    }
    assert!(
        reader.cache().l1_len() <= bound,
        "L2 hits filled L1 with {} entries",
        reader.cache().l1_len()
    );
    let keys: Vec<&str> = many.iter().map(|(k, _)| k.as_str()).collect();
    reader.cache().clear_l1();
    let got = reader.cache().get_many::<Vec<u8>, _>(&keys).await.unwrap();
    assert!(got.iter().all(Option::is_some));
    assert!(
        reader.cache().l1_len() <= bound,
        "get_many filled L1 with {} entries",
        reader.cache().l1_len()
    );
    reader
        .cache()
        .set_many(many, &EntryOptions::new())
        .await
        .unwrap();
    assert!(
        reader.cache().l1_len() <= bound,
        "set_many with Redis left {} entries",
        reader.cache().l1_len()
    );
}

/// Regression: any value starting with byte 0xFE read as another caller's lock, so a call
/// waited the whole `wait_timeout` for a load that nobody was doing. Only a real marker (17
/// bytes, or 18 with a waiter's flag) is a lock; other bytes are a corrupt entry: a miss.
#[tokio::test]
async fn a_foreign_value_starting_like_a_marker_is_not_waited_for() {
    let server = RedisServer::start();
    let prefix = unique_prefix("fake_marker");
    let rx = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let mut conn = raw(&server).await;
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

/// Regression: one key under the cache's prefix that is not UTF-8 (another program's) made
/// `SCAN` fail to decode, so `clear` and `invalidate_pattern` failed altogether.
#[tokio::test]
async fn clear_and_pattern_invalidation_handle_keys_that_are_not_utf8() {
    let server = RedisServer::start();
    let prefix = unique_prefix("binary_keys");
    let rx = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let mut conn = raw(&server).await;
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

/// Regression: a tag invalidation claims (deletes) its tag indexes, then deletes the tagged
/// entries in a second round trip. When that second step failed, the indexes were gone, so
/// the caller's retry deleted nothing and the entries stayed until their ttl. The claimed
/// members are now put back. (The failure is made real with an ACL user that may touch the
/// tag indexes but not the entries.)
#[tokio::test]
async fn a_tag_invalidation_that_fails_half_way_keeps_its_index_for_a_retry() {
    let server = RedisServer::start();
    let prefix = unique_prefix("tag_retry");
    let writer = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let tagged = EntryOptions::new().tags(["users"]);
    for k in ["a", "b"] {
        writer.cache().set_with(k, &1u8, &tagged).await.unwrap();
    }
    let mut conn = raw(&server).await;
    let index = format!("{prefix}cache:_tag:users");
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("tags_only")
        .arg("on")
        .arg(">secret")
        .arg("resetkeys")
        .arg(format!("~{prefix}cache:_tag:*"))
        .arg("resetchannels")
        .arg("&*")
        .arg("+@all")
        .query_async(&mut conn)
        .await
        .unwrap();
    let limited = runtime(
        &server.url_with_auth("tags_only", "secret"),
        &prefix,
        CacheConfig::default(),
    )
    .await;
    let score = |m: &'static str| redis::cmd("ZSCORE").arg(&index).arg(m).clone();
    let before: f64 = score("a").query_async(&mut conn).await.unwrap();
    let err = limited
        .cache()
        .invalidate_tags(&["users"])
        .await
        .expect_err("the entries are out of this user's reach");
    assert_eq!(err.code(), ErrorCode::CacheTagInvalidationFailed, "{err}");
    let mut members: Vec<String> = redis::cmd("ZRANGE")
        .arg(&index)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    members.sort();
    assert_eq!(members, ["a", "b"], "the claimed index was not put back");
    let after: f64 = score("a").query_async(&mut conn).await.unwrap();
    assert!(
        (after - before).abs() < f64::EPSILON,
        "a member was put back with another score ({before} -> {after}): it would be pruned at the wrong time"
    );
    assert_eq!(writer.cache().invalidate_tags(&["users"]).await.unwrap(), 2);
    for k in ["a", "b"] {
        assert_eq!(writer.cache().get::<u8>(k).await.unwrap(), None);
    }
}

/// The members (user keys) of a tag index, sorted, and its Redis type.
async fn index_members(
    conn: &mut redis::aio::MultiplexedConnection,
    index: &str,
) -> (String, Vec<String>) {
    let kind: String = redis::cmd("TYPE")
        .arg(index)
        .query_async(conn)
        .await
        .unwrap();
    let mut members: Vec<String> = match kind.as_str() {
        "zset" => redis::cmd("ZRANGE")
            .arg(index)
            .arg(0)
            .arg(-1)
            .query_async(conn)
            .await
            .unwrap(),
        "set" => redis::cmd("SMEMBERS")
            .arg(index)
            .query_async(conn)
            .await
            .unwrap(),
        _ => Vec::new(),
    };
    members.sort();
    (kind, members)
}

/// Regression: a tag index was a plain set that only ever grew: the key of every entry ever
/// written under a busy tag stayed in it (the index's ttl is renewed by each write), and its
/// invalidation read them all. Indexes are sorted sets scored by when each entry ends; every
/// write prunes the members whose entries ended (with a margin for clock skew).
#[tokio::test]
async fn tag_indexes_drop_the_keys_of_ended_entries() {
    let server = RedisServer::start();
    let prefix = unique_prefix("tag_prune");
    let rx = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let cache = rx.cache();
    let mut conn = raw(&server).await;
    let index = format!("{prefix}cache:_tag:busy");
    let tagged = EntryOptions::new().tags(["busy"]);
    cache.set_with("live", &1u8, &tagged).await.unwrap();
    // Members whose entries ended long ago (scored as their writers did), and one that
    // ended within the skew margin.
    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let mut zadd = redis::cmd("ZADD");
    zadd.arg(&index);
    for i in 0..500 {
        zadd.arg(now - 3_600_000).arg(format!("gone:{i}"));
    }
    zadd.arg(now - 1_000).arg("just ended");
    let _: u64 = zadd.query_async(&mut conn).await.unwrap();
    assert_eq!(index_members(&mut conn, &index).await.1.len(), 502);
    cache.set_with("another", &1u8, &tagged).await.unwrap();
    let (kind, members) = index_members(&mut conn, &index).await;
    assert_eq!(kind, "zset");
    assert_eq!(
        members,
        ["another", "just ended", "live"],
        "the keys of entries that ended an hour ago are pruned, the recent one is kept"
    );
    // A rewrite moves its member's score later, never earlier.
    let score = |m: &'static str| redis::cmd("ZSCORE").arg(&index).arg(m).clone();
    let before: f64 = score("live").query_async(&mut conn).await.unwrap();
    cache
        .set_with("live", &2u8, &tagged.clone().ttl(Duration::from_secs(1)))
        .await
        .unwrap();
    let after: f64 = score("live").query_async(&mut conn).await.unwrap();
    assert!(
        (after - before).abs() < f64::EPSILON,
        "a shorter rewrite moved the score earlier"
    );
    assert_eq!(cache.invalidate_tags(&["busy"]).await.unwrap(), 2);
}

/// A tag index written before indexes were sorted sets (a plain set) is converted by the
/// first write that meets it, keeping its members, and invalidation reads either kind.
#[tokio::test]
async fn a_plain_set_tag_index_is_converted_and_keeps_its_members() {
    let server = RedisServer::start();
    let prefix = unique_prefix("tag_migrate");
    let rx = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let cache = rx.cache();
    let mut conn = raw(&server).await;
    let old_index = |tag: &str| format!("{prefix}cache:_tag:{tag}");
    let tagged = |tag: &str| EntryOptions::new().tags([tag.to_owned()]);
    for tag in ["one", "many"] {
        cache
            .set_with(&format!("{tag}:old"), &1u8, &tagged(tag))
            .await
            .unwrap();
        // Replace the index with what an older redisx wrote: a plain set, with a ttl.
        let () = redis::pipe()
            .cmd("DEL")
            .arg(old_index(tag))
            .ignore()
            .cmd("SADD")
            .arg(old_index(tag))
            .arg(format!("{tag}:old"))
            .ignore()
            .cmd("PEXPIRE")
            .arg(old_index(tag))
            // Longer than `max_ttl` (24 h): the index outlived a long stale-if-error window.
            .arg(3 * 86_400_000)
            .ignore()
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // A write through the load path, and a set_many.
    let v = cache
        .get_or_load_with("one:new", &tagged("one"), || async { Ok::<_, Error>(2u8) })
        .await
        .unwrap();
    assert_eq!(v, 2);
    cache
        .set_many([("many:a", 1u8), ("many:b", 2u8)], &tagged("many"))
        .await
        .unwrap();
    let (kind, members) = index_members(&mut conn, &old_index("one")).await;
    assert_eq!(
        (kind.as_str(), members),
        ("zset", vec!["one:new".to_owned(), "one:old".to_owned()])
    );
    let (kind, members) = index_members(&mut conn, &old_index("many")).await;
    assert_eq!(kind, "zset");
    assert_eq!(members, ["many:a", "many:b", "many:old"]);
    let pttl = pttl(&mut conn, &old_index("many")).await;
    assert!(
        pttl > 2 * 86_400_000,
        "the converted index kept its ttl: {pttl} ms"
    );
    // Old members end with the old index (its ttl covered their entries), so no write prunes
    // them while their entries may live.
    let old_score: f64 = redis::cmd("ZSCORE")
        .arg(old_index("many"))
        .arg("many:old")
        .query_async(&mut conn)
        .await
        .unwrap();
    #[allow(clippy::cast_precision_loss, reason = "unix ms fit a f64 exactly")]
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    assert!(
        old_score > now_ms + 2.0 * 86_400_000.0,
        "an old member is scored to end with its index: {old_score} (now {now_ms})"
    );
    assert_eq!(cache.stats().errors, 0, "the writes did not fail");
    assert_eq!(cache.invalidate_tags(&["one", "many"]).await.unwrap(), 5);
    for k in ["one:old", "one:new", "many:old", "many:a", "many:b"] {
        assert_eq!(cache.get::<u8>(k).await.unwrap(), None, "{k} survived");
    }
}

/// A hung loader keeps its lock renewed only for the stampede `wait_timeout`: then the lock
/// lapses (one lock ttl later), so the key is not blocked for ever; the next caller loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_load_holds_its_lock_for_wait_timeout_at_most() {
    let server = RedisServer::start();
    let prefix = unique_prefix("hung_load");
    let key = format!("{prefix}cache:k");
    let mut conn = raw(&server).await;
    let cfg = CacheConfig::default().stampede(StampedeConfig {
        lock_ttl: Duration::from_millis(150),
        wait_timeout: Duration::from_millis(400),
        fallback: StampedeFallback::Error,
        ..StampedeConfig::default()
    });
    let a = runtime(&server.url(), &prefix, cfg.clone()).await;
    let b = runtime(&server.url(), &prefix, cfg).await;
    let (release, hung) = gated_load(a.cache(), "k", "from a");
    raw_until(&mut conn, &key, "A's marker", is_marker).await;
    let lapsed = eventually(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || async { raw_get(&mut raw(&server).await, &key).await.is_none() },
    )
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

/// Regression: the claims of an invalidation went out in one pipeline; when one claim failed,
/// the whole call failed before the indexes the other claims had already taken (and
/// deleted) were processed, so their entries stayed until their ttl. Each claim is now judged
/// on its own: the ones that succeeded are deleted, and the call still reports the failure.
#[tokio::test]
async fn a_failed_claim_does_not_lose_the_other_tags_indexes() {
    let server = RedisServer::start();
    let prefix = unique_prefix("claim_partial");
    let writer = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let tagged = |t: &str| EntryOptions::new().tags([t.to_owned()]);
    for k in ["a1", "a2"] {
        writer
            .cache()
            .set_with(k, &1u8, &tagged("allowed"))
            .await
            .unwrap();
    }
    writer
        .cache()
        .set_with("d1", &1u8, &tagged("denied"))
        .await
        .unwrap();
    let mut conn = raw(&server).await;
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("some_tags")
        .arg("on")
        .arg(">secret")
        .arg("resetkeys")
        .arg(format!("~{prefix}cache:_tag:allowed"))
        .arg(format!("~{prefix}cache:a*"))
        .arg("resetchannels")
        .arg("&*")
        .arg("+@all")
        .query_async(&mut conn)
        .await
        .unwrap();
    let limited = runtime(
        &server.url_with_auth("some_tags", "secret"),
        &prefix,
        CacheConfig::default(),
    )
    .await;
    let err = limited
        .cache()
        .invalidate_tags(&["allowed", "denied"])
        .await
        .expect_err("the `denied` index is out of this user's reach");
    assert_eq!(err.code(), ErrorCode::CacheTagInvalidationFailed, "{err}");
    for k in ["a1", "a2"] {
        assert_eq!(
            raw_get(&mut conn, &writer.cache().full_key(k)).await,
            None,
            "{k} survived: its tag's claimed index was dropped unprocessed"
        );
    }
    assert_eq!(
        index_members(&mut conn, &format!("{prefix}cache:_tag:denied"))
            .await
            .1,
        ["d1"],
        "the index that could not be claimed is untouched"
    );
    assert_eq!(
        writer.cache().invalidate_tags(&["denied"]).await.unwrap(),
        1
    );
}

/// After its invalidation connection drops, an instance resubscribes and empties its L1 (it
/// may have missed messages meanwhile): a value B held in L1 before a Redis restart is not
/// served for the rest of its L1 ttl, and B sees A's updates within 100 ms again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reconnect_an_instance_resubscribes_and_empties_its_l1() {
    let mut server = RedisServer::start_owned();
    let prefix = unique_prefix("resubscribe");
    let build = || async {
        RedisX::builder()
            .client(
                "default",
                ConnectionConfig::from_url(&server.url())
                    .unwrap()
                    .command_timeout(Duration::from_millis(500))
                    .reconnect(redisx::ReconnectPolicy {
                        initial: Duration::from_millis(50),
                        max: Duration::from_millis(200),
                        ..redisx::ReconnectPolicy::default()
                    }),
            )
            .key_prefix(&prefix)
            .cache(CacheConfig::default())
            .build()
            .await
            .unwrap()
    };
    let (a, b) = (build().await, build().await);
    a.cache().set("k", &1u32, None).await.unwrap();
    // B fills L1 from Redis; A's invalidation message for its write may still arrive and
    // evict that copy, so read until the copy stays.
    let held = eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            assert_eq!(b.cache().get::<u32>("k").await.unwrap(), Some(1));
            tokio::time::sleep(Duration::from_millis(50)).await;
            b.cache().l1_len() == 1
        },
    )
    .await;
    assert!(held, "B never kept k in L1");

    server.restart();
    // The new value reaches Redis without any message (as one lost in the outage would):
    // A writes it under another key once reconnected, and its bytes are copied over raw.
    let mut conn = raw(&server).await;
    let written = eventually(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            a.cache().set("source", &2u32, None).await.unwrap();
            raw_get(&mut raw(&server).await, &a.cache().full_key("source"))
                .await
                .is_some()
        },
    )
    .await;
    assert!(written, "A never wrote to the restarted server");
    let bytes = raw_get(&mut conn, &a.cache().full_key("source"))
        .await
        .unwrap();
    let () = redis::cmd("SET")
        .arg(a.cache().full_key("k"))
        .arg(bytes)
        .query_async(&mut conn)
        .await
        .unwrap();
    // B's L1 still holds 1 (its ttl is 60 s) and no message names k: only B's listener,
    // resubscribing, can drop it.
    let recovered = eventually(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async { b.cache().get::<u32>("k").await.unwrap() == Some(2) },
    )
    .await;
    assert!(
        recovered,
        "B kept serving its L1 copy from before the restart"
    );
    // Subscribed again: A's next update reaches B's L1 within the cross-instance bound.
    assert_eq!(b.cache().get::<u32>("k").await.unwrap(), Some(2));
    a.cache().set("k", &3u32, None).await.unwrap();
    let updated = eventually(Duration::from_millis(100), POLL, || async {
        b.cache().get::<u32>("k").await.unwrap() == Some(3)
    })
    .await;
    assert!(updated, "B did not see A's update after resubscribing");
}
