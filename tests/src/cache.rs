//! Fixtures of the cache tests (`tests/tests/cache_*.rs`): pairs of runtimes that stand for two
//! instances of one service, raw reads of what the cache stored (its entries and its lock
//! markers), and a load that finishes only when the test says so.

use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redisx::cache::Cache;
use redisx::{CacheConfig, Error, ErrorCode, RedisX};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use redisx::testing::{Deployment, RedisServer, raw_connection, runtime, unique_prefix};

/// How often the cache tests' `eventually` checks.
pub const POLL: Duration = Duration::from_millis(2);

/// Two runtimes on `deployment` (any topology) with one key prefix (made unique from `test`)
/// and the same `cache` config: two instances of one service.
///
/// # Panics
/// When a runtime does not build.
pub async fn pair(deployment: &Deployment, test: &str, cache: CacheConfig) -> (RedisX, RedisX) {
    let prefix = unique_prefix(test);
    let url = deployment.url();
    let a = runtime(&url, &prefix, cache.clone()).await;
    let b = runtime(&url, &prefix, cache).await;
    (a, b)
}

/// A raw redis-rs connection to `server` ([`raw_connection`] on its URL).
///
/// # Panics
/// When the server does not accept the connection.
pub async fn raw(server: &RedisServer) -> MultiplexedConnection {
    raw_connection(&server.url()).await
}

/// Whether the cache entry of `key` in `rx` exists in Redis, read with a raw connection to
/// `deployment`.
///
/// # Panics
/// When the read fails.
pub async fn in_redis(deployment: &Deployment, rx: &RedisX, key: &str) -> bool {
    let mut conn = deployment.raw_connection().await;
    redis::cmd("EXISTS")
        .arg(rx.cache().full_key(key))
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// A second runtime on `deployment`, under the test's prefix (so the test's clean-up deletes
/// its keys too), for functions that name their runtime with `runtime = ...`.
///
/// # Panics
/// When the runtime does not build.
pub async fn runtime_under(deployment: &Deployment, rx: &RedisX, name: &str) -> RedisX {
    let prefix = format!("{}{name}:", rx.key_prefix());
    runtime(&deployment.url(), &prefix, CacheConfig::default()).await
}

/// Reads the raw bytes under `key` until `done` accepts them (or 10 s pass: then panics).
///
/// # Panics
/// When `key` does not hold bytes that `done` accepts within 10 s (the message names `what`),
/// or a read fails.
pub async fn raw_until(
    conn: &mut impl ConnectionLike,
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

/// The raw bytes under `key` (`None` when it does not exist).
///
/// # Panics
/// When the read fails.
pub async fn raw_get(conn: &mut impl ConnectionLike, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

/// Starts `get_or_load(key)` on `cache` with a loader that returns `value` once the returned
/// sender fires (if the sender is dropped instead, the loader fails).
pub fn gated_load(
    cache: &Cache,
    key: &'static str,
    value: &'static str,
) -> (oneshot::Sender<()>, JoinHandle<Result<String, Error>>) {
    let (release, go) = oneshot::channel::<()>();
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

/// The remaining time to live of `key` in ms (Redis's `PTTL`: -1 without one, -2 when absent).
///
/// # Panics
/// When the read fails.
pub async fn pttl(conn: &mut impl ConnectionLike, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

/// A lock marker: 0xFE and a 16-byte token (17 bytes), plus "w" once a waiter flagged it.
pub fn is_marker(v: &[u8]) -> bool {
    v.first() == Some(&0xFE) && v.len() == 17
}

/// A set, get and delete of a key under `test`'s own prefix through the cache, with L1 and L2
/// and the invalidation listener.
///
/// # Panics
/// When a step fails or reads back something else.
pub async fn round_trip(rx: &RedisX, test: &str) {
    let key = format!("{}k", unique_prefix(test));
    rx.cache()
        .set(&key, &"v".to_owned(), None)
        .await
        .expect("set");
    assert_eq!(
        rx.cache()
            .get::<String>(&key)
            .await
            .expect("get")
            .as_deref(),
        Some("v")
    );
    rx.cache().delete(&key).await.expect("delete");
    assert_eq!(rx.cache().get::<String>(&key).await.expect("get"), None);
}
