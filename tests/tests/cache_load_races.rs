//! Writes that meet a load in flight, against real Redis (a standalone server and the cluster):
//! an invalidation (by key, or by a tag of the loading call whose index did not name the key
//! yet) or an explicit `set` during a load wins over the load's write, and a load that outlived
//! an invalidation leaves the next loader's lock alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redisx::cache::EntryOptions;
use redisx::testing::{Deployment, Topology};
use redisx::{CacheConfig, Error, ErrorCode};
use redisx_tests::cache::{gated_load, is_marker, pttl, raw_get, raw_until};
use redisx_tests::{runtime, unique_prefix};

async fn invalidation_during_a_load_wins(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(
        &deployment.url(),
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

redisx_tests::on_topologies!(invalidation_during_a_load_wins);

/// A load that outlives an invalidation must not touch the lock of the caller that loads
/// after it: that caller's marker (with its waiter flag, and its ttl) stays exactly as it
/// was, its write lands, and its waiter is woken by it.
async fn a_stale_load_leaves_the_next_loaders_lock_intact(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("relock");
    let key = format!("{prefix}cache:k");
    let mut conn = deployment.raw_connection().await;
    let a = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;
    let b = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;
    let c = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;

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

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 4]
    a_stale_load_leaves_the_next_loaders_lock_intact
);

/// An explicit `set` while a load runs wins over the load: the loaded value is never stored,
/// and the set's entry keeps its value and its Redis expiry.
async fn an_explicit_set_during_a_load_is_not_overwritten_by_it(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("set_load");
    let key = format!("{prefix}cache:k");
    let mut conn = deployment.raw_connection().await;
    let rx = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;
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

redisx_tests::on_topologies!(an_explicit_set_during_a_load_is_not_overwritten_by_it);

/// The first load of a tagged key: its tags' indexes do not name it until its write, yet a tag
/// invalidation while it loads wins (the key is indexed when the load takes its lock): the
/// value read before the invalidation is never stored.
async fn a_tag_invalidation_during_a_first_load_wins(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("tag_load");
    let key = format!("{prefix}cache:product:1");
    let mut conn = deployment.raw_connection().await;
    let rx = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;
    let cache = rx.cache().clone();
    let (release, go) = tokio::sync::oneshot::channel::<()>();
    let loading = cache.clone();
    let load = tokio::spawn(async move {
        let opts = EntryOptions::new().tags(["product:1"]);
        loading
            .get_or_load_with("product:1", &opts, || async move {
                go.await
                    .map_err(|_| Error::new(ErrorCode::Internal, "the test dropped the gate"))?;
                Ok::<_, Error>("read before the change".to_owned())
            })
            .await
    });
    raw_until(&mut conn, &key, "the loader's marker", is_marker).await;
    cache.invalidate_tags(&["product:1"]).await.unwrap();
    release.send(()).unwrap();
    assert_eq!(
        load.await.unwrap().unwrap(),
        "read before the change",
        "the caller still gets its value"
    );
    cache.clear_l1();
    assert_eq!(
        cache.get::<String>("product:1").await.unwrap(),
        None,
        "a value loaded before a tag invalidation must not be written back"
    );
}

redisx_tests::on_topologies!(a_tag_invalidation_during_a_first_load_wins);
