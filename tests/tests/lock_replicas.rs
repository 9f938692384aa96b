//! `LockOptions::wait_replicas`: an acquire waits until the lock is on the replicas asked for
//! (`WAIT` on the connection that wrote it), against a real primary and replica; with the
//! replica down the acquire fails with `LOCK_ACQUISITION_FAILED` and leaves no lock behind.
//! On a cluster the `WAIT` goes to the master of the lock key's slot.

use std::time::Duration;

use redisx::lock::{LockConfig, LockOptions};
use redisx::testing::{Deployment, Member, RedisServer, Topology};
use redisx::{ErrorCode, redis};
use redisx_tests::lock::{get, lock_runtime};
use redisx_tests::{raw_connection, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_waits_for_the_replica_or_fails_and_releases() {
    let mut set = RedisServer::with_replicas(1);
    let rx = lock_runtime(
        &set.primary_url(),
        &unique_prefix("lock_replicas"),
        LockConfig::default(),
    )
    .await;
    let locks = rx.locks();
    let key = format!("{}lock:{{payout}}", rx.key_prefix());
    let mut replica = raw_connection(&set.replica_urls()[0]).await;

    let opts = LockOptions::new().wait_replicas(1, Duration::from_secs(5));
    let guard = locks.acquire("payout", &opts).await.unwrap();
    // The replica has the lock, with this owner's token, when the caller gets it.
    assert_eq!(
        get(&mut replica, &key).await.as_deref(),
        Some(guard.owner_token())
    );
    let first_fence = guard.fencing_token();
    guard.release().await.unwrap();

    // A server that lost its scripts (NOSCRIPT): they are loaded again and the acquire sent once more.
    let mut primary = raw_connection(&set.primary_url()).await;
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut primary)
        .await
        .unwrap();
    let guard = locks.acquire("payout", &opts).await.unwrap();
    assert!(guard.fencing_token() > first_fence);
    let first_fence = guard.fencing_token();
    guard.release().await.unwrap();

    set.kill(Member::Replica(0));
    let short = LockOptions::new().wait_replicas(1, Duration::from_millis(200));
    let e = locks.acquire("payout", &short).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::LockAcquisitionFailed, "{e:#}");
    assert!(e.message().contains("0 of the 1 replica"), "{e:#}");
    assert_eq!(e.context_value("replicas"), Some("0"), "{e:#}");
    // Released again: free for a caller that does not ask for replicas.
    assert!(!locks.is_locked("payout").await.unwrap());
    let guard = locks.acquire("payout", &LockOptions::new()).await.unwrap();
    assert!(guard.fencing_token() > first_fence);
    guard.release().await.unwrap();
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_the_wait_reaches_the_lock_keys_master() {
    let deployment = Deployment::start(Topology::Cluster);
    let rx = deployment
        .redisx_builder()
        .key_prefix(unique_prefix("lock_replicas_cluster"))
        .locks(LockConfig::default())
        .build()
        .await
        .unwrap();
    let opts = LockOptions::new().wait_replicas(1, Duration::from_secs(5));
    // Keys on several slots, so on several masters.
    for key in ["a", "b", "c", "d", "e", "f"] {
        let guard = rx.locks().acquire(key, &opts).await.unwrap();
        let full = format!("{}lock:{{{key}}}", rx.key_prefix());
        let v: Option<String> =
            redisx_tests::raw_query(&deployment, redis::cmd("GET").arg(&full)).await;
        assert_eq!(v.as_deref(), Some(guard.owner_token()), "{key}");
        guard.release().await.unwrap();
    }
    rx.shutdown().await;
}
