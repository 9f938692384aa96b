//! Locks when things stop: Redis down fails closed (an error, never a guard), and the runtime's
//! shutdown releases every lock still held, one failed release not stopping the others.
//! The shutdown test runs on a standalone server and on the shared 3-master cluster; the
//! others stop or pause a server of their own.

use std::time::Duration;

use redisx::ErrorCode;
use redisx::lock::{LockConfig, LockOptions};
use redisx::testing::{Deployment, Topology};
use redisx_tests::lock::{exists, lock_runtime};
use redisx_tests::{RedisServer, eventually, raw_connection, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_within_the_command_timeout() {
    let mut server = RedisServer::start_owned();
    let rx = lock_runtime(
        &server.url(),
        &unique_prefix("lock_down"),
        LockConfig::default(),
    )
    .await;
    server.kill();

    let opts = LockOptions::new().retries(5);
    for _ in 0..3 {
        let attempt = rx.locks().acquire("payment:1", &opts);
        // The command timeout is 500 ms; the bound is generous.
        let err = tokio::time::timeout(Duration::from_secs(5), attempt)
            .await
            .expect("fails within the command timeout, without retrying the busy-lock way")
            .unwrap_err();
        assert!(
            matches!(err.code().family(), "connection" | "operation"),
            "the connection or operation error, not a lock code: {err}"
        );
        assert_eq!(err.context_value("key"), Some("payment:1"), "{err}");
        let err = rx
            .locks()
            .try_acquire("payment:1", &LockOptions::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err.code().family(), "connection" | "operation"),
            "{err}"
        );
    }
    let stats = rx.locks().stats();
    assert_eq!((stats.errors, stats.acquired, stats.active), (6, 0, 0));
    rx.shutdown().await;
}

async fn shutdown_releases_every_held_lock_even_when_one_release_fails(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = lock_runtime(
        &deployment.url(),
        &unique_prefix("lock_shutdown"),
        LockConfig::default(),
    )
    .await;
    let mut raw = deployment.raw_connection().await;
    let locks = rx.locks();
    let a = locks.acquire("a", &LockOptions::new()).await.unwrap();
    let broken = locks.acquire("broken", &LockOptions::new()).await.unwrap();
    let c = locks.acquire("c", &LockOptions::new()).await.unwrap();
    // The release script of `broken` fails: its key is now a hash (WRONGTYPE on GET).
    let broken_key = locks.full_key("broken");
    let () = redis::pipe()
        .atomic()
        .del(&broken_key)
        .hset(&broken_key, "f", "v")
        .query_async(&mut raw)
        .await
        .unwrap();
    let lost = [a.lost(), broken.lost(), c.lost()];

    rx.shutdown().await;
    for name in ["a", "c"] {
        assert!(
            !exists(&mut raw, &locks.full_key(name)).await,
            "{name} released"
        );
    }
    assert_eq!(
        locks.stats().release_errors,
        1,
        "the failed release is counted"
    );
    assert_eq!(locks.stats().active, 0);
    for l in lost {
        tokio::time::timeout(Duration::from_secs(2), l)
            .await
            .expect("every guard learns its lock was released");
    }
    assert!(!a.is_held());
    let err = a.release().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::LockNotOwned, "{err}");
    assert!(err.message().contains("shutdown"), "{err}");
    drop((broken, c));
    rx.shutdown().await; // harmless
    assert!(rx.is_shut_down());
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    shutdown_releases_every_held_lock_even_when_one_release_fails
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_acquisition_leaves_no_lock_behind() {
    let server = RedisServer::start_owned();
    let rx = lock_runtime(
        &server.url(),
        &unique_prefix("lock_cancel"),
        LockConfig::default(),
    )
    .await;
    let raw = raw_connection(&server.url()).await;
    let lock_key = rx.locks().full_key("job");
    let fence_key = format!("{lock_key}:fence");

    // The attempt is sent to a paused server, and the caller gives up before the reply.
    server.pause();
    let opts = LockOptions::new();
    let cancelled =
        tokio::time::timeout(Duration::from_millis(100), rx.locks().acquire("job", &opts)).await;
    server.resume();
    assert!(cancelled.is_err(), "the caller gave up first");

    // The server ran the attempt once resumed (its fence counter is there), and the abandoned
    // lock was given up rather than left to its 30 s ttl.
    let cleaned = eventually(Duration::from_secs(2), Duration::from_millis(10), || {
        let mut raw = raw.clone();
        let (lock_key, fence_key) = (lock_key.clone(), fence_key.clone());
        async move { exists(&mut raw, &fence_key).await && !exists(&mut raw, &lock_key).await }
    })
    .await;
    assert!(cleaned, "the abandoned attempt's lock is released");
    let guard = rx.locks().try_acquire("job", &opts).await.unwrap();
    assert!(guard.is_some(), "free for the next caller");
    rx.shutdown().await;
}
