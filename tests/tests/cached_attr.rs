//! `#[cached]` end to end against real Redis: hits and misses, keys, errors, `condition` and
//! `unless`, codecs. `#[cache_put]` and `#[cache_evict]` are in `cache_put_evict_attr.rs`; SWR,
//! `stale_if_error`, the L1 options and a Redis that goes away in `cached_attr_tiers.rs`; which
//! runtime a call uses in `cached_attr_runtime.rs`.
//!
//! Each test runs on a standalone server and on the 3-master cluster, with what
//! `#[redisx::test]` gives (on the test's topology): a fresh runtime on a key prefix of its own
//! set as its task's scope, so the functions below without `runtime = ...` use it; the tests
//! run in parallel, and their keys are deleted afterwards. What landed in Redis is read with a
//! raw connection. Loader calls are counted with an `AtomicUsize` per function; the standalone and
//! cluster tests of a body take turns with them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redisx::testing::{self, Deployment, TestOptions, Topology};
use redisx::{RedisX, cached, redis};
use redisx_tests::Turn;
use redisx_tests::cache::{in_redis, runtime_under};

fn loads(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

mod miss_then_hit {
    use super::*;

    static LOADS: AtomicUsize = AtomicUsize::new(0);
    static TURN: Turn = Turn::new();

    #[cached(key = "user:{id}", ttl = "1m")]
    async fn user(id: u64) -> Result<String, String> {
        LOADS.fetch_add(1, Ordering::SeqCst);
        Ok(format!("user-{id}"))
    }

    async fn the_second_call_is_a_hit_from_l1_then_from_redis(topology: Topology) {
        let _turn = TURN.take(&[&LOADS]).await;
        let deployment = &Deployment::start(topology);
        testing::run_on(
            deployment,
            TestOptions::new("miss_then_hit"),
            |rx| async move {
                assert_eq!(user(1).await.unwrap(), "user-1");
                assert_eq!(loads(&LOADS), 1, "a miss runs the function");
                assert!(
                    in_redis(deployment, &rx, "user:1").await,
                    "stored under its key"
                );
                assert_eq!(user(1).await.unwrap(), "user-1");
                assert_eq!(loads(&LOADS), 1, "the second call is a hit");
                assert_eq!(rx.cache().stats().l1_hits, 1);
                rx.cache().clear_l1();
                assert_eq!(user(1).await.unwrap(), "user-1");
                assert_eq!(loads(&LOADS), 1, "an L2 hit after L1 was emptied");
                assert_eq!(user(2).await.unwrap(), "user-2");
                assert_eq!(loads(&LOADS), 2, "another key is another entry");
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(the_second_call_is_a_hit_from_l1_then_from_redis);
}

mod ttl_expiry {
    use super::*;

    static LOADS: AtomicUsize = AtomicUsize::new(0);
    static TURN: Turn = Turn::new();

    #[cached(key = "rate:{currency}", ttl = "1s")]
    async fn rate(currency: &str) -> f64 {
        LOADS.fetch_add(1, Ordering::SeqCst);
        if currency == "EUR" { 1.0 } else { 0.5 }
    }

    async fn the_function_runs_again_after_the_ttl(topology: Topology) {
        let _turn = TURN.take(&[&LOADS]).await;
        let deployment = &Deployment::start(topology);
        testing::run_on(deployment, TestOptions::new("ttl_expiry"), |_| async move {
            assert!((rate("EUR").await - 1.0).abs() < f64::EPSILON);
            assert!((rate("EUR").await - 1.0).abs() < f64::EPSILON);
            assert_eq!(loads(&LOADS), 1);
            tokio::time::sleep(Duration::from_millis(1200)).await;
            assert!((rate("EUR").await - 1.0).abs() < f64::EPSILON);
            assert_eq!(loads(&LOADS), 2, "the entry expired after 1 s");
            assert!((rate("EUR").await - 1.0).abs() < f64::EPSILON);
            assert_eq!(loads(&LOADS), 2, "and was cached again");
        })
        .await;
    }

    redisx_tests::on_topologies!(the_function_runs_again_after_the_ttl);
}

mod err_not_cached {
    use super::*;

    static LOADS: AtomicUsize = AtomicUsize::new(0);
    static TURN: Turn = Turn::new();

    /// Fails on its first call, succeeds afterwards.
    #[cached(key = "flaky:{id}", ttl = "1m")]
    async fn flaky(id: u64) -> Result<u64, String> {
        let n = LOADS.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            return Err(format!("attempt {n} failed"));
        }
        Ok(id * 2)
    }

    async fn an_err_passes_through_and_is_not_cached_then_ok_is(topology: Topology) {
        let _turn = TURN.take(&[&LOADS]).await;
        let deployment = &Deployment::start(topology);
        testing::run_on(
            deployment,
            TestOptions::new("err_not_cached"),
            |rx| async move {
                assert_eq!(
                    flaky(4).await,
                    Err("attempt 1 failed".to_owned()),
                    "the error passes through untouched"
                );
                assert_eq!(loads(&LOADS), 1);
                assert!(
                    !in_redis(deployment, &rx, "flaky:4").await,
                    "nothing (no value, no lock) is left in Redis after an error"
                );
                assert_eq!(flaky(4).await, Ok(8));
                assert_eq!(loads(&LOADS), 2, "the error was not cached");
                assert_eq!(flaky(4).await, Ok(8));
                assert_eq!(loads(&LOADS), 2, "the Ok value was cached");
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(an_err_passes_through_and_is_not_cached_then_ok_is);
}

mod plain_return_type {
    use super::*;

    static LOADS: AtomicUsize = AtomicUsize::new(0);
    static TURN: Turn = Turn::new();

    /// Not a `Result`: every value is cached, `None` too.
    #[cached(key = "find:{id}", ttl = "1m")]
    async fn find(id: u64) -> Option<u64> {
        LOADS.fetch_add(1, Ordering::SeqCst);
        (id > 0).then_some(id)
    }

    async fn every_value_is_cached_none_too(topology: Topology) {
        let _turn = TURN.take(&[&LOADS]).await;
        let deployment = &Deployment::start(topology);
        testing::run_on(
            deployment,
            TestOptions::new("plain_return_type"),
            |rx| async move {
                assert_eq!(find(0).await, None);
                assert_eq!(find(0).await, None);
                assert_eq!(loads(&LOADS), 1, "`None` is a value like any other");
                assert_eq!(find(3).await, Some(3));
                rx.cache().clear_l1();
                assert_eq!(find(3).await, Some(3));
                assert_eq!(find(0).await, None);
                assert_eq!(loads(&LOADS), 2, "both read back from Redis");
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(every_value_is_cached_none_too);
}

mod method_in_impl {
    use super::*;

    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Order {
        tenant: String,
        id: u64,
    }

    struct Repo {
        rx: RedisX,
        tenant: String,
        loads: AtomicUsize,
    }

    impl Repo {
        #[cached(key = "{self.tenant}:order:{id}", ttl = "1m", runtime = &self.rx)]
        async fn order(&self, id: u64) -> Result<Order, String> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            Ok(Order {
                tenant: self.tenant.clone(),
                id,
            })
        }
    }

    /// The repositories' runtime is not the test's scope: were `runtime = &self.rx` ignored,
    /// the entries would land under the scope's prefix instead.
    async fn a_method_with_self_in_its_key_caches_per_receiver(topology: Topology) {
        let deployment = &Deployment::start(topology);
        testing::run_on(
            deployment,
            TestOptions::new("method_in_impl"),
            |scope| async move {
                let rx = runtime_under(deployment, &scope, "repo").await;
                let repo = |tenant: &str| Repo {
                    rx: rx.clone(),
                    tenant: tenant.to_owned(),
                    loads: AtomicUsize::new(0),
                };
                let (acme, globex) = (repo("acme"), repo("globex"));
                assert_eq!(acme.order(1).await.unwrap().tenant, "acme");
                assert_eq!(acme.order(1).await.unwrap().tenant, "acme");
                assert_eq!(loads(&acme.loads), 1);
                assert_eq!(
                    globex.order(1).await.unwrap().tenant,
                    "globex",
                    "another receiver is another key"
                );
                assert_eq!(loads(&globex.loads), 1);
                assert!(in_redis(deployment, &rx, "acme:order:1").await);
                assert!(in_redis(deployment, &rx, "globex:order:1").await);
                assert!(!in_redis(deployment, &scope, "acme:order:1").await);
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(a_method_with_self_in_its_key_caches_per_receiver);
}

mod param_named_key {
    use super::*;

    static LOADS: AtomicUsize = AtomicUsize::new(0);
    static TURN: Turn = Turn::new();

    #[cached(key = "k:{key}", ttl = "1m")]
    async fn by_key(key: String) -> String {
        LOADS.fetch_add(1, Ordering::SeqCst);
        key + "!"
    }

    async fn a_parameter_named_key_is_rendered_into_the_key(topology: Topology) {
        let _turn = TURN.take(&[&LOADS]).await;
        let deployment = &Deployment::start(topology);
        testing::run_on(
            deployment,
            TestOptions::new("param_named_key"),
            |rx| async move {
                assert_eq!(by_key("a".to_owned()).await, "a!");
                assert_eq!(by_key("a".to_owned()).await, "a!");
                assert_eq!(by_key("b".to_owned()).await, "b!");
                assert_eq!(loads(&LOADS), 2);
                assert!(in_redis(deployment, &rx, "k:a").await);
                assert!(in_redis(deployment, &rx, "k:b").await);
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(a_parameter_named_key_is_rendered_into_the_key);
}

mod condition_and_unless {
    use super::*;

    static COND_LOADS: AtomicUsize = AtomicUsize::new(0);
    static UNLESS_LOADS: AtomicUsize = AtomicUsize::new(0);
    static TURN: Turn = Turn::new();

    /// Id 0 bypasses the cache.
    #[cached(key = "cond:{id}", ttl = "1m", condition = |id: &u64| *id != 0)]
    async fn conditional(id: u64) -> u64 {
        COND_LOADS.fetch_add(1, Ordering::SeqCst);
        id
    }

    /// Empty values are returned but not cached.
    #[cached(key = "unless:{id}", ttl = "1m", unless = |v: &String| v.is_empty())]
    async fn maybe_empty(id: u64) -> String {
        UNLESS_LOADS.fetch_add(1, Ordering::SeqCst);
        if id == 0 {
            String::new()
        } else {
            id.to_string()
        }
    }

    async fn condition_false_bypasses_and_unless_true_does_not_cache(topology: Topology) {
        let _turn = TURN.take(&[&COND_LOADS, &UNLESS_LOADS]).await;
        let deployment = &Deployment::start(topology);
        testing::run_on(
            deployment,
            TestOptions::new("condition_and_unless"),
            |rx| async move {
                assert_eq!(conditional(0).await, 0);
                assert_eq!(conditional(0).await, 0);
                assert_eq!(loads(&COND_LOADS), 2, "condition false: every call runs");
                assert!(!in_redis(deployment, &rx, "cond:0").await);
                assert_eq!(conditional(5).await, 5);
                assert_eq!(conditional(5).await, 5);
                assert_eq!(loads(&COND_LOADS), 3, "condition true: cached");

                assert_eq!(maybe_empty(0).await, "");
                assert_eq!(maybe_empty(0).await, "");
                assert_eq!(loads(&UNLESS_LOADS), 2, "unless true: not cached");
                assert!(!in_redis(deployment, &rx, "unless:0").await);
                assert_eq!(maybe_empty(7).await, "7");
                assert_eq!(maybe_empty(7).await, "7");
                assert_eq!(loads(&UNLESS_LOADS), 3, "unless false: cached");
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(condition_false_bypasses_and_unless_true_does_not_cache);
}

mod auto_key {
    use super::*;

    static LOADS: AtomicUsize = AtomicUsize::new(0);
    static TURN: Turn = Turn::new();

    /// No `key`: the key is the function's path plus a hash of the arguments.
    #[cached(ttl = "1m")]
    async fn search(query: String, page: u32) -> Vec<String> {
        LOADS.fetch_add(1, Ordering::SeqCst);
        vec![query, page.to_string()]
    }

    async fn different_arguments_are_different_entries(topology: Topology) {
        let _turn = TURN.take(&[&LOADS]).await;
        let deployment = &Deployment::start(topology);
        testing::run_on(deployment, TestOptions::new("auto_key"), |rx| async move {
            let s = |q: &str, p| search(q.to_owned(), p);
            assert_eq!(s("a", 1).await, ["a", "1"]);
            assert_eq!(s("a", 1).await, ["a", "1"]);
            assert_eq!(loads(&LOADS), 1);
            assert_eq!(s("a", 2).await, ["a", "2"]);
            assert_eq!(loads(&LOADS), 2, "another page is another key");
            assert_eq!(s("b", 1).await, ["b", "1"]);
            assert_eq!(loads(&LOADS), 3, "another query is another key");
            // The hash is stable: the same arguments find the entry in Redis again.
            rx.cache().clear_l1();
            assert_eq!(s("a", 1).await, ["a", "1"]);
            assert_eq!(s("b", 1).await, ["b", "1"]);
            assert_eq!(loads(&LOADS), 3);
            assert_eq!(rx.cache().stats().l2_hits, 2);
        })
        .await;
    }

    redisx_tests::on_topologies!(different_arguments_are_different_entries);
}

/// Regression: arguments that fail to serialize all hashed to 0, so every call of an auto-key
/// function shared one key and got the first call's value. Such calls now run uncached.
mod unhashable_args {
    use super::*;

    static LOADS: AtomicUsize = AtomicUsize::new(0);
    static TURN: Turn = Turn::new();

    /// An argument whose `Serialize` fails (as a `#[serde(flatten)]` field does with bincode).
    struct Opaque(u32);

    impl serde::Serialize for Opaque {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom(
                "this argument cannot be serialized",
            ))
        }
    }

    #[cached(ttl = "1m")]
    async fn echo(v: Opaque) -> u32 {
        LOADS.fetch_add(1, Ordering::SeqCst);
        v.0
    }

    async fn calls_with_unhashable_arguments_run_uncached(topology: Topology) {
        let _turn = TURN.take(&[&LOADS]).await;
        let deployment = &Deployment::start(topology);
        testing::run_on(
            deployment,
            TestOptions::new("unhashable_args"),
            |rx| async move {
                assert_eq!(echo(Opaque(1)).await, 1);
                assert_eq!(
                    echo(Opaque(2)).await,
                    2,
                    "another call's value was served: the calls shared a key"
                );
                assert_eq!(echo(Opaque(1)).await, 1);
                assert_eq!(loads(&LOADS), 3, "every call runs the function");
                assert_eq!(rx.cache().l1_len(), 0, "nothing was cached");
                let stats = rx.cache().stats();
                assert_eq!(
                    stats.l2_hits + stats.l2_misses,
                    0,
                    "the cache was not consulted"
                );
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(calls_with_unhashable_arguments_run_uncached);
}

mod json_codec {
    use super::*;

    #[cached(key = "json:{id}", ttl = "1m", codec = Json)]
    async fn tags_of(id: u64) -> Vec<String> {
        vec![format!("t{id}")]
    }

    async fn codec_json_stores_json(topology: Topology) {
        let deployment = &Deployment::start(topology);
        testing::run_on(
            deployment,
            TestOptions::new("json_codec"),
            |rx| async move {
                assert_eq!(tags_of(3).await, ["t3"]);
                let mut conn = deployment.raw_connection().await;
                let bytes: Vec<u8> = redis::cmd("GET")
                    .arg(rx.cache().full_key("json:3"))
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                // The JSON format byte with the tag-section bit, the header, a tag count of 0, JSON.
                assert_eq!(bytes[0], redisx::CodecKind::Json.format() | 0x40);
                assert_eq!(bytes[17], 0);
                assert_eq!(&bytes[18..], br#"["t3"]"#);
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(codec_json_stores_json);
}

mod arc_values {
    use super::*;
    use std::sync::Arc;

    static LOADS: AtomicUsize = AtomicUsize::new(0);
    static TURN: Turn = Turn::new();

    #[cached(key = "doc:{id}")]
    async fn doc(id: u64) -> Result<Arc<String>, String> {
        LOADS.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(format!("doc-{id}")))
    }

    async fn an_l1_hit_hands_out_the_same_arc(topology: Topology) {
        let _turn = TURN.take(&[&LOADS]).await;
        let deployment = &Deployment::start(topology);
        testing::run_on(
            deployment,
            TestOptions::new("arc_values"),
            |rx| async move {
                let first = doc(7).await.unwrap();
                let again = doc(7).await.unwrap();
                assert_eq!(loads(&LOADS), 1);
                assert!(
                    Arc::ptr_eq(&first, &again),
                    "an L1 hit clones the stored Arc, never the value"
                );
                // The service API reads the same entry through L2 and L1 alike.
                assert_eq!(
                    rx.cache()
                        .get::<Arc<String>>("doc:7")
                        .await
                        .unwrap()
                        .as_deref()
                        .map(String::as_str),
                    Some("doc-7")
                );
                rx.cache().clear_l1();
                assert_eq!(doc(7).await.unwrap().as_str(), "doc-7");
                assert_eq!(loads(&LOADS), 1, "an L2 hit decodes a new Arc");
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(an_l1_hit_hands_out_the_same_arc);
}
