//! The same behaviour over both connection drivers, [`DriverKind::Multiplexed`] and
//! [`DriverKind::Pool`]: every behaviour is one helper taking the driver, run by one test per
//! driver (`<behaviour>::multiplexed`, `<behaviour>::pool`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redisx::{
    CacheConfig, CacheMode, ConnectionConfig, DriverKind, Error, ErrorCode, ReconnectPolicy, RedisX,
};
use redisx_tests::{RedisServer, unique_prefix};
use serde::{Deserialize, Serialize};

/// Runs `$behaviour(driver)` once per driver, as `$behaviour::multiplexed` and
/// `$behaviour::pool`.
macro_rules! for_both_drivers {
    ($($behaviour:ident),* $(,)?) => {$(
        mod $behaviour {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn multiplexed() {
                super::$behaviour(redisx::DriverKind::Multiplexed).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pool() {
                super::$behaviour(redisx::DriverKind::Pool { max_size: 4 }).await;
            }
        }
    )*};
}

for_both_drivers!(
    cache_set_then_get,
    get_or_load_misses_then_hits,
    raw_commands_and_pipelines,
    reconnects_after_a_restart,
    the_command_timeout_is_enforced,
);

fn config(server: &RedisServer, driver: DriverKind) -> ConnectionConfig {
    ConnectionConfig::from_url(&server.url())
        .unwrap()
        .driver(driver)
        .connect_timeout(Duration::from_secs(1))
        .command_timeout(Duration::from_millis(500))
        .reconnect(
            ReconnectPolicy::default()
                .initial(Duration::from_millis(50))
                .max(Duration::from_millis(200)),
        )
}

async fn runtime(cfg: ConnectionConfig, test: &str, cache: CacheConfig) -> RedisX {
    let driver = cfg.driver_value();
    let rx = RedisX::builder()
        .client("default", cfg)
        .key_prefix(unique_prefix(test))
        .cache(cache)
        .build()
        .await
        .unwrap();
    assert_eq!(rx.client().config().driver_value(), driver);
    rx
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    lines: Vec<(String, u32)>,
}

fn order(id: u64) -> Order {
    Order {
        id,
        lines: vec![("apple".to_owned(), 3), ("pear".to_owned(), 1)],
    }
}

async fn cache_set_then_get(driver: DriverKind) {
    let server = RedisServer::start();
    let rx = runtime(config(&server, driver), "drv_set", CacheConfig::default()).await;
    let cache = rx.cache();
    cache.set("order:1", &order(1), None).await.unwrap();
    assert_eq!(cache.get::<Order>("order:1").await.unwrap(), Some(order(1)));
    cache.clear_l1();
    assert_eq!(
        cache.get::<Order>("order:1").await.unwrap(),
        Some(order(1)),
        "read back from Redis"
    );
    assert_eq!(cache.stats().l2_hits, 1);
    assert_eq!(cache.get::<Order>("order:2").await.unwrap(), None);
    assert!(cache.delete("order:1").await.unwrap());
    assert_eq!(cache.get::<Order>("order:1").await.unwrap(), None);
}

async fn get_or_load_misses_then_hits(driver: DriverKind) {
    let server = RedisServer::start();
    let rx = runtime(config(&server, driver), "drv_load", CacheConfig::default()).await;
    let calls = AtomicUsize::new(0);
    let load = || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Error>(order(7))
    };
    let cache = rx.cache();
    assert_eq!(cache.get_or_load("o", None, load).await.unwrap(), order(7));
    assert_eq!(cache.get_or_load("o", None, load).await.unwrap(), order(7));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the second call is an L1 hit"
    );
    cache.clear_l1();
    assert_eq!(cache.get_or_load("o", None, load).await.unwrap(), order(7));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the third call is an L2 hit"
    );
    assert_eq!(cache.stats().l2_hits, 1);

    // Through Redis only: a second runtime on the same prefix sees the value.
    let l2 = RedisX::builder()
        .client("default", config(&server, driver))
        .key_prefix(rx.key_prefix())
        .cache(CacheConfig::default().mode(CacheMode::L2Only))
        .build()
        .await
        .unwrap();
    assert_eq!(
        l2.cache().get_or_load("o", None, load).await.unwrap(),
        order(7)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

async fn raw_commands_and_pipelines(driver: DriverKind) {
    let server = RedisServer::start();
    let rx = runtime(config(&server, driver), "drv_raw", CacheConfig::default()).await;
    let key = format!("{}counter", rx.key_prefix());
    let client = rx.client();
    let () = client
        .query(redis::cmd("SET").arg(&key).arg(41))
        .await
        .unwrap();
    let n: i64 = client.query(redis::cmd("INCR").arg(&key)).await.unwrap();
    assert_eq!(n, 42);
    let (a, b): (i64, Option<String>) = client
        .query_pipeline(
            redis::pipe()
                .cmd("INCRBY")
                .arg(&key)
                .arg(8)
                .cmd("GET")
                .arg(&key),
        )
        .await
        .unwrap();
    assert_eq!((a, b.as_deref()), (50, Some("50")));
    let err = client
        .query::<()>(redis::cmd("HSET").arg(&key).arg("f").arg("v"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::OperationFailed, "{err}");
    assert!(
        client.ping().await.is_ok(),
        "an error reply leaves the client usable"
    );
}

async fn reconnects_after_a_restart(driver: DriverKind) {
    let mut server = RedisServer::start_owned();
    let rx = runtime(
        config(&server, driver),
        "drv_restart",
        CacheConfig::default(),
    )
    .await;
    rx.cache().set("k", &1u32, None).await.unwrap();

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let started = Instant::now();
        let r: redisx::Result<String> = rx.client().query(&redis::cmd("PING")).await;
        let took = started.elapsed();
        match r {
            Ok(pong) => {
                assert_eq!(pong, "PONG");
                break;
            }
            Err(e) => {
                assert!(
                    matches!(
                        e.code(),
                        ErrorCode::ConnectionClosed
                            | ErrorCode::ConnectionFailed
                            | ErrorCode::ConnectionTimeout
                    ),
                    "{driver:?}: a call while reconnecting failed with {e}"
                );
                assert!(
                    took < Duration::from_secs(2),
                    "{driver:?}: a failing call took {took:?}"
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "{driver:?}: no successful call within 10 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The restarted server is empty; the cache works against it.
    rx.cache().clear_l1();
    assert_eq!(rx.cache().get::<u32>("k").await.unwrap(), None);
    let calls = AtomicUsize::new(0);
    for _ in 0..2 {
        let v = rx
            .cache()
            .get_or_load("k", None, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(2u32)
            })
            .await
            .unwrap();
        assert_eq!(v, 2);
        rx.cache().clear_l1();
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "{driver:?}: the value was not written to the restarted server"
    );
}

async fn the_command_timeout_is_enforced(driver: DriverKind) {
    let server = RedisServer::builder()
        .arg("--enable-debug-command")
        .arg("yes")
        .start();
    let cfg = config(&server, driver).command_timeout(Duration::from_millis(200));
    let rx = runtime(cfg, "drv_timeout", CacheConfig::default()).await;
    let started = Instant::now();
    let err = rx
        .client()
        .query::<()>(redis::cmd("DEBUG").arg("SLEEP").arg("1"))
        .await
        .expect_err("DEBUG SLEEP 1 outlives a 200 ms command timeout");
    let took = started.elapsed();
    assert_eq!(err.code(), ErrorCode::OperationTimeout, "{driver:?}: {err}");
    assert!(
        took < Duration::from_millis(900),
        "{driver:?}: the caller waited for the reply ({took:?})"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while rx.client().ping().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "{driver:?}: the client did not recover after a timeout"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
