//! The cache plugin's main paths on every topology of `Topology::ALL` (standalone, a 3-master
//! cluster, a sentinel set), each test one body taking the topology as a parameter:
//!
//! - set/get/delete through L2 (a second, L2-only runtime sees what the first wrote), and
//!   `set_many`/`get_many`/`delete_many` of keys spread over every cluster master;
//! - tags: invalidating a tag deletes all its entries whatever their slot (also two tags
//!   whose indexes sit in different slots at once) and nothing else;
//! - `invalidate_pattern` and `clear` reach the keys on every master (checked with a `SCAN`
//!   on each master node, outside redisx);
//! - a `#[cached]` function: miss, L1 hit, L2 hit, read by another runtime, tag invalidation;
//! - cross-runtime L1 invalidation over pub/sub: an update, a delete, a tag, a pattern and a
//!   clear in one runtime evict the other's L1 copies (bounded `eventually` waits, no timing
//!   assertions).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redisx::cache::EntryOptions;
use redisx::testing::{Deployment, Topology, eventually, raw_connection, unique_prefix};
use redisx::{CacheConfig, CacheMode, RedisX, cached, redis};
use redisx_tests::cache::POLL;

/// Keys per family: enough that, hashed without hash tags, they land on all three masters
/// (each misses one of them with a chance of 3 x (2/3)^50, about 5e-9).
const N: usize = 50;

/// How long another runtime may take to see a change (a pub/sub message in flight).
const WITHIN: Duration = Duration::from_secs(2);

/// A runtime on `deployment` under `prefix` with the cache in `mode`.
async fn runtime(deployment: &Deployment, prefix: &str, mode: CacheMode) -> RedisX {
    deployment
        .redisx_builder()
        .key_prefix(prefix)
        .cache(CacheConfig::default().mode(mode))
        .build()
        .await
        .unwrap_or_else(|e| panic!("a runtime on {}: {e}", deployment.topology()))
}

/// The user keys `{family}:0` .. `{family}:{N-1}`.
fn family(family: &str) -> Vec<String> {
    (0..N).map(|i| format!("{family}:{i}")).collect()
}

/// How many keys match the glob `pattern` on each node that holds data, read with `SCAN` on a
/// raw connection to the node: each master of a cluster (three), else the one server (the
/// master the sentinels name).
async fn keys_per_node(deployment: &Deployment, pattern: &str) -> Vec<usize> {
    let urls = deployment.master_urls();
    if deployment.cluster().is_some() {
        assert_eq!(urls.len(), 3, "the shared cluster has three masters");
    }
    let mut counts = Vec::with_capacity(urls.len());
    for url in urls {
        let mut conn = raw_connection(&url).await;
        let mut found: HashSet<Vec<u8>> = HashSet::new();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap();
            found.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        counts.push(found.len());
    }
    counts
}

/// Asserts that the `N` entries of `family` in `rx` exist and are spread over every node.
async fn assert_spread(deployment: &Deployment, rx: &RedisX, family: &str) {
    let topology = deployment.topology();
    let counts = keys_per_node(deployment, &rx.cache().full_key(&format!("{family}:*"))).await;
    assert_eq!(counts.iter().sum::<usize>(), N, "on {topology}: {counts:?}");
    assert!(
        counts.iter().all(|&n| n > 0),
        "on {topology}: `{family}` keys are not on every master: {counts:?}"
    );
}

/// Asserts that no key matching `pattern` (a user-key glob of `rx`) is left on any node.
async fn assert_none_left(deployment: &Deployment, rx: &RedisX, pattern: &str) {
    let counts = keys_per_node(deployment, &rx.cache().full_key(pattern)).await;
    assert!(
        counts.iter().all(|&n| n == 0),
        "on {}: keys matching `{pattern}` left per node: {counts:?}",
        deployment.topology()
    );
}

async fn round_trip(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix(&format!("topo_cache_rt_{topology}"));
    let writer = runtime(&deployment, &prefix, CacheMode::L1L2).await;
    // Without L1, every read of this one goes to Redis.
    let reader = runtime(&deployment, &prefix, CacheMode::L2Only).await;
    let (w, r) = (writer.cache(), reader.cache());

    w.set("user:1", &"Ada".to_owned(), Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        r.get::<String>("user:1").await.unwrap().as_deref(),
        Some("Ada"),
        "on {topology}: the L2-only runtime reads the write"
    );
    assert!(r.has("user:1").await, "on {topology}");
    let ttl = r.ttl("user:1").await;
    assert!(
        ttl.is_some_and(|t| t > Duration::from_secs(50) && t <= Duration::from_secs(60)),
        "on {topology}: {ttl:?}"
    );
    assert!(w.delete("user:1").await.unwrap(), "on {topology}");
    assert_eq!(
        r.get::<String>("user:1").await.unwrap(),
        None,
        "on {topology}"
    );
    assert!(!w.delete("user:1").await.unwrap(), "on {topology}");
    // A fresh runtime with L1 sees what the L2-only one writes.
    r.set("user:2", &2u32, None).await.unwrap();
    let fresh = runtime(&deployment, &prefix, CacheMode::L1L2).await;
    assert_eq!(
        fresh.cache().get::<u32>("user:2").await.unwrap(),
        Some(2),
        "on {topology}"
    );

    // Many keys, spread over every master: one pipeline, split per slot on a cluster.
    let keys = family("item");
    let items: Vec<(String, usize)> = keys.iter().cloned().zip(0..).collect();
    w.set_many(items, &EntryOptions::new()).await.unwrap();
    assert_spread(&deployment, &writer, "item").await;
    let got: Vec<Option<usize>> = r.get_many(&keys).await.unwrap();
    assert_eq!(got, (0..N).map(Some).collect::<Vec<_>>(), "on {topology}");
    let mut doomed: Vec<&str> = keys.iter().map(String::as_str).collect();
    doomed.push("item:missing");
    assert_eq!(
        w.delete_many(&doomed).await.unwrap(),
        N as u64,
        "on {topology}: delete_many counts the keys that existed"
    );
    assert_none_left(&deployment, &writer, "item:*").await;
    let got: Vec<Option<usize>> = r.get_many(&keys).await.unwrap();
    assert!(got.iter().all(Option::is_none), "on {topology}: {got:?}");
    for rx in [writer, reader, fresh] {
        rx.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_get_delete_round_trip_through_l2() {
    for &topology in Topology::ALL {
        round_trip(topology).await;
    }
}

async fn tags(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix(&format!("topo_cache_tags_{topology}"));
    let rx = runtime(&deployment, &prefix, CacheMode::L1L2).await;
    let cache = rx.cache();
    let tagged = |t: &[&str]| EntryOptions::new().tags(t.iter().map(|t| (*t).to_owned()));

    let bulk: Vec<(String, usize)> = family("bulk").into_iter().zip(0..).collect();
    cache.set_many(bulk, &tagged(&["bulk"])).await.unwrap();
    // One at a time too (the write script with its index in one pipeline), with two tags.
    for (i, key) in family("one").iter().enumerate() {
        cache
            .set_with(key, &i, &tagged(&["bulk", "ones"]))
            .await
            .unwrap();
    }
    let keep: Vec<(String, usize)> = family("keep").into_iter().zip(0..).collect();
    cache.set_many(keep, &tagged(&["keep"])).await.unwrap();
    cache.set("plain", &1u8, None).await.unwrap();
    assert_spread(&deployment, &rx, "bulk").await;
    assert_spread(&deployment, &rx, "one").await;
    assert_eq!(
        cache.keys_by_tag("bulk").await.unwrap().len(),
        2 * N,
        "on {topology}"
    );

    assert_eq!(
        cache.invalidate_tags(&["bulk"]).await.unwrap(),
        2 * N as u64,
        "on {topology}: every entry of the tag, whatever its slot"
    );
    assert_none_left(&deployment, &rx, "bulk:*").await;
    assert_none_left(&deployment, &rx, "one:*").await;
    let index: u64 = redisx_tests::raw_query(
        &deployment,
        redis::cmd("EXISTS").arg(cache.full_key("_tag:bulk")),
    )
    .await;
    assert_eq!(index, 0, "on {topology}: the tag index is gone");
    // Nothing else went: read through Redis.
    cache.clear_l1();
    let kept: Vec<Option<usize>> = cache.get_many(&family("keep")).await.unwrap();
    assert_eq!(kept, (0..N).map(Some).collect::<Vec<_>>(), "on {topology}");

    // Two tags at once (their indexes in two slots on a cluster); `ones` names only deleted
    // entries by now.
    cache
        .set_with("late", &1u8, &tagged(&["ones"]))
        .await
        .unwrap();
    assert_eq!(
        cache.invalidate_tags(&["keep", "ones"]).await.unwrap(),
        N as u64 + 1,
        "on {topology}"
    );
    assert_none_left(&deployment, &rx, "keep:*").await;
    assert_eq!(
        cache.get::<u8>("late").await.unwrap(),
        None,
        "on {topology}"
    );
    assert_eq!(
        cache.get::<u8>("plain").await.unwrap(),
        Some(1),
        "on {topology}"
    );
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_invalidation_removes_every_tagged_key_across_slots() {
    for &topology in Topology::ALL {
        tags(topology).await;
    }
}

async fn pattern_and_clear(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix(&format!("topo_cache_clear_{topology}"));
    let rx = runtime(&deployment, &prefix, CacheMode::L1L2).await;
    let cache = rx.cache();
    let other = runtime(
        &deployment,
        &unique_prefix(&format!("topo_cache_other_{topology}")),
        CacheMode::L1L2,
    )
    .await;
    other.cache().set("x", &1u8, None).await.unwrap();

    for fam in ["user", "order"] {
        let items: Vec<(String, usize)> = family(fam).into_iter().zip(0..).collect();
        let opts = EntryOptions::new().tags(["all"]);
        cache.set_many(items, &opts).await.unwrap();
        assert_spread(&deployment, &rx, fam).await;
    }
    assert_eq!(
        cache.invalidate_pattern("user:*").await.unwrap(),
        N as u64,
        "on {topology}: the pattern's keys on every master"
    );
    assert_none_left(&deployment, &rx, "user:*").await;
    assert_spread(&deployment, &rx, "order").await;
    assert_eq!(
        cache.get::<usize>("user:3").await.unwrap(),
        None,
        "on {topology}"
    );

    let deleted = cache.clear().await.unwrap();
    assert_eq!(
        deleted,
        N as u64 + 1,
        "on {topology}: the orders and the tag index"
    );
    assert_none_left(&deployment, &rx, "*").await;
    assert_eq!(
        cache.get::<usize>("order:3").await.unwrap(),
        None,
        "on {topology}"
    );
    // Another prefix is untouched.
    other.cache().clear_l1();
    assert_eq!(
        other.cache().get::<u8>("x").await.unwrap(),
        Some(1),
        "on {topology}: clear reached outside its prefix"
    );
    assert_eq!(other.cache().clear().await.unwrap(), 1, "on {topology}");
    rx.shutdown().await;
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_invalidation_and_clear_reach_every_master() {
    for &topology in Topology::ALL {
        pattern_and_clear(topology).await;
    }
}

static PROFILE_LOADS: AtomicUsize = AtomicUsize::new(0);

/// Uses the runtime of its scope.
#[cached(key = "profile:{id}", ttl = "1m", tags = ["profiles"])]
async fn profile(id: usize) -> Result<String, String> {
    PROFILE_LOADS.fetch_add(1, Ordering::SeqCst);
    Ok(format!("profile-{id}"))
}

fn profile_loads() -> usize {
    PROFILE_LOADS.load(Ordering::SeqCst)
}

async fn cached_fn(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix(&format!("topo_cache_attr_{topology}"));
    let rx = runtime(&deployment, &prefix, CacheMode::L1L2).await;
    let calls = async {
        let start = profile_loads();
        let all = || async {
            for id in 0..N {
                assert_eq!(profile(id).await.unwrap(), format!("profile-{id}"));
            }
        };
        all().await;
        assert_eq!(
            profile_loads() - start,
            N,
            "on {topology}: every first call is a miss"
        );
        all().await;
        assert_eq!(profile_loads() - start, N, "on {topology}: L1 hits");
        rx.cache().clear_l1();
        let l2_hits = rx.cache().stats().l2_hits;
        all().await;
        assert_eq!(profile_loads() - start, N, "on {topology}: L2 hits");
        assert_eq!(
            rx.cache().stats().l2_hits - l2_hits,
            N as u64,
            "on {topology}"
        );
        assert_spread(&deployment, &rx, "profile").await;

        // Another runtime reads the function's entries through the service API.
        let other = runtime(&deployment, &prefix, CacheMode::L2Only).await;
        assert_eq!(
            other
                .cache()
                .get::<String>("profile:7")
                .await
                .unwrap()
                .as_deref(),
            Some("profile-7"),
            "on {topology}"
        );
        assert_eq!(
            other.cache().invalidate_tags(&["profiles"]).await.unwrap(),
            N as u64,
            "on {topology}"
        );
        other.shutdown().await;
        assert_none_left(&deployment, &rx, "profile:*").await;
        // Gone from this runtime's L1 too (by the other's invalidation message).
        let reloaded = eventually(WITHIN, POLL, || async {
            let before = profile_loads();
            profile(7).await.unwrap();
            profile_loads() > before
        })
        .await;
        assert!(
            reloaded,
            "on {topology}: the invalidated entry was still served"
        );
    };
    rx.scope(calls).await;
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_function_misses_hits_and_is_invalidated() {
    for &topology in Topology::ALL {
        cached_fn(topology).await;
    }
}

/// Reads `key` through `rx` until the answer comes from its L1 (a write's own invalidation
/// message may evict the first fill).
async fn in_l1(rx: &RedisX, key: &str) -> bool {
    eventually(WITHIN, POLL, || async {
        let before = rx.cache().stats().l1_hits;
        let v = rx.cache().get::<u32>(key).await.unwrap();
        v.is_some() && rx.cache().stats().l1_hits > before
    })
    .await
}

/// Whether `key` reads as `want` through `rx` within [`WITHIN`].
async fn reads(rx: &RedisX, key: &str, want: Option<u32>) -> bool {
    eventually(WITHIN, POLL, || async {
        rx.cache().get::<u32>(key).await.unwrap() == want
    })
    .await
}

async fn l1_invalidation(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix(&format!("topo_cache_l1_{topology}"));
    let a = runtime(&deployment, &prefix, CacheMode::L1L2).await;
    let b = runtime(&deployment, &prefix, CacheMode::L1L2).await;
    let (ca, cb) = (a.cache(), b.cache());
    let tagged = EntryOptions::new().tags(["t"]);
    ca.set("k", &1u32, None).await.unwrap();
    ca.set_with("tagged", &2u32, &tagged).await.unwrap();
    ca.set("p:1", &3u32, None).await.unwrap();
    ca.set("c", &4u32, None).await.unwrap();
    for key in ["k", "tagged", "p:1", "c"] {
        assert!(
            in_l1(&b, key).await,
            "on {topology}: B never held {key} in L1"
        );
    }

    ca.set("k", &10u32, None).await.unwrap();
    assert!(
        reads(&b, "k", Some(10)).await,
        "on {topology}: B kept serving the old value of k"
    );
    assert!(in_l1(&b, "k").await, "on {topology}");
    assert!(ca.delete("k").await.unwrap(), "on {topology}");
    assert!(
        reads(&b, "k", None).await,
        "on {topology}: B kept serving a deleted k"
    );
    assert_eq!(
        ca.invalidate_tags(&["t"]).await.unwrap(),
        1,
        "on {topology}"
    );
    assert!(
        reads(&b, "tagged", None).await,
        "on {topology}: B kept serving an entry of an invalidated tag"
    );
    assert_eq!(
        ca.invalidate_pattern("p:*").await.unwrap(),
        1,
        "on {topology}"
    );
    assert!(
        reads(&b, "p:1", None).await,
        "on {topology}: B kept serving an entry of an invalidated pattern"
    );
    assert_eq!(ca.clear().await.unwrap(), 1, "on {topology}");
    assert!(
        eventually(WITHIN, POLL, || async { cb.l1_len() == 0 }).await,
        "on {topology}: B's L1 was not emptied by the clear: {} entries",
        cb.l1_len()
    );
    assert_eq!(cb.get::<u32>("c").await.unwrap(), None, "on {topology}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_invalidation_crosses_runtimes_over_pubsub() {
    for &topology in Topology::ALL {
        l1_invalidation(topology).await;
    }
}
