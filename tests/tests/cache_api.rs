//! The cache's service API against real Redis: get/set/delete and their `_many` forms, `has`,
//! `ttl`, `clear`, `warmup`, `keys_by_tag`, pattern invalidation and input validation (on every
//! topology: standalone, cluster, sentinel); a cache without Redis (L1 only); and what L1
//! reports and holds (the size gauge; the byte budget, with L2 on a standalone server and on
//! the cluster).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redisx::cache::EntryOptions;
use redisx::testing::{Deployment, Topology};
use redisx::{CacheConfig, CacheMode, Error, ErrorCode, RedisX};
use redisx_tests::{runtime, unique_prefix};

async fn service_api_round_trip_on(topology: Topology) {
    eprintln!("on {topology}");
    let deployment = Deployment::start(topology);
    let url = deployment.url();
    let rx = runtime(&url, &unique_prefix("api"), CacheConfig::default()).await;
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
    let other = runtime(&url, &unique_prefix("api_other"), CacheConfig::default()).await;
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
async fn service_api_round_trip() {
    for &topology in Topology::ALL {
        service_api_round_trip_on(topology).await;
    }
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

/// Under `l1_max_bytes`, every fill path (an L2 hit, `set_many`, an L1-only cache) weighs the
/// value, not only its key, so the byte budget bounds memory.
async fn the_l1_byte_budget_bounds_every_fill_path(topology: Topology) {
    let deployment = Deployment::start(topology);
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
    let writer = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;
    let reader = runtime(&deployment.url(), &prefix, budget).await;
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

redisx_tests::on_topologies!(the_l1_byte_budget_bounds_every_fill_path);
