//! Tags against real Redis: invalidation deletes exactly the tagged entries, `keys_by_tag`,
//! rewrites that drop a tag and pruning of the sorted-set tag indexes, on a standalone server
//! and on the cluster; rewrites in an L1-only cache; and invalidations that fail half-way
//! (made real with ACL users on a standalone server) keeping what a retry needs.

use std::time::Duration;

use redisx::cache::EntryOptions;
use redisx::testing::{Deployment, Topology};
use redisx::{CacheConfig, CacheMode, Error, ErrorCode, RedisX};
use redisx_tests::cache::{POLL, pair, raw, raw_get};
use redisx_tests::{RedisServer, eventually, runtime, unique_prefix};

async fn tag_invalidation_removes_every_tagged_key_and_nothing_else(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("tags10k");
    let rx = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;
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

    let mut conn = deployment.raw_connection().await;
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

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    tag_invalidation_removes_every_tagged_key_and_nothing_else
);

async fn keys_by_tag_lists_the_indexed_keys(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(
        &deployment.url(),
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

redisx_tests::on_topologies!(keys_by_tag_lists_the_indexed_keys);

/// An entry rewritten without a tag it had is not deleted by that tag's invalidation, in
/// Redis or in another instance's L1; an entry that still carries the tag is.
async fn a_retagged_entry_survives_the_invalidation_of_its_old_tag(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "retag", CacheConfig::default()).await;
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

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_retagged_entry_survives_the_invalidation_of_its_old_tag
);

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

/// The members (user keys) of a tag index, sorted, and its Redis type.
async fn index_members(
    conn: &mut impl redis::aio::ConnectionLike,
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
async fn tag_indexes_drop_the_keys_of_ended_entries(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("tag_prune");
    let rx = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;
    let cache = rx.cache();
    let mut conn = deployment.raw_connection().await;
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

redisx_tests::on_topologies!(tag_indexes_drop_the_keys_of_ended_entries);

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
