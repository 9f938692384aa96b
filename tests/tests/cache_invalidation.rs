//! Cross-instance L1 invalidation against real Redis. Two `RedisX` runtimes on one deployment
//! stand for two instances of a service: a write, delete, tag or pattern invalidation in one
//! reaches the other's L1 within 100 ms (entries that live only in L1 too), on a standalone
//! server and on the cluster; and an instance that lost its subscription resubscribes and
//! empties its L1 (a server restart: standalone only).

use std::time::Duration;

use redisx::cache::EntryOptions;
use redisx::testing::{Deployment, Topology};
use redisx::{CacheConfig, CacheMode, ConnectionConfig, Error, RedisX};
use redisx_tests::cache::{POLL, pair, raw, raw_get};
use redisx_tests::{RedisServer, eventually, runtime, unique_prefix};

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

async fn an_update_through_a_reaches_b_l1_within_100ms(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "l1_update", CacheConfig::default()).await;
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

async fn tag_invalidation_through_a_reaches_b_l1_within_100ms(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "l1_tags", CacheConfig::default()).await;
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

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    an_update_through_a_reaches_b_l1_within_100ms,
    tag_invalidation_through_a_reaches_b_l1_within_100ms,
);

/// Entries written with `mode = L1Only` in a cache with Redis live only in each instance's
/// L1, where Redis's tag index never sees them: a tag invalidation still reaches them, in the
/// invalidating instance (counted) and, by its message, in the others, and leaves entries of
/// other tags alone.
async fn a_tag_invalidation_reaches_l1_only_entries_in_every_instance(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("l1only_tags");
    let a = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;
    let b = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;
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
async fn a_pattern_invalidation_reaches_l1_only_entries_in_every_instance(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("l1only_pattern");
    let a = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;
    let b = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;
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
    let mut conn = deployment.raw_connection().await;
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

redisx_tests::on_topologies!(
    a_tag_invalidation_reaches_l1_only_entries_in_every_instance,
    a_pattern_invalidation_reaches_l1_only_entries_in_every_instance,
);

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
                    .reconnect(
                        redisx::ReconnectPolicy::default()
                            .initial(Duration::from_millis(50))
                            .max(Duration::from_millis(200)),
                    ),
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
