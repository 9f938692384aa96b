//! Fixtures of the lock tests (`tests/tests/lock_*.rs`): runtimes with a lock config, raw reads
//! of the lock keys, and the count of scripts a runtime ran.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redisx::RedisX;
use redisx::lock::LockConfig;

/// A runtime on `url` with the key prefix `prefix` and `locks`, a short command timeout and a
/// quick reconnect (for the tests that stop or restart the server).
///
/// # Panics
/// When the runtime does not build.
pub async fn lock_runtime(url: &str, prefix: &str, locks: LockConfig) -> RedisX {
    let config = crate::quick_connection(url);
    RedisX::builder()
        .client("default", config)
        .key_prefix(prefix)
        .locks(locks)
        .build()
        .await
        .expect("the runtime builds")
}

/// The value of `key`, read without redisx.
///
/// # Panics
/// When the read fails.
pub async fn get(conn: &mut impl ConnectionLike, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query_async(conn)
        .await
        .expect("GET")
}

/// Whether `key` exists, read without redisx.
///
/// # Panics
/// When the read fails.
pub async fn exists(conn: &mut impl ConnectionLike, key: &str) -> bool {
    let n: i64 = redis::cmd("EXISTS")
        .arg(key)
        .query_async(conn)
        .await
        .expect("EXISTS");
    n == 1
}

/// How many scripts (`EVALSHA`, either outcome) `rx` has sent, from its metrics: one per
/// acquisition attempt, release or renewal.
pub fn scripts_sent(rx: &RedisX) -> u64 {
    crate::metric_sum(rx, "redisx_commands_total", &["command=\"EVALSHA\""])
}

/// Waits (up to 2 s) until some runtime on the server at `url` has a pattern subscription: the
/// locks' release listener, opened when a caller first waits.
///
/// # Panics
/// When no pattern subscription appears in time, or the server cannot be asked.
pub async fn wait_for_release_listener(url: &str) {
    let conn = crate::raw_connection(url).await;
    let subscribed = crate::eventually(Duration::from_secs(2), Duration::from_millis(10), || {
        let mut conn = conn.clone();
        async move {
            let n: i64 = redis::cmd("PUBSUB")
                .arg("NUMPAT")
                .query_async(&mut conn)
                .await
                .expect("PUBSUB NUMPAT");
            n >= 1
        }
    })
    .await;
    assert!(subscribed, "a runtime subscribed to lock release messages");
}
