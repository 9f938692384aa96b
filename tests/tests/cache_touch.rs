//! Sliding expiry (`Cache::touch`, `Cache::get_and_touch`) against real Redis, on a standalone
//! server and on the cluster: the entry's freshness, Redis ttl and tag index move forward
//! together, an entry touched in time outlives its first ttl and ends once the touches stop,
//! a stale, missing or corrupt entry is not revived, this instance's L1 copy follows the touch;
//! an L1-only cache extends L1; bad input and a stopped server are errors.

use std::time::{Duration, Instant};

use redisx::cache::EntryOptions;
use redisx::testing::{Deployment, Topology};
use redisx::{CacheConfig, CacheMode, ConnectionConfig, ErrorCode, RedisX};
use redisx_tests::cache::{POLL, pair, pttl};
use redisx_tests::{RedisServer, eventually, raw_query, runtime, unique_prefix};

const MINUTE: Duration = Duration::from_secs(60);

/// Unix time in milliseconds.
fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A touch moves the entry's freshness (`ttl`), its Redis ttl and its tag index scores to the
/// new ttl, keeps its value and tags (a tag invalidation still deletes it, in every instance),
/// and is `false` for a missing key.
async fn a_touch_moves_the_expiry_and_keeps_the_tags(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "touch_moves", CacheConfig::default()).await;
    let mut conn = deployment.raw_connection().await;
    let opts = EntryOptions::new()
        .ttl(Duration::from_secs(2))
        .tags(["sessions", "user:7"]);
    a.cache()
        .set_with("session:s1", &"user-7".to_owned(), &opts)
        .await
        .unwrap();
    let full = a.cache().full_key("session:s1");
    assert!(pttl(&mut conn, &full).await <= 2000);

    assert!(a.cache().touch("session:s1", Some(MINUTE)).await.unwrap());
    let left = a.cache().ttl("session:s1").await.unwrap();
    assert!(left > Duration::from_secs(58), "fresh for {left:?}");
    let px = pttl(&mut conn, &full).await;
    assert!(px > 58_000, "redis ttl {px} ms");
    for tag in ["sessions", "user:7"] {
        let tag_key = a.cache().full_key(&format!("_tag:{tag}"));
        let score: Option<u64> = raw_query(
            &deployment,
            redis::cmd("ZSCORE").arg(&tag_key).arg("session:s1"),
        )
        .await;
        let score = score.expect("still indexed");
        assert!(score > now_ms() + 58_000, "{tag} index ends at {score}");
    }
    // The value is intact: the other instance reads it from Redis.
    let read: Option<String> = b.cache().get("session:s1").await.unwrap();
    assert_eq!(read.as_deref(), Some("user-7"));
    assert!(!a.cache().touch("session:none", None).await.unwrap());

    // get_and_touch reads and extends in one step (here, back down to 30 s).
    let read: Option<String> = b
        .cache()
        .get_and_touch("session:s1", Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(read.as_deref(), Some("user-7"));
    // The Redis ttl moves by as much as the freshness: it keeps the few milliseconds it was
    // ahead of `stale_at` when the entry was written (the SET reached Redis after its writer
    // read its clock).
    let px = pttl(&mut conn, &full).await;
    assert!(px > 28_000 && px <= 30_050, "redis ttl {px} ms");
    let none: Option<String> = b.cache().get_and_touch("session:none", None).await.unwrap();
    assert_eq!(none, None);

    // The touched entry still belongs to its tags, in Redis and in both L1s.
    assert_eq!(a.cache().invalidate_tags(&["user:7"]).await.unwrap(), 1);
    let gone = eventually(Duration::from_secs(2), POLL, || async {
        let ra: Option<String> = a.cache().get("session:s1").await.unwrap();
        let rb: Option<String> = b.cache().get("session:s1").await.unwrap();
        ra.is_none() && rb.is_none()
    })
    .await;
    assert!(gone, "the tag invalidation reached both instances");
    a.shutdown().await;
    b.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_touch_moves_the_expiry_and_keeps_the_tags
);

/// Touched every 200 ms with a 1 s ttl, an entry outlives its first second; once the touches
/// stop, it ends.
async fn touches_keep_an_entry_alive_until_they_stop(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(
        &deployment.url(),
        &unique_prefix("touch_alive"),
        CacheConfig::default().mode(CacheMode::L2Only),
    )
    .await;
    let cache = rx.cache();
    let ttl = Some(Duration::from_secs(1));
    cache.set("session:s2", &7u32, ttl).await.unwrap();
    let written = Instant::now();
    while written.elapsed() < Duration::from_millis(2500) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let v: Option<u32> = cache.get_and_touch("session:s2", ttl).await.unwrap();
        assert_eq!(v, Some(7), "alive {:?} after the write", written.elapsed());
    }
    let ended = eventually(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async {
            let v: Option<u32> = cache.get("session:s2").await.unwrap();
            v.is_none()
        },
    )
    .await;
    assert!(ended, "the entry ended once the touches stopped");
    assert!(!cache.touch("session:s2", ttl).await.unwrap());
    rx.shutdown().await;
}

redisx_tests::on_topologies!(touches_keep_an_entry_alive_until_they_stop);

/// A stale entry (inside its SWR window) is not made fresh again, and neither a lock marker
/// nor bytes that are no entry are touched; an entry whose value does not decode is removed.
async fn stale_and_foreign_entries_are_not_revived(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(
        &deployment.url(),
        &unique_prefix("touch_stale"),
        CacheConfig::default().mode(CacheMode::L2Only),
    )
    .await;
    let cache = rx.cache();
    let opts = EntryOptions::new()
        .ttl(Duration::from_millis(200))
        .swr(MINUTE);
    cache.set_with("stale", &1u8, &opts).await.unwrap();
    let stale = eventually(Duration::from_secs(2), POLL, || async {
        cache.ttl("stale").await.is_none()
    })
    .await;
    assert!(stale, "the entry went stale");
    assert!(cache.has("stale").await, "stale, still stored");
    assert!(!cache.touch("stale", Some(MINUTE)).await.unwrap());
    let v: Option<u8> = cache.get_and_touch("stale", Some(MINUTE)).await.unwrap();
    assert_eq!(v, None);
    assert_eq!(cache.ttl("stale").await, None, "still stale");

    let foreign = cache.full_key("foreign");
    let _: () = raw_query(
        &deployment,
        redis::cmd("SET").arg(&foreign).arg("not an entry"),
    )
    .await;
    assert!(!cache.touch("foreign", None).await.unwrap());
    let v: Option<u8> = cache.get_and_touch("foreign", None).await.unwrap();
    assert_eq!(v, None);
    let kept: Option<String> = raw_query(&deployment, redis::cmd("GET").arg(&foreign)).await;
    assert_eq!(kept.as_deref(), Some("not an entry"), "left as it was");

    // A valid header over a value that does not decode as the type read: removed.
    cache.set("typed", &"text".to_owned(), None).await.unwrap();
    let v: Option<[u64; 8]> = cache.get_and_touch("typed", None).await.unwrap();
    assert_eq!(v, None);
    let exists: bool = raw_query(
        &deployment,
        redis::cmd("EXISTS").arg(cache.full_key("typed")),
    )
    .await;
    assert!(!exists, "the corrupt entry was removed");
    assert!(cache.stats().corrupt_entries >= 1);
    rx.shutdown().await;
}

redisx_tests::on_topologies!(stale_and_foreign_entries_are_not_revived);

/// This instance's L1 copy lives as long as the touch says: past the entry's first ttl, reads
/// are still L1 hits. Another instance's copy keeps its own expiry and then reads the touched
/// entry from Redis.
async fn l1_follows_the_touch(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "touch_l1", CacheConfig::default()).await;
    let ttl = Some(Duration::from_millis(800));
    a.cache().set("k", &5u32, ttl).await.unwrap();
    let v: Option<u32> = b.cache().get("k").await.unwrap();
    assert_eq!(
        v,
        Some(5),
        "b holds an L1 copy that ends with the first ttl"
    );
    assert!(a.cache().touch("k", Some(MINUTE)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let before = a.cache().stats();
    let v: Option<u32> = a.cache().get("k").await.unwrap();
    assert_eq!(v, Some(5));
    let after = a.cache().stats();
    assert_eq!(
        after.l1_hits,
        before.l1_hits + 1,
        "a's copy followed the touch"
    );
    assert_eq!(after.l2_hits, before.l2_hits);

    let before = b.cache().stats();
    let v: Option<u32> = b.cache().get("k").await.unwrap();
    assert_eq!(v, Some(5), "b reads the touched entry");
    let after = b.cache().stats();
    assert_eq!(after.l2_hits, before.l2_hits + 1, "b's copy had ended");
    a.shutdown().await;
    b.shutdown().await;
}

redisx_tests::on_topologies!([flavor = "multi_thread", worker_threads = 2] l1_follows_the_touch);

#[tokio::test]
async fn an_l1_only_cache_extends_its_l1_entry() {
    let rx = RedisX::builder()
        .cache(CacheConfig::default().mode(CacheMode::L1Only))
        .build()
        .await
        .unwrap();
    let cache = rx.cache();
    cache
        .set("s", &1u8, Some(Duration::from_millis(500)))
        .await
        .unwrap();
    assert!(cache.touch("s", Some(MINUTE)).await.unwrap());
    let left = cache.ttl("s").await.unwrap();
    assert!(left > Duration::from_secs(58), "{left:?}");
    let v: Option<u8> = cache.get_and_touch("s", None).await.unwrap();
    assert_eq!(v, Some(1));
    assert!(!cache.touch("missing", None).await.unwrap());
    let none: Option<u8> = cache.get_and_touch("missing", None).await.unwrap();
    assert_eq!(none, None);
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_a_stopped_server_are_errors() {
    let mut server = RedisServer::start_owned();
    let rx = RedisX::builder()
        .client(
            "default",
            ConnectionConfig::from_url(&server.url())
                .unwrap()
                .command_timeout(Duration::from_millis(500)),
        )
        .key_prefix(unique_prefix("touch_errors"))
        .build()
        .await
        .unwrap();
    let cache = rx.cache();
    let err = cache.touch("bad\nkey", None).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::CacheKeyInvalid);
    let err = cache
        .get_and_touch::<u8>("k", Some(Duration::from_secs(2 * 86_400)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid);
    cache.set("k", &1u8, Some(MINUTE)).await.unwrap();

    server.kill();
    let err = cache.touch("k", Some(MINUTE)).await.unwrap_err();
    assert_eq!(err.code().family(), "connection", "{err:#}");
    let err = cache.get_and_touch::<u8>("k", None).await.unwrap_err();
    assert_eq!(err.code().family(), "connection", "{err:#}");
    assert!(cache.stats().errors == 0, "reported, not failed open");
    rx.shutdown().await;
}
