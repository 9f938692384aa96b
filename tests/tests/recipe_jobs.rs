//! The background-jobs recipe (`examples/jobs.rs`, its `#[stream_consumer]` worker and `Sink`
//! as they are) against a Redis server of its own: jobs published before any worker ran are
//! written, each once, with several in flight at once (counted by the sink); a job the sink
//! refuses is retried after the backoff
//! and written once, and one refused past `max_retries` goes to the DLQ; a shutdown with jobs
//! in flight finishes them, leaves nothing pending, and a second runtime takes the rest.
//!
//! The worker writes to the process's one sink, so the tests take turns ([`TURN`]).

// The example's `main` (and what only it uses) is not called here, and its `pub` items are
// public to the example's readers, not from this crate.
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/jobs.rs"]
mod jobs;

use std::time::Duration;

use jobs::{CONCURRENCY, GROUP, Job, MAX_RETRIES, STREAM, publish, sink, start_worker};
use redisx::RedisX;
use redisx_tests::streams::consumed;
use redisx_tests::{RedisServer, Turn, eventually, unique_prefix};

/// One test at a time: they share the sink.
static TURN: Turn = Turn::new();

fn within() -> Duration {
    Duration::from_secs(5)
}

fn poll() -> Duration {
    Duration::from_millis(5)
}

/// The example's runtime on `server`, under a prefix of the test's own.
async fn runtime(server: &RedisServer, prefix: &str) -> RedisX {
    jobs::runtime(&server.url(), prefix).await.unwrap()
}

/// How many of the workers' deliveries are not acknowledged.
async fn pending(rx: &RedisX) -> u64 {
    rx.streams().pending(STREAM, GROUP).await.unwrap().count
}

/// Waits until nothing is pending (acknowledgements go out in batches, just after the
/// handlers return).
async fn settled(rx: &RedisX) -> bool {
    eventually(within(), poll(), || async { pending(rx).await == 0 }).await
}

/// Waits until the sink holds `n` jobs.
async fn all_written(n: usize) -> bool {
    eventually(within(), poll(), || async { sink().written().len() == n }).await
}

/// Waits until the worker fills every one of its slots.
async fn slots_full() -> bool {
    eventually(within(), poll(), || async {
        sink().in_flight() == CONCURRENCY
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_published_before_any_worker_ran_are_each_written_once_with_several_in_flight() {
    let _turn = TURN.take(&[]).await;
    sink().reset();
    let server = RedisServer::start();
    let rx = runtime(&server, &unique_prefix("recipe_jobs_concurrency")).await;

    // Held at the sink's door, the first jobs stay in flight: the worker must fill every slot
    // and take no more.
    sink().hold();
    let jobs: Vec<Job> = (1..=20).map(Job::new).collect();
    publish(&rx, &jobs).await.unwrap();
    assert!(
        rx.streams().groups(STREAM).await.unwrap().is_empty(),
        "no worker ran yet: there is no group"
    );
    // Its group is created now, at the start of the stream (`start_id = "0"`): the 20 jobs
    // already published are the worker's.
    let worker = start_worker(&rx).await.unwrap();
    assert!(
        slots_full().await,
        "{} in flight, not {CONCURRENCY}",
        sink().in_flight()
    );
    assert_eq!(worker.in_flight(), CONCURRENCY);
    sink().resume();

    assert!(all_written(20).await, "{:?}", sink().written());
    let written = sink().written();
    assert_eq!(
        written.keys().copied().collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert!(written.values().all(|n| *n == 1), "each once: {written:?}");
    assert_eq!(
        sink().max_in_flight(),
        CONCURRENCY,
        "several at once, never more than the concurrency"
    );
    assert!(settled(&rx).await, "every job acknowledged");
    assert_eq!(consumed(&rx, "success"), 20);
    assert_eq!(consumed(&rx, "retry"), 0);
    worker.stop().await;
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_sink_refuses_is_retried_then_written_once() {
    let _turn = TURN.take(&[]).await;
    sink().reset();
    let server = RedisServer::start();
    let rx = runtime(&server, &unique_prefix("recipe_jobs_retry")).await;
    let worker = start_worker(&rx).await.unwrap();

    // Job 1 is refused twice, then accepted; job 2 at once; job 3 is refused more times than
    // the worker retries.
    let jobs = [Job::flaky(1, 2), Job::new(2), Job::flaky(3, 100)];
    publish(&rx, &jobs).await.unwrap();
    let dead = eventually(within(), poll(), || async {
        rx.streams().dlq_len(STREAM).await.unwrap() == 1
    })
    .await;
    assert!(dead, "job 3 reaches the DLQ");
    assert!(all_written(2).await, "{:?}", sink().written());

    let written = sink().written();
    assert_eq!(written.get(&1), Some(&1), "job 1 written once: {written:?}");
    assert_eq!(written.get(&2), Some(&1));
    assert_eq!(written.get(&3), None, "job 3 never written");
    assert_eq!(sink().attempts(1), 3, "two refusals, then the write");
    assert_eq!(
        sink().accepted_on(1),
        Some(3),
        "the third delivery of job 1"
    );
    assert_eq!(sink().attempts(2), 1);
    assert_eq!(
        sink().attempts(3),
        MAX_RETRIES + 1,
        "every attempt, then no more"
    );

    let dlq = rx.streams().dlq_list(STREAM, 10).await.unwrap();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].payload::<Job>().unwrap(), Job::flaky(3, 100));
    assert_eq!(dlq[0].attempts, MAX_RETRIES + 1);
    let error = dlq[0].error.clone().unwrap_or_default();
    assert!(error.contains("the sink is unavailable"), "{error}");

    assert!(settled(&rx).await, "nothing left pending");
    assert_eq!(
        rx.streams().delayed_len(STREAM).await.unwrap(),
        0,
        "no retry left"
    );
    assert_eq!(consumed(&rx, "retry"), 2 + u64::from(MAX_RETRIES));
    assert_eq!(consumed(&rx, "success"), 2);
    assert_eq!(consumed(&rx, "dead_letter"), 1);
    worker.stop().await;
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_finishes_the_jobs_in_flight_and_another_runtime_takes_the_rest() {
    let _turn = TURN.take(&[]).await;
    sink().reset();
    let server = RedisServer::start();
    let prefix = unique_prefix("recipe_jobs_shutdown");
    let a = runtime(&server, &prefix).await;

    sink().hold();
    let jobs: Vec<Job> = (1..=10).map(Job::new).collect();
    publish(&a, &jobs).await.unwrap();
    let worker = start_worker(&a).await.unwrap();
    assert!(slots_full().await, "{} in flight", sink().in_flight());

    // The shutdown starts while the jobs are held; they finish once the worker stopped
    // reading.
    let stopping = tokio::spawn({
        let a = a.clone();
        async move { a.shutdown().await }
    });
    let stopped = eventually(within(), poll(), || async { !worker.is_running() }).await;
    assert!(stopped, "the shutdown stops the worker");
    assert!(
        !stopping.is_finished(),
        "the drain waits for the jobs in flight"
    );
    sink().resume();
    stopping.await.unwrap();

    assert_eq!(sink().in_flight(), 0, "no job abandoned");
    let written = sink().written();
    assert_eq!(
        written.len(),
        CONCURRENCY,
        "the jobs in flight finished, and no other started: {written:?}"
    );
    assert!(written.values().all(|n| *n == 1));
    let b = runtime(&server, &prefix).await;
    assert_eq!(pending(&b).await, 0, "the drain acknowledged them");
    assert_eq!(
        b.streams().lag(STREAM, GROUP).await.unwrap(),
        Some(10 - CONCURRENCY as u64),
        "the rest was never delivered"
    );

    // Another runtime (another instance, or this one restarted) takes the rest.
    let worker = start_worker(&b).await.unwrap();
    assert!(all_written(10).await, "{:?}", sink().written());
    let written = sink().written();
    assert_eq!(
        written.keys().copied().collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert!(written.values().all(|n| *n == 1), "each once: {written:?}");
    assert!(settled(&b).await, "nothing left pending");
    assert_eq!(b.streams().lag(STREAM, GROUP).await.unwrap(), Some(0));
    worker.stop().await;
    b.shutdown().await;
}
