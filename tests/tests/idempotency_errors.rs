//! Idempotent calls that do not end with a value: an `Err` marks the key failed for the lock
//! ttl (duplicates get `IDEMPOTENCY_PREVIOUS_FAILED`, then a retry runs), unless errors are
//! recorded (then replayed like a value); a call cancelled mid-body marks its key failed at
//! once, and a waiting duplicate is told so instead of waiting out the lease; a duplicate gives
//! up after its `wait`; and Redis down fails closed by default, or runs the body unprotected
//! with `ErrorPolicy::FailOpen`.
//!
//! The tests run on a standalone server and on the cluster, but for those that stop Redis (a
//! server of their own, killed), which run on a standalone server.

use std::future::Future;
use std::time::Duration;

use redisx::idempotency::{Check, ErrorPolicy, IdempotencyConfig, IdempotencyOptions, Status};
use redisx::testing::{Deployment, Topology};
use redisx::{Error, ErrorCode, RedisX};
use redisx_tests::Nodes;
use redisx_tests::idempotency::{
    Runs, done_channel, idem_runtime, pttl, requests, wait_for_listeners,
};
use redisx_tests::{RedisServer, eventually, unique_prefix};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

const FP: &str = "9c2e-fingerprint";
const NO_DELAY: Duration = Duration::ZERO;

/// Bounds what must end on its own well before any lease or wait (30 s and more) runs out.
async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: still pending after 5 s"))
}

/// A body that counts its run, then fails.
fn failing<T: Send + 'static>(runs: &Runs) -> impl Future<Output = Result<T, Error>> + Send {
    let started = runs.body(NO_DELAY, ());
    async move {
        started.await?;
        Err(Error::new(
            ErrorCode::Internal,
            "the payment gateway refused",
        ))
    }
}

/// A payment's own error, recorded and replayed with `run_recording_errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum PayError {
    Declined(String),
    /// A redisx error, by its code.
    Redisx(String),
}

impl From<Error> for PayError {
    fn from(e: Error) -> Self {
        Self::Redisx(e.code().as_str().to_owned())
    }
}

async fn start(url: &str, test: &str, cfg: IdempotencyConfig) -> RedisX {
    idem_runtime(url, &unique_prefix(test), cfg).await
}

async fn an_error_marks_the_key_failed_and_duplicates_get_previous_failed(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = start(
        &deployment.url(),
        "idem_failed",
        IdempotencyConfig::default(),
    )
    .await;
    let mut raw = deployment.raw_connection().await;
    let idem = rx.idempotency();
    let opts = IdempotencyOptions::new();
    let runs = Runs::new();

    let err = idem
        .run::<u32, Error, _>("pay:1", FP, &opts, failing(&runs))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        ErrorCode::Internal,
        "the body's own error: {err}"
    );
    let rec = idem.get("pay:1").await.unwrap().expect("a record");
    assert_eq!((rec.status(), rec.reason()), (Status::Failed, "error"));
    assert!(rec.completed_at().is_some() && rec.result().is_empty());
    let left = pttl(&mut raw, &idem.full_key("pay:1")).await;
    assert!(
        left > 25_000 && left <= 30_000,
        "kept for the lock ttl (30 s): {left} ms"
    );

    let err = idem
        .run::<u32, Error, _>("pay:1", FP, &opts, runs.body(NO_DELAY, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::IdempotencyPreviousFailed, "{err}");
    assert_eq!(err.context_value("reason"), Some("error"), "{err}");
    let err = idem.check_and_lock("pay:1", FP, &opts).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::IdempotencyPreviousFailed, "{err}");
    assert_eq!(runs.count(), 1, "the duplicates did not run");

    // A claim failed by hand, with its reason.
    let Check::New(claim) = idem.check_and_lock("pay:2", FP, &opts).await.unwrap() else {
        panic!("claimed");
    };
    assert!(idem.fail(claim, "gateway_timeout").await.unwrap());
    let rec = idem.get("pay:2").await.unwrap().unwrap();
    assert_eq!(
        (rec.status(), rec.reason()),
        (Status::Failed, "gateway_timeout")
    );
    let err = idem.check_and_lock("pay:2", FP, &opts).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::IdempotencyPreviousFailed, "{err}");
    assert_eq!(
        err.context_value("reason"),
        Some("gateway_timeout"),
        "{err}"
    );

    assert_eq!(idem.stats().previous_failed, 3);
    assert_eq!(requests(&rx, "previous_failed"), 3);
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    an_error_marks_the_key_failed_and_duplicates_get_previous_failed,
);

async fn after_the_lock_ttl_a_failed_key_runs_again(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = start(
        &deployment.url(),
        "idem_retry",
        IdempotencyConfig::default(),
    )
    .await;
    let idem = rx.idempotency();
    let opts = IdempotencyOptions::new().lock_ttl(Duration::from_millis(300));
    let runs = Runs::new();
    let err = idem
        .run::<u32, Error, _>("pay:1", FP, &opts, failing(&runs))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Internal, "{err}");

    let gone = eventually(
        Duration::from_secs(2),
        Duration::from_millis(20),
        || async move { idem.get("pay:1").await.unwrap().is_none() },
    )
    .await;
    assert!(
        gone,
        "the failed record expires after the lock ttl (300 ms)"
    );
    let v: u32 = idem
        .run("pay:1", FP, &opts, runs.body(NO_DELAY, 7))
        .await
        .unwrap();
    assert_eq!((v, runs.count()), (7, 2), "the retry ran");
    let rec = idem.get("pay:1").await.unwrap().unwrap();
    assert_eq!((rec.status(), rec.result()), (Status::Completed, &b"7"[..]));
    rx.shutdown().await;
}

async fn recorded_errors_are_replayed_without_running(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = start(
        &deployment.url(),
        "idem_recorded",
        IdempotencyConfig::default(),
    )
    .await;
    let idem = rx.idempotency();
    let opts = IdempotencyOptions::new();
    let runs = Runs::new();
    let declined = PayError::Declined("insufficient funds".to_owned());
    let decline = || {
        let (started, declined) = (runs.body(NO_DELAY, ()), declined.clone());
        async move {
            started.await?;
            Err::<u64, _>(declined)
        }
    };

    for _ in 0..3 {
        let out = idem
            .run_recording_errors("card:1", FP, &opts, decline())
            .await;
        assert_eq!(out, Err(declined.clone()), "the same error, replayed");
    }
    assert_eq!(runs.count(), 1, "the body ran once");
    let rec = idem.get("card:1").await.unwrap().unwrap();
    assert_eq!(rec.status(), Status::Completed);
    assert!(rec.is_recorded_error());
    assert_eq!(rec.result(), serde_json::to_vec(&declined).unwrap());
    let Check::Replay(replay) = idem.check_and_lock("card:1", FP, &opts).await.unwrap() else {
        panic!("replayed");
    };
    assert!(replay.is_recorded_error());
    // A call that does not record errors cannot replay one, and does not run either.
    let out = idem
        .run::<u64, PayError, _>("card:1", FP, &opts, decline())
        .await;
    let invalid = ErrorCode::IdempotencyRecordInvalid.as_str().to_owned();
    assert_eq!(out, Err(PayError::Redisx(invalid)));
    assert_eq!(runs.count(), 1);
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    after_the_lock_ttl_a_failed_key_runs_again,
    recorded_errors_are_replayed_without_running,
);

async fn a_cancelled_call_marks_its_key_failed_and_wakes_the_waiting_duplicate(topology: Topology) {
    // Servers of its own: the test counts the script calls on them.
    let deployment = Deployment::start_owned(topology);
    let prefix = unique_prefix("idem_cancelled");
    let cfg = IdempotencyConfig::default;
    let a = idem_runtime(&deployment.url(), &prefix, cfg()).await;
    let b = idem_runtime(&deployment.url(), &prefix, cfg()).await;
    let mut raw = deployment.raw_connection().await;
    let nodes = Nodes::of(&deployment).await;
    let opts = IdempotencyOptions::new();

    let (started_tx, started_rx) = oneshot::channel();
    let mut first = Box::pin(
        a.idempotency()
            .run::<u32, Error, _>("pay:1", FP, &opts, async {
                let _ = started_tx.send(());
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(1)
            }),
    );
    tokio::select! {
        out = &mut first => panic!("the body sleeps a minute: {out:?}"),
        _ = started_rx => {}
    }

    // A duplicate in another instance, waiting (its check ran) for the first call.
    let checks = nodes.clone().script_calls().await;
    let runs = Runs::new();
    let waiting = {
        let (idem, body) = (b.idempotency().clone(), runs.body(NO_DELAY, 2));
        tokio::spawn(async move {
            let opts = IdempotencyOptions::new();
            idem.run::<u32, Error, _>("pay:1", FP, &opts, body).await
        })
    };
    // Its runtime subscribes when the duplicate first waits.
    wait_for_listeners(&deployment, &done_channel(&prefix), 1).await;
    let checked = eventually(Duration::from_secs(2), Duration::from_millis(5), || {
        let mut nodes = nodes.clone();
        async move { nodes.script_calls().await > checks }
    })
    .await;
    assert!(checked, "the duplicate checked the key");

    drop(first); // Cancelled mid-body.
    let idem = a.idempotency();
    let failed = eventually(
        Duration::from_secs(2),
        Duration::from_millis(10),
        || async move {
            let rec = idem.get("pay:1").await.unwrap();
            rec.is_some_and(|r| r.status() == Status::Failed && r.reason() == "cancelled")
        },
    )
    .await;
    assert!(failed, "the record is marked failed (cancelled) at once");
    let left = pttl(&mut raw, &idem.full_key("pay:1")).await;
    assert!(
        left > 20_000 && left <= 30_000,
        "for the lock ttl: {left} ms"
    );

    // The waiting duplicate is told, long before the 30 s lease would have run out.
    let err = bounded("the waiting duplicate", waiting)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::IdempotencyPreviousFailed, "{err}");
    assert_eq!(err.context_value("reason"), Some("cancelled"), "{err}");
    let err = bounded(
        "a later duplicate",
        idem.run::<u32, Error, _>("pay:1", FP, &opts, runs.body(NO_DELAY, 3)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::IdempotencyPreviousFailed, "{err}");
    assert_eq!(runs.count(), 0, "no duplicate ran");
    a.shutdown().await;
    b.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_cancelled_call_marks_its_key_failed_and_wakes_the_waiting_duplicate,
);

async fn a_duplicate_gives_up_after_its_wait(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = start(
        &deployment.url(),
        "idem_in_progress",
        IdempotencyConfig::default(),
    )
    .await;
    let idem = rx.idempotency();
    let opts = IdempotencyOptions::new();
    let Check::New(claim) = idem.check_and_lock("job:1", FP, &opts).await.unwrap() else {
        panic!("claimed");
    };
    let runs = Runs::new();
    let short = IdempotencyOptions::new().wait(Duration::from_millis(200));
    let out = bounded(
        "a 200 ms wait",
        idem.run::<u8, Error, _>("job:1", FP, &short, runs.body(NO_DELAY, 2)),
    )
    .await;
    let err = out.unwrap_err();
    assert_eq!(err.code(), ErrorCode::IdempotencyInProgress, "{err}");
    assert_eq!((runs.count(), idem.stats().in_progress), (0, 1));
    assert_eq!(requests(&rx, "in_progress"), 1);
    // The first call goes on and completes; the next duplicate replays it.
    assert!(idem.complete(claim, b"1").await.unwrap());
    let v: u8 = idem
        .run("job:1", FP, &short, runs.body(NO_DELAY, 2))
        .await
        .unwrap();
    assert_eq!((v, runs.count()), (1, 0));
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_duplicate_gives_up_after_its_wait
);

/// Asserts that `err` is Redis's own failure, not an idempotency refusal.
fn assert_redis_error(err: &Error, what: &str) {
    assert!(
        matches!(err.code().family(), "connection" | "operation"),
        "{what}: the connection or operation error: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_and_the_body_does_not_run() {
    let mut server = RedisServer::start_owned();
    let rx = start(
        &server.url(),
        "idem_down_closed",
        IdempotencyConfig::default(),
    )
    .await;
    let idem = rx.idempotency();
    let opts = IdempotencyOptions::new();
    let runs = Runs::new();
    let v: u8 = idem
        .run("warm", FP, &opts, runs.body(NO_DELAY, 1))
        .await
        .unwrap();
    assert_eq!(v, 1);
    server.kill();

    let out = bounded(
        "run",
        idem.run::<u8, Error, _>("pay:1", FP, &opts, runs.body(NO_DELAY, 2)),
    )
    .await;
    assert_redis_error(&out.unwrap_err(), "run");
    let out = bounded("check_and_lock", idem.check_and_lock("pay:1", FP, &opts)).await;
    assert_redis_error(&out.unwrap_err(), "check_and_lock");
    assert_eq!(runs.count(), 1, "only the warm-up ran");
    let s = idem.stats();
    assert_eq!((s.errors, s.fail_open), (2, 0), "{s:?}");
    assert_eq!(requests(&rx, "error"), 2);
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_runs_the_body_unprotected_when_failing_open() {
    let mut server = RedisServer::start_owned();
    let cfg = IdempotencyConfig::default().error_policy(ErrorPolicy::FailOpen);
    let rx = start(&server.url(), "idem_down_open", cfg).await;
    let idem = rx.idempotency();
    let opts = IdempotencyOptions::new();
    let runs = Runs::new();
    let v: u8 = idem
        .run("warm", FP, &opts, runs.body(NO_DELAY, 1))
        .await
        .unwrap();
    assert_eq!(v, 1);
    server.kill();

    for i in 2..4_u8 {
        let v = bounded(
            "run",
            idem.run::<u8, Error, _>("pay:1", FP, &opts, runs.body(NO_DELAY, i)),
        )
        .await;
        assert_eq!(v.unwrap(), i, "the body ran and its value is returned");
    }
    assert_eq!(runs.count(), 3, "each unprotected call ran its body");
    let s = idem.stats();
    assert_eq!(s.fail_open, 2, "{s:?}");
    assert_eq!(requests(&rx, "fail_open"), 2);
    // Only `run` fails open: the raw check still reports the failure.
    let out = bounded("check_and_lock", idem.check_and_lock("pay:1", FP, &opts)).await;
    assert_redis_error(&out.unwrap_err(), "check_and_lock");
    // A bad key is refused whatever the policy.
    let err = idem
        .run::<u8, Error, _>("", FP, &opts, runs.body(NO_DELAY, 9))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::IdempotencyKeyInvalid, "{err}");
    assert_eq!(runs.count(), 3);
    // A call that ran unprotected is counted as such, not as a failed-closed error.
    let s = idem.stats();
    assert_eq!((s.fail_open, s.errors), (2, 1), "{s:?}");
    assert_eq!(
        requests(&rx, "error"),
        1,
        "only check_and_lock failed closed"
    );
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_cannot_be_stored_still_reaches_its_caller() {
    let mut server = RedisServer::start_owned();
    let rx = start(
        &server.url(),
        "idem_store_lost",
        IdempotencyConfig::default(),
    )
    .await;
    let idem = rx.idempotency();
    let (started_tx, started_rx) = oneshot::channel();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let call = tokio::spawn({
        let idem = idem.clone();
        async move {
            idem.run("pay:1", FP, &IdempotencyOptions::new(), async move {
                let _ = started_tx.send(());
                let _ = go_rx.await;
                Ok::<_, Error>(42_u32)
            })
            .await
        }
    });
    bounded("the body starts", started_rx).await.unwrap();
    server.kill(); // Redis goes away while the body runs: the effect happens, the store fails.
    go_tx.send(()).unwrap();
    let out = bounded("the call", call).await.unwrap();
    assert_eq!(out.unwrap(), 42, "the caller still gets its value");
    let s = idem.stats();
    assert_eq!((s.new, s.store_failures), (1, 1), "{s:?}");
    rx.shutdown().await;
}
