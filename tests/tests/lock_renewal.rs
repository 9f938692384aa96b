//! Auto-renewal and the loss signal: a 300 ms lock kept through a 2 s body; a key deleted from
//! outside, and a Redis that stops answering (SIGSTOP), both fire `lost()`. Each test runs on
//! a standalone server and on the shared 3-master cluster, except the SIGSTOP one, which
//! pauses a server of its own.

use std::time::Duration;

use futures_util::FutureExt as _;
use redisx::ErrorCode;
use redisx::lock::{LockConfig, LockOptions};
use redisx::testing::{Deployment, Topology};
use redisx_tests::lock::{get, lock_runtime};
use redisx_tests::{RedisServer, unique_prefix};

const TTL: Duration = Duration::from_millis(300);

/// `lost()` must resolve within this (a generous bound, not a timing assertion).
const WITHIN: Duration = Duration::from_secs(2);

async fn auto_renew_keeps_a_short_lock_through_a_long_body(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = lock_runtime(
        &deployment.url(),
        &unique_prefix("lock_renew"),
        LockConfig::default(),
    )
    .await;
    let mut raw = deployment.raw_connection().await;
    let guard = rx
        .locks()
        .acquire("report", &LockOptions::new().ttl(TTL))
        .await
        .unwrap();
    let lost = guard.lost();
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert!(guard.is_held(), "still held after more than six ttls");
    assert!(lost.now_or_never().is_none(), "lost() has not fired");
    let key = rx.locks().full_key("report");
    assert_eq!(
        get(&mut raw, &key).await.as_deref(),
        Some(guard.owner_token())
    );
    assert_eq!(rx.locks().stats().lost, 0);
    guard.release().await.unwrap();
    rx.shutdown().await;
}

async fn without_auto_renew_the_lock_is_lost_at_its_deadline(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = lock_runtime(
        &deployment.url(),
        &unique_prefix("lock_no_renew"),
        LockConfig::default(),
    )
    .await;
    let guard = rx
        .locks()
        .acquire("report", &LockOptions::new().ttl(TTL).auto_renew(false))
        .await
        .unwrap();
    tokio::time::timeout(WITHIN, guard.lost())
        .await
        .expect("lost() fires once the unrenewed lock's validity ends");
    assert!(!guard.is_held());
    assert_eq!(guard.valid_for(), Duration::ZERO);
    assert_eq!(rx.locks().stats().lost, 1);
    rx.shutdown().await;
}

async fn a_key_deleted_from_outside_fires_lost(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = lock_runtime(
        &deployment.url(),
        &unique_prefix("lock_deleted"),
        LockConfig::default(),
    )
    .await;
    let mut raw = deployment.raw_connection().await;
    let guard = rx
        .locks()
        .acquire("job", &LockOptions::new().ttl(TTL))
        .await
        .unwrap();
    let lost = guard.lost();
    let _: i64 = redis::cmd("DEL")
        .arg(rx.locks().full_key("job"))
        .query_async(&mut raw)
        .await
        .unwrap();

    tokio::time::timeout(WITHIN, lost)
        .await
        .expect("the next renewal finds the key gone");
    assert!(!guard.is_held());
    let stats = rx.locks().stats();
    assert_eq!(
        (stats.lost, stats.active),
        (1, 0),
        "counted once, no longer active"
    );
    let err = guard.release().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::LockNotOwned, "{err}");
    assert_eq!(rx.locks().stats().lost, 1, "the loss is counted once");
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    auto_renew_keeps_a_short_lock_through_a_long_body,
    without_auto_renew_the_lock_is_lost_at_its_deadline,
    a_key_deleted_from_outside_fires_lost,
);

/// Resumes the paused server when dropped, also when the test fails.
struct Resume<'a>(&'a RedisServer);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        self.0.resume();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_fires_lost_by_the_local_deadline() {
    let server = RedisServer::start_owned();
    let rx = lock_runtime(
        &server.url(),
        &unique_prefix("lock_sigstop"),
        LockConfig::default(),
    )
    .await;
    let guard = rx
        .locks()
        .acquire("job", &LockOptions::new().ttl(TTL))
        .await
        .unwrap();
    server.pause();
    let resume = Resume(&server);

    // Redis cannot answer while paused: only the local validity deadline can fire lost().
    tokio::time::timeout(WITHIN, guard.lost())
        .await
        .expect("lost() fires by the local deadline while Redis hangs");
    assert!(!guard.is_held());
    assert_eq!(guard.valid_for(), Duration::ZERO);
    assert_eq!(rx.locks().stats().lost, 1);
    drop(resume);
    drop(guard);
    rx.shutdown().await;
}
