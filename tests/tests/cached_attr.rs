//! `#[cached]` (with `#[cache_evict]` and `#[cache_put]`) end to end against real Redis.
//!
//! Every test builds its own runtime and hands it to its functions with `runtime = ...` (a
//! `static OnceLock<RedisX>` per test module, or `&self.rx` on a method); nothing is installed,
//! so the tests run in parallel and a function without `runtime` runs uncached. Loader calls
//! are counted with an `AtomicUsize` per function.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redisx::{
    CacheConfig, ConnectionConfig, ReconnectPolicy, RedisX, cache_evict, cache_put, cached,
};
use redisx_tests::{RedisServer, raw_connection, unique_prefix};

async fn build(server: &RedisServer, test: &str) -> RedisX {
    build_with(ConnectionConfig::from_url(&server.url()).unwrap(), test).await
}

async fn build_with(cfg: ConnectionConfig, test: &str) -> RedisX {
    RedisX::builder()
        .client("default", cfg)
        .key_prefix(unique_prefix(test))
        .cache(CacheConfig::default())
        .build()
        .await
        .unwrap()
}

/// Stores the test's runtime in its module's cell, and returns it.
fn set(cell: &'static OnceLock<RedisX>, rx: RedisX) -> &'static RedisX {
    assert!(cell.set(rx).is_ok(), "each test sets its runtime once");
    cell.get().unwrap()
}

/// Whether the cache entry of `key` exists in Redis (read with a raw connection).
async fn in_redis(server: &RedisServer, rx: &RedisX, key: &str) -> bool {
    let mut conn = raw_connection(&server.url()).await;
    redis::cmd("EXISTS")
        .arg(rx.cache().full_key(key))
        .query_async(&mut conn)
        .await
        .unwrap()
}

fn loads(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

mod miss_then_hit {
    use super::*;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);

    #[cached(key = "user:{id}", ttl = "1m", runtime = RT.get().expect("set by the test"))]
    async fn user(id: u64) -> Result<String, String> {
        LOADS.fetch_add(1, Ordering::SeqCst);
        Ok(format!("user-{id}"))
    }

    #[tokio::test]
    async fn the_second_call_is_a_hit_from_l1_then_from_redis() {
        let server = RedisServer::start();
        let rx = set(&RT, build(&server, "attr_hit").await);
        assert_eq!(user(1).await.unwrap(), "user-1");
        assert_eq!(loads(&LOADS), 1, "a miss runs the function");
        assert!(
            in_redis(&server, rx, "user:1").await,
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
    }
}

mod ttl_expiry {
    use super::*;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);

    #[cached(key = "rate:{currency}", ttl = "1s", runtime = RT.get().expect("set by the test"))]
    async fn rate(currency: &str) -> f64 {
        LOADS.fetch_add(1, Ordering::SeqCst);
        if currency == "EUR" { 1.0 } else { 0.5 }
    }

    #[tokio::test]
    async fn the_function_runs_again_after_the_ttl() {
        let server = RedisServer::start();
        set(&RT, build(&server, "attr_ttl").await);
        assert!((rate("EUR").await - 1.0).abs() < f64::EPSILON);
        assert!((rate("EUR").await - 1.0).abs() < f64::EPSILON);
        assert_eq!(loads(&LOADS), 1);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!((rate("EUR").await - 1.0).abs() < f64::EPSILON);
        assert_eq!(loads(&LOADS), 2, "the entry expired after 1 s");
        assert!((rate("EUR").await - 1.0).abs() < f64::EPSILON);
        assert_eq!(loads(&LOADS), 2, "and was cached again");
    }
}

mod err_not_cached {
    use super::*;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);

    /// Fails on its first call, succeeds afterwards.
    #[cached(key = "flaky:{id}", ttl = "1m", runtime = RT.get().expect("set by the test"))]
    async fn flaky(id: u64) -> Result<u64, String> {
        let n = LOADS.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            return Err(format!("attempt {n} failed"));
        }
        Ok(id * 2)
    }

    #[tokio::test]
    async fn an_err_passes_through_and_is_not_cached_then_ok_is() {
        let server = RedisServer::start();
        let rx = set(&RT, build(&server, "attr_err").await);
        assert_eq!(
            flaky(4).await,
            Err("attempt 1 failed".to_owned()),
            "the error passes through untouched"
        );
        assert_eq!(loads(&LOADS), 1);
        assert!(
            !in_redis(&server, rx, "flaky:4").await,
            "nothing (no value, no lock) is left in Redis after an error"
        );
        assert_eq!(flaky(4).await, Ok(8));
        assert_eq!(loads(&LOADS), 2, "the error was not cached");
        assert_eq!(flaky(4).await, Ok(8));
        assert_eq!(loads(&LOADS), 2, "the Ok value was cached");
    }
}

mod plain_return_type {
    use super::*;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);

    /// Not a `Result`: every value is cached, `None` too.
    #[cached(key = "find:{id}", ttl = "1m", runtime = RT.get().expect("set by the test"))]
    async fn find(id: u64) -> Option<u64> {
        LOADS.fetch_add(1, Ordering::SeqCst);
        (id > 0).then_some(id)
    }

    #[tokio::test]
    async fn every_value_is_cached_none_too() {
        let server = RedisServer::start();
        let rx = set(&RT, build(&server, "attr_plain").await);
        assert_eq!(find(0).await, None);
        assert_eq!(find(0).await, None);
        assert_eq!(loads(&LOADS), 1, "`None` is a value like any other");
        assert_eq!(find(3).await, Some(3));
        rx.cache().clear_l1();
        assert_eq!(find(3).await, Some(3));
        assert_eq!(find(0).await, None);
        assert_eq!(loads(&LOADS), 2, "both read back from Redis");
    }
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

    #[tokio::test]
    async fn a_method_with_self_in_its_key_caches_per_receiver() {
        let server = RedisServer::start();
        let rx = build(&server, "attr_method").await;
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
        assert!(in_redis(&server, &rx, "acme:order:1").await);
        assert!(in_redis(&server, &rx, "globex:order:1").await);
    }
}

mod param_named_key {
    use super::*;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);

    #[cached(key = "k:{key}", ttl = "1m", runtime = RT.get().expect("set by the test"))]
    async fn by_key(key: String) -> String {
        LOADS.fetch_add(1, Ordering::SeqCst);
        key + "!"
    }

    #[tokio::test]
    async fn a_parameter_named_key_is_rendered_into_the_key() {
        let server = RedisServer::start();
        let rx = set(&RT, build(&server, "attr_key").await);
        assert_eq!(by_key("a".to_owned()).await, "a!");
        assert_eq!(by_key("a".to_owned()).await, "a!");
        assert_eq!(by_key("b".to_owned()).await, "b!");
        assert_eq!(loads(&LOADS), 2);
        assert!(in_redis(&server, rx, "k:a").await);
        assert!(in_redis(&server, rx, "k:b").await);
    }
}

mod tags_and_evict {
    use super::*;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);

    #[cached(key = "user:{id}", ttl = "1m", tags = ["users", "user:{id}"], runtime = RT.get().expect("set by the test"))]
    async fn user(id: u64) -> String {
        LOADS.fetch_add(1, Ordering::SeqCst);
        format!("user-{id}")
    }

    #[cache_evict(tags = ["user:{id}"], runtime = RT.get().expect("set by the test"))]
    async fn touch_user(id: u64) {
        let _ = id;
    }

    #[cache_evict(tags = ["users"], runtime = RT.get().expect("set by the test"))]
    async fn reset_users() {}

    /// Evicts by key, only after `Ok`.
    #[cache_evict(keys = ["user:{id}"], runtime = RT.get().expect("set by the test"))]
    async fn delete_user(id: u64) -> Result<(), String> {
        if id == 0 {
            return Err("user 0 cannot be deleted".to_owned());
        }
        Ok(())
    }

    async fn read_all(ids: &[u64]) {
        for id in ids {
            assert_eq!(user(*id).await, format!("user-{id}"));
        }
    }

    #[tokio::test]
    async fn evicting_a_tag_or_key_makes_the_next_call_a_miss() {
        let server = RedisServer::start();
        set(&RT, build(&server, "attr_tags").await);
        read_all(&[0, 1, 2]).await;
        read_all(&[0, 1, 2]).await;
        assert_eq!(loads(&LOADS), 3);

        touch_user(1).await;
        read_all(&[0, 1, 2]).await;
        assert_eq!(loads(&LOADS), 4, "only user 1 carried the tag `user:1`");

        reset_users().await;
        read_all(&[0, 1, 2]).await;
        assert_eq!(loads(&LOADS), 7, "every entry carried the tag `users`");

        delete_user(2).await.unwrap();
        read_all(&[0, 1, 2]).await;
        assert_eq!(loads(&LOADS), 8, "the key of user 2 was deleted");

        assert!(delete_user(0).await.is_err());
        read_all(&[0, 1, 2]).await;
        assert_eq!(loads(&LOADS), 8, "an Err does not evict");
    }
}

mod put_overwrites {
    use super::*;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);

    #[cached(key = "name:{id}", ttl = "1m", runtime = RT.get().expect("set by the test"))]
    async fn name(id: u64) -> String {
        LOADS.fetch_add(1, Ordering::SeqCst);
        format!("loaded-{id}")
    }

    #[cache_put(key = "name:{id}", ttl = "1m", runtime = RT.get().expect("set by the test"))]
    async fn rename(id: u64, new_name: String) -> String {
        let _ = id;
        new_name
    }

    /// Writes only an `Ok`.
    #[cache_put(key = "name:{id}", ttl = "1m", runtime = RT.get().expect("set by the test"))]
    async fn try_rename(id: u64, new_name: String) -> Result<String, String> {
        let _ = id;
        if new_name.is_empty() {
            return Err("a name cannot be empty".to_owned());
        }
        Ok(new_name)
    }

    #[tokio::test]
    async fn cache_put_overwrites_what_cached_reads() {
        let server = RedisServer::start();
        let rx = set(&RT, build(&server, "attr_put").await);
        assert_eq!(name(1).await, "loaded-1");
        assert_eq!(rename(1, "Ada".to_owned()).await, "Ada");
        assert_eq!(name(1).await, "Ada", "the put value replaced L1");
        rx.cache().clear_l1();
        assert_eq!(name(1).await, "Ada", "and L2");
        assert!(try_rename(1, String::new()).await.is_err());
        assert_eq!(name(1).await, "Ada", "an Err is not written");
        assert_eq!(try_rename(1, "Grace".to_owned()).await.unwrap(), "Grace");
        assert_eq!(name(1).await, "Grace");
        // A put for a key nobody read yet fills it.
        assert_eq!(rename(2, "Edsger".to_owned()).await, "Edsger");
        assert_eq!(name(2).await, "Edsger");
        assert_eq!(loads(&LOADS), 1, "only the first read ran the function");
    }
}

mod condition_and_unless {
    use super::*;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static COND_LOADS: AtomicUsize = AtomicUsize::new(0);
    static UNLESS_LOADS: AtomicUsize = AtomicUsize::new(0);

    /// Id 0 bypasses the cache.
    #[cached(key = "cond:{id}", ttl = "1m", condition = |id: &u64| *id != 0, runtime = RT.get().expect("set by the test"))]
    async fn conditional(id: u64) -> u64 {
        COND_LOADS.fetch_add(1, Ordering::SeqCst);
        id
    }

    /// Empty values are returned but not cached.
    #[cached(key = "unless:{id}", ttl = "1m", unless = |v: &String| v.is_empty(), runtime = RT.get().expect("set by the test"))]
    async fn maybe_empty(id: u64) -> String {
        UNLESS_LOADS.fetch_add(1, Ordering::SeqCst);
        if id == 0 {
            String::new()
        } else {
            id.to_string()
        }
    }

    #[tokio::test]
    async fn condition_false_bypasses_and_unless_true_does_not_cache() {
        let server = RedisServer::start();
        let rx = set(&RT, build(&server, "attr_cond").await);
        assert_eq!(conditional(0).await, 0);
        assert_eq!(conditional(0).await, 0);
        assert_eq!(loads(&COND_LOADS), 2, "condition false: every call runs");
        assert!(!in_redis(&server, rx, "cond:0").await);
        assert_eq!(conditional(5).await, 5);
        assert_eq!(conditional(5).await, 5);
        assert_eq!(loads(&COND_LOADS), 3, "condition true: cached");

        assert_eq!(maybe_empty(0).await, "");
        assert_eq!(maybe_empty(0).await, "");
        assert_eq!(loads(&UNLESS_LOADS), 2, "unless true: not cached");
        assert!(!in_redis(&server, rx, "unless:0").await);
        assert_eq!(maybe_empty(7).await, "7");
        assert_eq!(maybe_empty(7).await, "7");
        assert_eq!(loads(&UNLESS_LOADS), 3, "unless false: cached");
    }
}

mod auto_key {
    use super::*;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);

    /// No `key`: the key is the function's path plus a hash of the arguments.
    #[cached(ttl = "1m", runtime = RT.get().expect("set by the test"))]
    async fn search(query: String, page: u32) -> Vec<String> {
        LOADS.fetch_add(1, Ordering::SeqCst);
        vec![query, page.to_string()]
    }

    #[tokio::test]
    async fn different_arguments_are_different_entries() {
        let server = RedisServer::start();
        let rx = set(&RT, build(&server, "attr_auto").await);
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
    }
}

/// Regression: arguments that fail to serialize all hashed to 0, so every call of an auto-key
/// function shared one key and got the first call's value. Such calls now run uncached.
mod unhashable_args {
    use super::*;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);

    /// An argument whose `Serialize` fails (as a `#[serde(flatten)]` field does with bincode).
    struct Opaque(u32);

    impl serde::Serialize for Opaque {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom(
                "this argument cannot be serialized",
            ))
        }
    }

    #[cached(ttl = "1m", runtime = RT.get().expect("set by the test"))]
    async fn echo(v: Opaque) -> u32 {
        LOADS.fetch_add(1, Ordering::SeqCst);
        v.0
    }

    #[tokio::test]
    async fn calls_with_unhashable_arguments_run_uncached() {
        let server = RedisServer::start();
        let rx = set(&RT, build(&server, "attr_unhashable").await);
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
    }
}

mod json_codec {
    use super::*;

    static RT: OnceLock<RedisX> = OnceLock::new();

    #[cached(key = "json:{id}", ttl = "1m", codec = Json, runtime = RT.get().expect("set by the test"))]
    async fn tags_of(id: u64) -> Vec<String> {
        vec![format!("t{id}")]
    }

    #[tokio::test]
    async fn codec_json_stores_json() {
        let server = RedisServer::start();
        let rx = set(&RT, build(&server, "attr_json").await);
        assert_eq!(tags_of(3).await, ["t3"]);
        let mut conn = raw_connection(&server.url()).await;
        let bytes: Vec<u8> = redis::cmd("GET")
            .arg(rx.cache().full_key("json:3"))
            .query_async(&mut conn)
            .await
            .unwrap();
        // The JSON format byte with the tag-section bit, the header, a tag count of 0, JSON.
        assert_eq!(bytes[0], redisx::CodecKind::Json.format() | 0x40);
        assert_eq!(bytes[17], 0);
        assert_eq!(&bytes[18..], br#"["t3"]"#);
    }
}

mod no_runtime {
    use super::*;

    static LOADS: AtomicUsize = AtomicUsize::new(0);

    /// No `runtime`, and this test binary installs none.
    #[cached(key = "none:{id}", ttl = "1m")]
    async fn uncached(id: u64) -> u64 {
        LOADS.fetch_add(1, Ordering::SeqCst);
        id
    }

    #[tokio::test]
    async fn without_an_installed_runtime_the_function_runs_uncached() {
        assert!(RedisX::global().is_none());
        assert_eq!(uncached(1).await, 1);
        assert_eq!(uncached(1).await, 1);
        assert_eq!(loads(&LOADS), 2);
    }
}

mod redis_killed {
    use super::*;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);

    /// L2 only, so that every hit comes from Redis.
    #[cached(key = "k:{id}", ttl = "1m", mode = "l2_only", runtime = RT.get().expect("set by the test"))]
    async fn value(id: u64) -> u64 {
        LOADS.fetch_add(1, Ordering::SeqCst);
        id + 100
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_keep_answering_and_caching_resumes_after_restart() {
        let mut server = RedisServer::start_owned();
        let cfg = ConnectionConfig::from_url(&server.url())
            .unwrap()
            .connect_timeout(Duration::from_millis(500))
            .command_timeout(Duration::from_millis(500))
            .reconnect(
                ReconnectPolicy::default()
                    .initial(Duration::from_millis(50))
                    .max(Duration::from_millis(200)),
            );
        set(&RT, build_with(cfg, "attr_killed").await);
        assert_eq!(value(1).await, 101);
        assert_eq!(value(1).await, 101);
        assert_eq!(loads(&LOADS), 1);

        server.kill();
        for i in 1..=5 {
            let started = Instant::now();
            assert_eq!(value(1).await, 101);
            let took = started.elapsed();
            assert!(took < Duration::from_secs(2), "call {i} took {took:?}");
            assert_eq!(loads(&LOADS), 1 + i, "call {i} ran the function");
        }

        server.start_again();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let before = loads(&LOADS);
            assert_eq!(value(1).await, 101);
            assert_eq!(value(1).await, 101);
            if loads(&LOADS) == before + 1 {
                break; // the second call was a hit again
            }
            assert!(
                Instant::now() < deadline,
                "caching did not resume within 10 s of the restart"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

mod arc_values {
    use super::*;
    use std::sync::Arc;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);

    #[cached(key = "doc:{id}", runtime = RT.get().expect("set by the test"))]
    async fn doc(id: u64) -> Result<Arc<String>, String> {
        LOADS.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(format!("doc-{id}")))
    }

    #[tokio::test]
    async fn an_l1_hit_hands_out_the_same_arc() {
        let server = RedisServer::start();
        let rx = set(&RT, build(&server, "attr_arc").await);
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
    }
}

mod ttl_over_configured_max {
    use super::*;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);

    #[cached(key = "long:{id}", ttl = "1h", runtime = RT.get().expect("set by the test"))]
    async fn long_lived(id: u64) -> u64 {
        LOADS.fetch_add(1, Ordering::SeqCst);
        id
    }

    /// The macro accepts up to 24 h; a cache configured with a smaller `max_ttl` rejects the
    /// call site at run time: it runs uncached (never with a clamped ttl), warning once.
    #[tokio::test]
    async fn a_ttl_above_the_configured_max_runs_uncached() {
        let server = RedisServer::start();
        let rx = RedisX::builder()
            .client(
                "default",
                ConnectionConfig::from_url(&server.url()).unwrap(),
            )
            .key_prefix(unique_prefix("attr_max_ttl"))
            .cache(
                CacheConfig::default()
                    .default_ttl(Duration::from_secs(60))
                    .max_ttl(Duration::from_secs(60)),
            )
            .build()
            .await
            .unwrap();
        let rx = set(&RT, rx);
        for _ in 0..3 {
            assert_eq!(long_lived(5).await, 5);
        }
        assert_eq!(loads(&LOADS), 3, "every call ran the function");
        assert!(!in_redis(&server, rx, "long:5").await, "nothing was cached");
    }
}

mod swr_attr {
    use super::*;
    use redisx_tests::eventually;
    use std::sync::atomic::AtomicU32;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);
    /// What the function returns; the test bumps it to see the refresh land.
    static VALUE: AtomicU32 = AtomicU32::new(1);

    /// How long every run after the first (a refresh) takes.
    const REFRESH_DELAY: Duration = Duration::from_secs(1);

    #[cached(key = "swr:{id}", ttl = "300ms", swr = "30s", runtime = RT.get().expect("set by the test"))]
    async fn setting(id: u64) -> Result<u32, String> {
        let _ = id;
        let n = LOADS.fetch_add(1, Ordering::SeqCst) + 1;
        if n > 1 {
            // A slow refresh, so that a caller waiting for it would be seen waiting.
            tokio::time::sleep(REFRESH_DELAY).await;
        }
        Ok(VALUE.load(Ordering::SeqCst))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_value_is_served_at_once_and_refreshed_once_in_the_background() {
        let server = RedisServer::start();
        let rx = set(&RT, build(&server, "attr_swr").await);
        assert_eq!(setting(1).await, Ok(1));
        assert_eq!(loads(&LOADS), 1, "a miss runs the function");

        VALUE.store(2, Ordering::SeqCst);
        // Past the 300 ms ttl, well inside the 30 s SWR window.
        tokio::time::sleep(Duration::from_millis(500)).await;

        // Several callers hit the stale entry at the same time.
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                tokio::spawn(async {
                    let started = Instant::now();
                    let v = setting(1).await;
                    (v, started.elapsed())
                })
            })
            .collect();
        for t in tasks {
            let (v, took) = t.await.unwrap();
            // Ignoring `swr`: the entry would be gone (or reloaded in the foreground) after the
            // ttl, so the caller would get the new value 2, not the stale 1.
            assert_eq!(v, Ok(1), "the stale value is served during the SWR window");
            // Ignoring `swr`: the caller would wait for the (1 s) reload itself.
            assert!(
                took < REFRESH_DELAY,
                "a stale hit waited for the refresh ({took:?})"
            );
        }

        // The background refresh lands: a later call returns the new value. (This checks the
        // refresh part of SWR: a stale value served with no refresh would stay 1 for ever.)
        let refreshed = eventually(
            Duration::from_secs(5),
            Duration::from_millis(20),
            || async { setting(1).await == Ok(2) },
        )
        .await;
        assert!(refreshed, "the refreshed value never arrived");
        // This guards the *single* refresh: a refresh per stale caller (the leading spawned
        // caller, the polls above) would make this well over 2. Ignoring `swr` alone would not show
        // here (a foreground reload under stampede protection also runs the function twice);
        // the stale-value and timing assertions above catch that.
        assert_eq!(
            loads(&LOADS),
            2,
            "the function ran once for the miss and once for one refresh"
        );
        // A late duplicate refresh would show up here (same reason as above).
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(loads(&LOADS), 2, "no second refresh ran later");
        let stats = rx.cache().stats();
        // Ignoring `swr`: no background refresh would start (refreshes 0).
        assert_eq!(stats.refreshes, 1, "{stats:?}");
        // Ignoring `swr`: no stale value would be served (stale_served 0).
        assert!(stats.stale_served >= 1, "{stats:?}");
    }
}

mod stale_if_error_attr {
    use super::*;
    use std::sync::atomic::AtomicBool;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);
    /// When set, the function fails.
    static FAILING: AtomicBool = AtomicBool::new(false);

    #[cached(key = "quote:{id}", ttl = "200ms", stale_if_error = "2s", runtime = RT.get().expect("set by the test"))]
    async fn quote(id: u64) -> Result<u32, String> {
        LOADS.fetch_add(1, Ordering::SeqCst);
        if FAILING.load(Ordering::SeqCst) {
            return Err(format!("quote {id}: backend down"));
        }
        Ok(42)
    }

    #[tokio::test]
    async fn a_failure_after_the_ttl_serves_the_stale_value_until_the_window_ends() {
        let server = RedisServer::start();
        let rx = set(&RT, build(&server, "attr_sie").await);
        assert_eq!(quote(1).await, Ok(42));
        // The entry was written before this instant: it is stale 200 ms after it at the
        // latest, and gone from Redis 200 ms + 2 s after it at the latest.
        let written = Instant::now();
        assert_eq!(loads(&LOADS), 1);

        FAILING.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(400)).await; // past the ttl, inside the window
        // Ignoring `stale_if_error`: the entry would have left Redis with the 200 ms ttl, so
        // the call would be a miss and return the function's Err.
        assert_eq!(
            quote(1).await,
            Ok(42),
            "the stale value is served while the function fails"
        );
        // Holds with or without the option: stale-if-error serves the old value only after
        // the function really ran and failed (it is not a plain cache hit).
        assert_eq!(loads(&LOADS), 2, "the function ran (and failed)");
        // Ignoring `stale_if_error`: nothing stale would be served (stale_served 0).
        assert_eq!(rx.cache().stats().stale_served, 1);

        // Past ttl + 2 s, with a margin.
        let past = written + Duration::from_millis(200 + 2000 + 600);
        tokio::time::sleep(past.saturating_duration_since(Instant::now())).await;
        // A window taken as unbounded (or much longer than 2 s) would still answer Ok(42).
        assert_eq!(
            quote(1).await,
            Err("quote 1: backend down".to_owned()),
            "past the window the error passes through"
        );
        // The failing function ran again (the stale value was not kept as a fresh entry).
        assert_eq!(loads(&LOADS), 3);
    }
}

mod l1_ttl_attr {
    use super::*;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);

    #[cached(key = "profile:{id}", ttl = "1m", l1_ttl = "200ms", runtime = RT.get().expect("set by the test"))]
    async fn profile(id: u64) -> String {
        LOADS.fetch_add(1, Ordering::SeqCst);
        format!("profile-{id}")
    }

    #[tokio::test]
    async fn after_the_l1_ttl_the_value_comes_from_redis_without_running_the_function() {
        let server = RedisServer::start();
        let rx = set(&RT, build(&server, "attr_l1_ttl").await);
        assert_eq!(profile(1).await, "profile-1");
        assert_eq!(loads(&LOADS), 1);
        assert_eq!(
            rx.cache().l1_len(),
            1,
            "the value sits in L1 after the call"
        );

        tokio::time::sleep(Duration::from_millis(500)).await; // past the 200 ms L1 ttl
        let before = rx.cache().stats();
        assert_eq!(profile(1).await, "profile-1");
        let after = rx.cache().stats();
        // The 1 m ttl holds in Redis: whatever L1 does, the function does not run again.
        assert_eq!(loads(&LOADS), 1, "answered from the cache");
        // Ignoring `l1_ttl`: L1 would keep the entry for CacheConfig's 60 s, so this call would
        // be an L1 hit (l1_hits + 1) and Redis would not be read (l2_hits + 0).
        assert_eq!(
            after.l2_hits,
            before.l2_hits + 1,
            "the call was answered by L2: {before:?} -> {after:?}"
        );
        assert_eq!(
            after.l1_hits, before.l1_hits,
            "the call was not answered by L1: {before:?} -> {after:?}"
        );
        assert!(in_redis(&server, rx, "profile:1").await);
    }
}

mod l1_only_attr {
    use super::*;

    static RT: OnceLock<RedisX> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);

    #[cached(key = "local:{id}", ttl = "1m", mode = "l1_only", runtime = RT.get().expect("set by the test"))]
    async fn local_only(id: u64) -> u64 {
        LOADS.fetch_add(1, Ordering::SeqCst);
        id * 10
    }

    #[tokio::test]
    async fn an_l1_only_call_site_caches_in_process_and_writes_nothing_to_redis() {
        let server = RedisServer::start();
        // A runtime with Redis: only the call site's `mode` keeps the entry out of it.
        let rx = set(&RT, build(&server, "attr_l1_only").await);
        assert_eq!(local_only(3).await, 30);
        assert_eq!(local_only(3).await, 30);
        assert_eq!(loads(&LOADS), 1, "the second call was a hit");
        assert_eq!(rx.cache().l1_len(), 1, "the entry lives in L1");
        // Ignoring `mode`: the default L1 + L2 would write the entry to Redis.
        assert!(
            !in_redis(&server, rx, "local:3").await,
            "nothing was written to Redis"
        );
        // Ignoring `mode`: the first call's miss would have read Redis (l2_misses 1).
        let stats = rx.cache().stats();
        assert_eq!(
            stats.l2_hits + stats.l2_misses,
            0,
            "Redis was not consulted: {stats:?}"
        );
    }
}

mod invalidation_off {
    use super::*;
    use redisx_tests::{eventually, runtime};

    /// Reads `key` through `rx` until it answers `want` from its L1.
    async fn serves_from_l1(rx: &RedisX, key: &str, want: &str) -> bool {
        eventually(Duration::from_secs(2), Duration::from_millis(5), || async {
            let before = rx.cache().stats().l1_hits;
            let v = rx.cache().get::<String>(key).await.unwrap();
            v.as_deref() == Some(want) && rx.cache().stats().l1_hits > before
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_invalidation_b_keeps_its_l1_copy_and_with_it_b_sees_the_update() {
        let server = RedisServer::start();

        // Invalidation off.
        let prefix = unique_prefix("attr_invalidation_off");
        let cfg = CacheConfig::default().invalidation(false);
        let a = runtime(&server.url(), &prefix, cfg.clone()).await;
        let b = runtime(&server.url(), &prefix, cfg).await;
        a.cache()
            .set("cfg:1", &"v1".to_owned(), None)
            .await
            .unwrap();
        assert!(
            serves_from_l1(&b, "cfg:1", "v1").await,
            "B never answered from its L1"
        );
        a.cache()
            .set("cfg:1", &"v2".to_owned(), None)
            .await
            .unwrap();
        let overwritten = Instant::now();
        for i in 0..8 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            // Ignoring `invalidation(false)`: A's pub/sub message would evict B's copy within
            // about 100 ms, and B would read v2 from Redis.
            assert_eq!(
                b.cache().get::<String>("cfg:1").await.unwrap().as_deref(),
                Some("v1"),
                "check {i}, {:?} after A's write: B dropped its L1 copy",
                overwritten.elapsed()
            );
        }
        assert!(overwritten.elapsed() >= Duration::from_millis(300));
        // Redis holds v2 all along: the v1 above came from B's L1.
        b.cache().clear_l1();
        assert_eq!(
            b.cache().get::<String>("cfg:1").await.unwrap().as_deref(),
            Some("v2")
        );

        // Control: the same with invalidation on.
        let prefix = unique_prefix("attr_invalidation_on");
        let cfg = CacheConfig::default().invalidation(true);
        let a = runtime(&server.url(), &prefix, cfg.clone()).await;
        let b = runtime(&server.url(), &prefix, cfg).await;
        a.cache()
            .set("cfg:1", &"v1".to_owned(), None)
            .await
            .unwrap();
        // A's message about this first write may reach B after B's first read and evict what
        // it filled: read until B answers from L1.
        assert!(
            serves_from_l1(&b, "cfg:1", "v1").await,
            "B never answered from its L1"
        );
        a.cache()
            .set("cfg:1", &"v2".to_owned(), None)
            .await
            .unwrap();
        // If invalidation never reached B (e.g. the flag were read inverted or ignored as
        // off), B would keep v1 from L1 here just like above.
        let seen = eventually(
            Duration::from_millis(100),
            Duration::from_millis(2),
            || async { b.cache().get::<String>("cfg:1").await.unwrap().as_deref() == Some("v2") },
        )
        .await;
        assert!(seen, "with invalidation on, B still serves v1 after 100 ms");
    }
}
