//! What the locks show: the `lock.acquire` and `lock.release` spans (target `redisx::lock`,
//! the key only with `record_keys(true)`) and the `redisx_lock_*` metrics, on a standalone
//! server and on the shared 3-master cluster.

use redisx::RedisX;
use redisx::lock::{LockConfig, LockOptions};
use redisx::testing::{Deployment, Topology};
use redisx_tests::spans::Capture;
use redisx_tests::unique_prefix;
use tracing_subscriber::layer::SubscriberExt as _;

async fn start(deployment: &Deployment, record_keys: bool) -> RedisX {
    deployment
        .redisx_builder()
        .key_prefix(unique_prefix("lock_spans"))
        .locks(LockConfig::default().retries(1))
        .record_keys(record_keys)
        .build()
        .await
        .unwrap()
}

// One test in this binary, looping over the topologies: tests on other threads would race the
// callsites' interest cache. Current-thread runtime: the subscriber is the thread's default,
// and every task runs here.
#[tokio::test(flavor = "current_thread")]
async fn spans_carry_ttl_attempts_and_outcome_and_metrics_follow_the_locks() {
    for topology in [Topology::Standalone, Topology::Cluster] {
        // Which topology a failure comes from, in the test's output.
        eprintln!("on {topology}");
        spans_and_metrics(topology).await;
    }
}

/// The checks on `topology`, with a capture of their own.
async fn spans_and_metrics(topology: Topology) {
    let deployment = Deployment::start(topology);
    let capture = Capture::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));

    let rx = start(&deployment, false).await;
    let opts = LockOptions::new().ttl(std::time::Duration::from_secs(5));
    let guard = rx.locks().acquire("order:1", &opts).await.unwrap();
    let busy = rx.locks().acquire("order:1", &opts).await.unwrap_err();
    guard.release().await.unwrap();

    let acquires = capture.spans("lock.acquire");
    assert_eq!(acquires.len(), 2, "{acquires:?}");
    let (ok, timed_out) = (&acquires[0], &acquires[1]);
    assert_eq!(ok.target, "redisx::lock");
    assert_eq!(ok.field("lock.ttl_ms"), Some("5000"));
    assert_eq!(ok.field("lock.attempts"), Some("1"));
    assert_eq!(ok.field("lock.acquired"), Some("true"));
    assert_eq!(timed_out.field("lock.attempts"), Some("2"), "{timed_out:?}");
    assert_eq!(timed_out.field("lock.acquired"), Some("false"));
    assert_eq!(busy.context_value("attempts"), Some("2"));
    assert!(
        acquires.iter().all(|s| !s.fields.contains_key("lock.key")),
        "no key unless record_keys(true): {acquires:?}"
    );
    let releases = capture.spans("lock.release");
    assert_eq!(releases.len(), 1, "{releases:?}");
    assert_eq!(releases[0].field("lock.released"), Some("true"));
    rx.shutdown().await;

    let rx = start(&deployment, true).await;
    rx.locks()
        .acquire("order:2", &opts)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let last = capture.spans("lock.acquire").pop().unwrap();
    assert_eq!(last.field("lock.key"), Some("order:2"));
    rx.shutdown().await;

    check_metrics(&deployment).await;
}

/// The `redisx_lock_*` metrics follow acquisitions, holds and drops.
async fn check_metrics(deployment: &Deployment) {
    let rx = start(deployment, false).await;
    let opts = LockOptions::new();
    let guard = rx.locks().acquire("report", &opts).await.unwrap();
    let dropped = rx.locks().acquire("other", &opts).await.unwrap();
    assert!(
        rx.locks()
            .try_acquire("report", &opts)
            .await
            .unwrap()
            .is_none()
    );
    assert!(rx.locks().acquire("report", &opts).await.is_err());
    let text = rx.metrics_text();
    for line in [
        "redisx_lock_acquisitions_total{status=\"acquired\"} 2",
        "redisx_lock_acquisitions_total{status=\"busy\"} 1",
        "redisx_lock_acquisitions_total{status=\"timeout\"} 1",
        "redisx_lock_acquisitions_total{status=\"error\"} 0",
        "redisx_lock_wait_duration_seconds_count 4",
        "redisx_locks_active 2",
        "redisx_lock_lost_total 0",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    guard.release().await.unwrap();
    drop(dropped);
    let text = rx.metrics_text();
    assert!(text.contains("redisx_locks_active 0"), "{text}");
    assert!(
        text.contains("redisx_lock_hold_duration_seconds_count 2"),
        "{text}"
    );
    rx.shutdown().await;
}
