//! Releasing: a dropped guard's lock is released in the background, `with_lock` releases
//! after its body (whatever the body returned) and never runs the body without the lock,
//! `is_locked` and `force_release`, and a release that finds the lock taken counts one loss. Each test runs on a standalone server and on the shared
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

/// The value of `redisx_lock_lost_total` in `rx`'s metrics.
fn lost_metric(rx: &RedisX) -> u64 {
    rx.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("redisx_lock_lost_total "))
        .and_then(|v| v.parse().ok())
        .expect("redisx_lock_lost_total in the metrics")
}

async fn a_release_that_finds_the_lock_taken_counts_one_loss(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("lock_release_lost");
    let rx = lock_runtime(&deployment.url(), &prefix, LockConfig::default()).await;
    let other = lock_runtime(&deployment.url(), &prefix, LockConfig::default()).await;
    let raw = deployment.raw_connection().await;
    let no_renewal = |ms| {
        LockOptions::new()
            .ttl(Duration::from_millis(ms))
            .auto_renew(false)
    };

    // Taken over before its validity deadline: only the release can find out.
    let guard = rx
        .locks()
        .acquire("report", &no_renewal(3000))
        .await
        .unwrap();
    assert!(other.locks().force_release("report").await.unwrap());
    let theirs = other
        .locks()
        .try_acquire("report", &LockOptions::new())
        .await
        .unwrap()
        .expect("the other owner takes the free lock");
    assert_eq!(rx.locks().stats().lost, 0, "nothing noticed it yet");
    let err = guard.release().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::LockNotOwned, "{err:#}");
    let stats = rx.locks().stats();
    assert_eq!((stats.lost, stats.active), (1, 0), "{stats:?}");
    assert_eq!(lost_metric(&rx), 1);
    assert!(theirs.is_held(), "the other owner's lock is untouched");
    assert!(rx.locks().is_locked("report").await.unwrap());
    theirs.release().await.unwrap();

    // Past its deadline the loss is counted then; the release that follows counts nothing.
    let guard = rx
        .locks()
        .acquire("digest", &no_renewal(300))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), guard.lost())
        .await
        .expect("the deadline passes");
    assert_eq!(rx.locks().stats().lost, 2);
    let key = rx.locks().full_key("digest");
    let expired = eventually(Duration::from_secs(2), Duration::from_millis(5), || {
        let (mut raw, key) = (raw.clone(), key.clone());
        async move { !exists(&mut raw, &key).await }
    })
    .await;
    assert!(expired, "the key expires at its ttl");
    let theirs = other
        .locks()
        .try_acquire("digest", &LockOptions::new())
        .await
        .unwrap()
        .expect("the other owner takes the expired lock");
    let err = guard.release().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::LockNotOwned, "{err:#}");
    assert_eq!(rx.locks().stats().lost, 2, "one loss, counted once");
    assert_eq!(lost_metric(&rx), 2);
    assert_eq!(other.locks().stats().lost, 0);
    theirs.release().await.unwrap();
    other.shutdown().await;
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
    a_release_that_finds_the_lock_taken_counts_one_loss,
    bad_keys_and_ttls_are_refused_before_redis,
);
