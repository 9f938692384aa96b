//! Consuming a stream end to end against real Redis: a handler's `Ok` acknowledges, an `Err`
//! retries through the delayed set after the backoff and dead-letters after `max_retries`
//! retries (with its metadata), an undecodable message goes to the DLQ at once, manual `ack` /
//! `reject`, and the concurrency bound. Each test runs on a standalone server and on the
//! 3-master cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redisx::streams::{Backoff, ConsumerOptions, Message, StreamsConfig};
use redisx::testing::{Deployment, Topology};
use redisx::{Error, ErrorCode, RedisX};
use redisx_tests::{eventually, unique_prefix};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    n: u64,
}

/// Retries after 50 ms (doubling to 200 ms), so the tests see several attempts quickly.
fn quick() -> StreamsConfig {
    StreamsConfig::default().backoff(Backoff {
        initial: Duration::from_millis(50),
        multiplier: 2.0,
        max: Duration::from_millis(200),
    })
}

async fn runtime(deployment: &Deployment, test: &str, cfg: StreamsConfig) -> RedisX {
    RedisX::builder()
        .client(
            "default",
            redisx::ConnectionConfig::from_url(&deployment.url()).unwrap(),
        )
        .key_prefix(unique_prefix(test))
        .streams(cfg)
        .build()
        .await
        .unwrap()
}

/// Appends `job` to the stream `key` with raw `XADD`, in the documented layout.
async fn add(conn: &mut impl ConnectionLike, key: &str, job: &Job) -> String {
    redis::cmd("XADD")
        .arg(key)
        .arg("*")
        .arg("data")
        .arg(serde_json::to_string(job).unwrap())
        .query_async(conn)
        .await
        .unwrap()
}

async fn pending(conn: &mut impl ConnectionLike, key: &str, group: &str) -> u64 {
    let (n, ..): (u64, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
        .arg(key)
        .arg(group)
        .query_async(conn)
        .await
        .unwrap();
    n
}

async fn xlen(conn: &mut impl ConnectionLike, key: &str) -> u64 {
    redis::cmd("XLEN").arg(key).query_async(conn).await.unwrap()
}

fn within() -> Duration {
    Duration::from_secs(3)
}

fn poll() -> Duration {
    Duration::from_millis(10)
}

async fn ok_acknowledges_and_err_retries_then_dead_letters(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(&deployment, "stream_retry", quick()).await;
    let keys = rx.streams().keys("jobs", false).unwrap();
    let mut raw = deployment.raw_connection().await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(u64, u32)>::new()));
    let handle = {
        let seen = seen.clone();
        rx.streams()
            .consumer(
                "jobs",
                ConsumerOptions::new("workers")
                    .max_retries(2)
                    .block(Duration::from_millis(200)),
                move |m: Message<Job>| {
                    let seen = seen.clone();
                    async move {
                        seen.lock().unwrap().push((m.payload().n, m.attempt()));
                        if m.payload().n == 13 {
                            Err(Error::new(ErrorCode::Internal, "unlucky"))
                        } else {
                            Ok(())
                        }
                    }
                },
            )
            .start()
            .await
            .unwrap()
    };
    add(&mut raw, &keys.stream, &Job { n: 1 }).await;
    let bad = add(&mut raw, &keys.stream, &Job { n: 13 }).await;

    let dead = eventually(within(), poll(), || {
        let mut raw = raw.clone();
        let dlq = keys.dlq.clone();
        async move { xlen(&mut raw, &dlq).await == 1 }
    })
    .await;
    assert!(
        dead,
        "the failing job reached the DLQ: {:?}",
        seen.lock().unwrap()
    );
    let attempts: Vec<u32> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| *n == 13)
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(
        attempts,
        [1, 2, 3],
        "max_retries = 2: three attempts in all"
    );
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&keys.dlq)
        .arg("-")
        .arg("+")
        .query_async(&mut raw)
        .await
        .unwrap();
    let fields: std::collections::HashMap<_, _> = entries[0].1.iter().cloned().collect();
    assert_eq!(fields["error"], "INTERNAL: unlucky", "the error's Display");
    assert_eq!(fields["attempt"], "3");
    assert_eq!(fields["original_stream"], "jobs");
    assert_eq!(fields["data"], r#"{"n":13}"#);
    // The first attempt's id is the original; retries were new entries.
    assert!(fields.contains_key("original_id"));
    let _ = bad;
    assert_eq!(
        pending(&mut raw, &keys.stream, "workers").await,
        0,
        "all acknowledged"
    );
    let consumed = redisx_tests::metric_sum(
        &rx,
        "redisx_stream_messages_consumed_total",
        &["status=\"retry\""],
    );
    assert_eq!(consumed, 2);
    handle.stop().await;
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    ok_acknowledges_and_err_retries_then_dead_letters
);

async fn an_undecodable_message_goes_to_the_dlq_at_once(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(&deployment, "stream_poison", quick()).await;
    let keys = rx.streams().keys("jobs", false).unwrap();
    let mut raw = deployment.raw_connection().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let handle = {
        let runs = runs.clone();
        rx.streams()
            .consumer(
                "jobs",
                ConsumerOptions::new("g").block(Duration::from_millis(200)),
                move |_m: Message<Job>| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, Error>(()) }
                },
            )
            .start()
            .await
            .unwrap()
    };
    let _: String = redis::cmd("XADD")
        .arg(&keys.stream)
        .arg("*")
        .arg("data")
        .arg("not json")
        .query_async(&mut raw)
        .await
        .unwrap();
    let dead = eventually(within(), poll(), || {
        let mut raw = raw.clone();
        let dlq = keys.dlq.clone();
        async move { xlen(&mut raw, &dlq).await == 1 }
    })
    .await;
    assert!(dead);
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the handler never saw it");
    assert_eq!(pending(&mut raw, &keys.stream, "g").await, 0);
    handle.stop().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    an_undecodable_message_goes_to_the_dlq_at_once
);

async fn concurrency_is_never_exceeded(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(&deployment, "stream_concurrency", quick()).await;
    let keys = rx.streams().keys("jobs", false).unwrap();
    let mut raw = deployment.raw_connection().await;
    let (now, max, done) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let handle = {
        let (now, max, done) = (now.clone(), max.clone(), done.clone());
        rx.streams()
            .consumer(
                "jobs",
                ConsumerOptions::new("g")
                    .concurrency(3)
                    .batch(10)
                    .block(Duration::from_millis(200)),
                move |_m: Message<Job>| {
                    let (now, max, done) = (now.clone(), max.clone(), done.clone());
                    async move {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(n, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        done.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Error>(())
                    }
                },
            )
            .start()
            .await
            .unwrap()
    };
    for n in 0..30 {
        add(&mut raw, &keys.stream, &Job { n }).await;
    }
    let all = eventually(within(), poll(), || {
        let done = done.clone();
        async move { done.load(Ordering::SeqCst) == 30 }
    })
    .await;
    assert!(all, "{} handled", done.load(Ordering::SeqCst));
    assert_eq!(
        max.load(Ordering::SeqCst),
        3,
        "exactly the bound at the peak"
    );
    handle.stop().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    concurrency_is_never_exceeded
);

/// A handler runs in the scope of the runtime that consumes: `RedisX::current()` (and so every
/// attribute inside it) finds that runtime, with no runtime installed or scoped by the caller.
async fn a_handler_runs_in_the_consuming_runtime_s_scope(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(&deployment, "stream_scope", quick()).await;
    let keys = rx.streams().keys("jobs", false).unwrap();
    let mut raw = deployment.raw_connection().await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Option<String>>::new()));
    let handle = {
        let seen = seen.clone();
        rx.streams()
            .consumer(
                "jobs",
                ConsumerOptions::new("workers").block(Duration::from_millis(200)),
                move |_: Message<Job>| {
                    let seen = seen.clone();
                    async move {
                        let current = RedisX::current().map(|rx| rx.key_prefix().to_owned());
                        seen.lock().unwrap().push(current);
                        Ok::<_, Error>(())
                    }
                },
            )
            .start()
            .await
            .unwrap()
    };
    add(&mut raw, &keys.stream, &Job { n: 1 }).await;
    let handled = eventually(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || async { !seen.lock().unwrap().is_empty() },
    )
    .await;
    assert!(handled, "the message was not handled");
    assert_eq!(
        *seen.lock().unwrap(),
        [Some(rx.key_prefix().to_owned())],
        "the handler saw the consuming runtime"
    );
    handle.stop().await;
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_handler_runs_in_the_consuming_runtime_s_scope
);

/// Two runtimes of one process consuming one group without naming their consumers are two
/// consumers to Redis (their default names differ), each handling its own deliveries.
async fn two_runtimes_are_two_consumers_by_default(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("stream_names");
    let build = || async {
        RedisX::builder()
            .client(
                "default",
                redisx::ConnectionConfig::from_url(&deployment.url()).unwrap(),
            )
            .key_prefix(prefix.clone())
            .streams(quick())
            .build()
            .await
            .unwrap()
    };
    let (a, b) = (build().await, build().await);
    let handled = Arc::new(AtomicUsize::new(0));
    let mut consumers = Vec::new();
    for rx in [&a, &b] {
        let handled = handled.clone();
        let handle = rx
            .streams()
            .consumer(
                "jobs",
                ConsumerOptions::new("workers").block(Duration::from_millis(200)),
                move |_: Message<Job>| {
                    let handled = handled.clone();
                    async move {
                        handled.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Error>(())
                    }
                },
            )
            .start()
            .await
            .unwrap();
        consumers.push(handle);
    }
    let keys = a.streams().keys("jobs", false).unwrap();
    let mut raw = deployment.raw_connection().await;
    for n in 0..4 {
        add(&mut raw, &keys.stream, &Job { n }).await;
    }
    let all = eventually(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || async { handled.load(Ordering::SeqCst) == 4 },
    )
    .await;
    assert!(all, "handled {}", handled.load(Ordering::SeqCst));
    // A consumer joins the group with its first read: wait for both (a loaded machine may
    // have let one runtime handle all four before the other's first read).
    let two = eventually(Duration::from_secs(5), Duration::from_millis(20), || {
        let (stream, mut raw) = (keys.stream.clone(), raw.clone());
        async move {
            let consumers: Vec<redis::Value> = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&stream)
                .arg("workers")
                .query_async(&mut raw)
                .await
                .unwrap();
            consumers.len() == 2
        }
    })
    .await;
    assert!(two, "two consumers in the group");
    for h in &consumers {
        h.stop().await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    two_runtimes_are_two_consumers_by_default
);
