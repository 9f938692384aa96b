//! Releasing: a dropped guard's lock is released in the background, `with_lock` releases
//! after its body (whatever the body returned) and never runs the body without the lock,
//! `is_locked` and `force_release`. Each test runs on a standalone server and on the shared
//! 3-master cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redisx::lock::{LockConfig, LockOptions};
use redisx::testing::{Deployment, Topology};
use redisx::{Error, ErrorCode, RedisX};
use redisx_tests::lock::{exists, lock_runtime};
use redisx_tests::{eventually, unique_prefix};

async fn start(deployment: &Deployment, test: &str) -> RedisX {
    lock_runtime(
        &deployment.url(),
        &unique_prefix(test),
        LockConfig::default(),
    )
    .await
}

async fn a_dropped_guard_releases_its_lock_soon_after(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = start(&deployment, "lock_dropped").await;
    let raw = deployment.raw_connection().await;
    let key = rx.locks().full_key("export");
    let guard = rx
        .locks()
        .acquire("export", &LockOptions::new())
        .await
        .unwrap();
    let lost = guard.lost();
    assert_eq!(rx.locks().stats().active, 1);
    drop(guard);

    let gone = eventually(Duration::from_secs(2), Duration::from_millis(5), || {
        let (mut raw, key) = (raw.clone(), key.clone());
        async move { !exists(&mut raw, &key).await }
    })
    .await;
    assert!(
        gone,
        "the dropped guard's key is deleted, not left to expire"
    );
    tokio::time::timeout(Duration::from_secs(2), lost)
        .await
        .expect("lost() of a dropped guard resolves");
    let stats = rx.locks().stats();
    assert_eq!((stats.active, stats.lost), (0, 0), "a drop is no loss");
    assert!(rx.metrics_text().contains("redisx_locks_active 0"));
    rx.shutdown().await;
}

#[derive(Debug, PartialEq)]
enum AppError {
    Redisx(ErrorCode),
    Declined,
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        Self::Redisx(e.code())
    }
}

async fn with_lock_releases_after_the_body_whatever_it_returned(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = start(&deployment, "lock_with").await;
    let locks = rx.locks();

    let ok: Result<u32, AppError> = locks
        .with_lock("order:1", &LockOptions::new(), async {
            assert!(
                locks.is_locked("order:1").await.unwrap(),
                "held inside the body"
            );
            Ok(7)
        })
        .await;
    assert_eq!(ok, Ok(7));
    assert!(
        !locks.is_locked("order:1").await.unwrap(),
        "released after it"
    );

    let failed: Result<u32, AppError> = locks
        .with_lock("order:1", &LockOptions::new(), async {
            Err(AppError::Declined)
        })
        .await;
    assert_eq!(
        failed,
        Err(AppError::Declined),
        "the body's error, unchanged"
    );
    assert!(
        !locks.is_locked("order:1").await.unwrap(),
        "released after an error too"
    );

    // The body's result stands when the release fails (here: the lock was removed meanwhile).
    let lost_release: Result<&str, AppError> = locks
        .with_lock("order:1", &LockOptions::new(), async {
            assert!(locks.force_release("order:1").await.unwrap());
            Ok("done")
        })
        .await;
    assert_eq!(lost_release, Ok("done"));
    assert_eq!(
        locks.stats().release_errors,
        1,
        "the failed release is counted"
    );
    rx.shutdown().await;
}

async fn with_lock_never_runs_the_body_without_the_lock(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = start(&deployment, "lock_with_busy").await;
    let held = rx
        .locks()
        .acquire("order:2", &LockOptions::new())
        .await
        .unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let out: Result<(), AppError> = rx
        .locks()
        .with_lock("order:2", &LockOptions::new().retries(1), {
            let ran = ran.clone();
            async move {
                ran.store(true, Ordering::SeqCst);
                Ok(())
            }
        })
        .await;
    assert_eq!(
        out,
        Err(AppError::Redisx(ErrorCode::LockAcquisitionTimeout))
    );
    assert!(!ran.load(Ordering::SeqCst), "the body did not run");
    assert!(held.is_held(), "the holder's lock is untouched");
    held.release().await.unwrap();
    rx.shutdown().await;
}

async fn force_release_removes_whoever_holds_the_lock(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = start(&deployment, "lock_force").await;
    let locks = rx.locks();
    assert!(!locks.is_locked("job").await.unwrap());
    assert!(
        !locks.force_release("job").await.unwrap(),
        "nothing to remove"
    );
    let guard = locks
        .acquire("job", &LockOptions::new().ttl(Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(locks.is_locked("job").await.unwrap());
    assert!(locks.force_release("job").await.unwrap());
    assert!(!locks.is_locked("job").await.unwrap());
    tokio::time::timeout(Duration::from_secs(2), guard.lost())
        .await
        .expect("the holder learns it at its next renewal");
    let next = locks.try_acquire("job", &LockOptions::new()).await.unwrap();
    assert!(next.unwrap().fencing_token() > guard.fencing_token());
    rx.shutdown().await;
}

async fn bad_keys_and_ttls_are_refused_before_redis(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = start(&deployment, "lock_bad_args").await;
    let err = rx
        .locks()
        .acquire("k", &LockOptions::new().ttl(Duration::from_secs(301)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid);
    assert!(
        err.message().contains("301s") && err.message().contains("300s"),
        "{err}"
    );
    let err = rx
        .locks()
        .acquire("", &LockOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::LockKeyInvalid, "{err}");
    let err = rx
        .locks()
        .acquire("}x", &LockOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::LockKeyInvalid, "{err}");
    assert!(err.message().contains("hash tag"), "{err}");
    let guard = rx
        .locks()
        .acquire("a{b}c", &LockOptions::new())
        .await
        .unwrap();
    let err = guard.extend(Duration::from_secs(600)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid);
    guard.extend(Duration::from_secs(60)).await.unwrap();
    assert!(
        guard.valid_for() > Duration::from_secs(30),
        "{:?}",
        guard.valid_for()
    );
    guard.release().await.unwrap();
    let err = RedisX::builder()
        .client("default", deployment.url().parse().unwrap())
        .locks(LockConfig::default().default_ttl(Duration::from_secs(900)))
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid);
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_dropped_guard_releases_its_lock_soon_after,
    with_lock_releases_after_the_body_whatever_it_returned,
    with_lock_never_runs_the_body_without_the_lock,
    force_release_removes_whoever_holds_the_lock,
    bad_keys_and_ttls_are_refused_before_redis,
);
