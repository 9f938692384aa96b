//! Fixtures of the lock tests (`tests/tests/lock_*.rs`): runtimes with a lock config, raw reads
//! of the lock keys, the count of scripts a runtime ran, and a wait for a runtime's release
//! listener on any topology.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redisx::RedisX;
use redisx::lock::LockConfig;
use redisx::testing::Deployment;

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

/// The payload of the probes [`wait_for_release_listener_of`] publishes. A release message is
/// `{runtime id}:{fencing token}`, never this, so a test reading the lock channels can tell
/// the probes from the releases.
pub const LISTENER_PROBE: &str = "redisx-tests:release-listener-probe";

/// Waits (up to 2 s) until a runtime on `rx`'s key prefix (`rx` or another instance) has its
/// locks' release listener, opened when a caller first waits, subscribed on `deployment`.
///
/// It publishes [`LISTENER_PROBE`] on a lock channel of the prefix (of a lock nobody waits
/// on, so a listener ignores it) on each server of [`Deployment::server_urls`] and sums the
/// receivers: a `PUBLISH` counts the subscribers of its own node only, and the listener's
/// subscription lives on one node of a cluster. `PUBSUB NUMPAT` would also count the patterns
/// of the other tests sharing the cluster.
///
/// # Panics
/// When no listener receives the probe in time, or a server cannot be asked.
pub async fn wait_for_release_listener_of(deployment: &Deployment, rx: &RedisX) {
    // The documented channel layout: `{lock key}:released`.
    let channel = format!(
        "{}:released",
        rx.locks().full_key("redisx-tests:release-listener-probe")
    );
    let nodes = crate::Nodes::of(deployment).await;
    let subscribed = crate::eventually(Duration::from_secs(2), Duration::from_millis(10), || {
        let (mut nodes, channel) = (nodes.clone(), channel.clone());
        async move { nodes.publish(&channel, LISTENER_PROBE).await >= 1 }
    })
    .await;
    assert!(
        subscribed,
        "a runtime on {} subscribed to lock release messages",
        deployment.topology()
    );
}
